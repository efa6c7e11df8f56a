"""Upstream-style accessors over the wire dataclasses (the ``sustainml_swig`` calling convention).

Upstream node code reads and writes samples through one method per field: ``ml_model.model()`` reads,
``co2.carbon_footprint(1.5)`` writes, ``user_input.extra_data()`` returns the octets as a list of ints,
``ml_model.task_id().problem_id()`` reads a nested struct. :class:`WireAccessor` gives exactly that
over any wire dataclass of :mod:`carbon_node.wire`, so a node written for ``sustainml_py`` runs
unchanged. The named subclasses only exist for readability and ``isinstance`` checks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from cyclonedds.idl import IdlEnum

from carbon_node.wire import (
    CO2FootprintImpl,
    ErrorCode,
    HWResourceImpl,
    MLModelImpl,
    NodeStatusImpl,
    RequestTypeImpl,
    ResponseTypeImpl,
    Status,
    TaskIdImpl,
    UserInputImpl,
)

__all__ = [
    "CO2Footprint",
    "ErrorCode",
    "HWResource",
    "MLModel",
    "NodeStatus",
    "RequestType",
    "ResponseType",
    "Status",
    "TaskId",
    "UserInput",
    "WireAccessor",
    "to_octets",
]

_W = TypeVar("_W")

_OCTET_FIELDS = frozenset({"extra_data", "raw_model"})


def to_octets(value: Any) -> list[int]:
    """An octet sequence from bytes, a str (UTF-8) or an iterable of ints 0-255."""
    if isinstance(value, str):
        return list(value.encode("utf-8"))
    if isinstance(value, (bytes, bytearray, memoryview)):
        return list(bytes(value))
    octets = [int(v) for v in value]
    if any(not 0 <= v <= 255 for v in octets):
        raise ValueError("octet values must be within 0-255")
    return octets


class WireAccessor(Generic[_W]):
    """Getter/setter methods named after the fields of the wrapped wire sample.

    ``obj.field()`` returns the value (octet sequences as a list of ints, nested structs wrapped);
    ``obj.field(value)`` sets it, converting octets and numbers. Unknown names raise AttributeError.
    """

    __slots__ = ("_fields", "_wire")

    def __init__(self, wire: _W) -> None:
        object.__setattr__(self, "_wire", wire)
        object.__setattr__(self, "_fields", {f.name: f for f in dataclasses.fields(wire)})  # type: ignore[arg-type]

    @property
    def wire(self) -> _W:
        """The wrapped wire sample (shared, not copied)."""
        wire: _W = object.__getattribute__(self, "_wire")
        return wire

    def __getattr__(self, name: str) -> Callable[..., Any]:
        fields = object.__getattribute__(self, "_fields")
        if name not in fields:
            raise AttributeError(f"{type(self).__name__} has no field {name!r}")
        wire = object.__getattribute__(self, "_wire")

        def access(*value: Any) -> Any:
            if not value:
                current = getattr(wire, name)
                if name in _OCTET_FIELDS:
                    return list(current)
                if dataclasses.is_dataclass(current):
                    return TaskId(current) if isinstance(current, TaskIdImpl) else WireAccessor(current)
                if isinstance(current, list):
                    return list(current)
                return current
            if len(value) != 1:
                raise TypeError(f"{name}() takes no argument (get) or one (set)")
            setattr(wire, name, _convert(getattr(wire, name), name, value[0]))
            return None

        return access

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._wire!r})"


def _convert(current: Any, name: str, value: Any) -> Any:
    """``value`` in the type of the field's current value."""
    if name in _OCTET_FIELDS:
        return to_octets(value)
    if isinstance(value, WireAccessor):
        return value.wire
    if isinstance(current, bool):
        return bool(value)
    if isinstance(current, float):
        return float(value)
    if isinstance(current, IdlEnum):
        return type(current)(int(getattr(value, "value", value)))
    if isinstance(current, int):
        return int(value)
    if isinstance(current, str):
        return str(value)
    if isinstance(current, list):
        return [str(v) for v in value]
    return value


class TaskId(WireAccessor[TaskIdImpl]):
    """``problem_id()`` / ``iteration_id()``."""


class MLModel(WireAccessor[MLModelImpl]):
    """``model()``, ``model_path()``, ``extra_data()``, ``task_id()``, ..."""


class UserInput(WireAccessor[UserInputImpl]):
    """``extra_data()``, ``geo_location_region()``, ``task_id()``, ..."""


class HWResource(WireAccessor[HWResourceImpl]):
    """``latency()``, ``power_consumption()``, ``hw_description()``, ..."""


class NodeStatus(WireAccessor[NodeStatusImpl]):
    """``node_status(Status.NODE_ERROR)`` asks the node to publish NODE_ERROR after this task."""


class CO2Footprint(WireAccessor[CO2FootprintImpl]):
    """The callback's output: ``carbon_footprint(g)``, ``energy_consumption(kwh)``, ``carbon_intensity(g_per_kwh)``,
    ``extra_data(bytes)``."""


class RequestType(WireAccessor[RequestTypeImpl]):
    """``node_id()``, ``transaction_id()``, ``configuration()``."""


class ResponseType(WireAccessor[ResponseTypeImpl]):
    """``configuration(text)``, ``success(bool)``, ``err_code(int)``, ``node_id(...)``, ``transaction_id(...)``."""
