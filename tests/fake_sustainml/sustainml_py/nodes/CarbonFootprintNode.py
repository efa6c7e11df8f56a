"""Fake ``sustainml_py.nodes.CarbonFootprintNode``: calls the callbacks the way the SWIG layer does."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, ClassVar


class Accessors:
    """SWIG-style object: ``obj.name()`` reads a field, ``obj.name(value)`` writes it."""

    def __init__(self, **fields: Any) -> None:
        self._fields = fields

    def __getattr__(self, name: str) -> Callable[..., Any]:
        fields = self.__dict__["_fields"]
        if name not in fields:
            raise AttributeError(name)

        def access(*value: Any) -> Any:
            if value:
                fields[name] = value[0]
                return None
            return fields[name]

        return access

    def get(self, name: str) -> Any:
        return self._fields[name]


def task_id(problem_id: int, iteration_id: int) -> Accessors:
    return Accessors(problem_id=problem_id, iteration_id=iteration_id)


class CarbonFootprintNode:
    """Requires both callbacks; spin() blocks until the static terminate()."""

    instances: ClassVar[list[CarbonFootprintNode]] = []
    _terminated = threading.Event()

    def __init__(self, callback: Any = None, service_callback: Any = None) -> None:
        if callback is None:
            raise ValueError("CarbonFootprintNode constructor expects a callback.")
        if service_callback is None:
            raise ValueError("CarbonFootprintNode constructor expects a service callback.")
        self.callback = callback
        self.service_callback = service_callback
        CarbonFootprintNode._terminated.clear()
        CarbonFootprintNode.instances.append(self)

    def spin(self) -> None:
        CarbonFootprintNode._terminated.wait(30.0)

    @staticmethod
    def terminate() -> None:
        CarbonFootprintNode._terminated.set()

    def deliver(self, ml_model: Accessors, user_input: Accessors, hw: Accessors) -> tuple[Accessors, Accessors]:
        """Run the task callback as upstream does; return (node_status, co2) as filled by it."""
        node_status = Accessors(node_status=4)
        co2 = Accessors(carbon_footprint=0.0, energy_consumption=0.0, carbon_intensity=0.0, extra_data=[])
        self.callback(ml_model, user_input, hw, node_status, co2)
        return node_status, co2

    def request(self, configuration: str) -> Accessors:
        """Run the service callback as upstream's RPC server does (node and transaction ids are 0)."""
        req = Accessors(node_id=0, transaction_id=0, configuration=configuration)
        res = Accessors(node_id=0, transaction_id=0, success=False, err_code=0, configuration="")
        self.service_callback(req, res)
        return res
