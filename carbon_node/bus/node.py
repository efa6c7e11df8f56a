"""``CarbonFootprintNode``: the upstream ``sustainml_py`` node API on Cyclone DDS.

A node written for upstream (like ``carbon_footprint_node.py`` of sustainml-wp3) runs unchanged with
``from carbon_node import CarbonFootprintNode``: both callbacks are required (ValueError otherwise),
``spin()`` blocks until ``CarbonFootprintNode.terminate()``, which is process-wide and wakes every
spinning node. The task callback is called ``(ml_model, user_input, hw, node_status, co2)`` with
upstream-style accessors (:mod:`carbon_node.bus.api`); the service callback ``(req, res)`` answers the
legacy configuration topic (the RPC service needs the upstream bindings, see
:mod:`carbon_node.bus.config_service`).

Differences from upstream, all on the safe side: an exception escaping the callback becomes an error
output instead of killing a worker thread; the callback's ``extra_data`` is completed with the keys the
orchestrator needs (``num_outputs`` as an int >= 1, ``model_restrains``) instead of being sent broken;
measurement tasks run one at a time while NO_MODEL and ONNX tasks never wait behind them.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from typing import Any

import structlog

from carbon_node.bus.api import CO2Footprint, HWResource, MLModel, NodeStatus, RequestType, ResponseType, UserInput
from carbon_node.bus.cyclone import domain_id_from_env
from carbon_node.bus.runtime import NodeRuntime
from carbon_node.core import (
    NO_MODEL,
    Lane,
    TaskInputs,
    TaskOutput,
    base_extra_data,
    coerce_num_outputs,
    decode_extra_data,
    error_output,
)
from carbon_node.wire import CO2FootprintImpl, NodeStatusImpl, RequestTypeImpl, ResponseTypeImpl, Status

__all__ = ["CallbackHandler", "CarbonFootprintNode", "TaskCallback", "callback_lane", "service_responder"]

log = structlog.get_logger(__name__)

TaskCallback = Callable[[MLModel, UserInput, HWResource, NodeStatus, CO2Footprint], None]
ServiceCallback = Callable[[RequestType, ResponseType], None]

_SPIN_POLL_S = 0.5  # spin wakes this often so that signals reach the main thread


def callback_lane(inputs: TaskInputs) -> Lane:
    """FAST for NO_MODEL (any case) and ONNX paths (no measurement), MEASURE for everything else."""
    ml = inputs.ml_model
    if ml is None or ml.model.upper() == NO_MODEL or ml.model_path.endswith(".onnx"):
        return Lane.FAST
    return Lane.MEASURE


class CallbackHandler:
    """A :class:`~carbon_node.core.TaskHandler` running an upstream-style task callback."""

    def __init__(self, callback: TaskCallback) -> None:
        self._callback = callback

    def lane(self, inputs: TaskInputs) -> Lane:
        return callback_lane(inputs)

    def handle(self, inputs: TaskInputs) -> TaskOutput:
        if inputs.ml_model is None or inputs.user_input is None or inputs.hw is None:
            return self.fail(inputs, f"missing inputs: {', '.join(inputs.missing)}")
        status = NodeStatusImpl(node_status=Status.NODE_RUNNING)
        co2 = CO2FootprintImpl()
        self._callback(
            MLModel(copy.deepcopy(inputs.ml_model)),
            UserInput(copy.deepcopy(inputs.user_input)),
            HWResource(copy.deepcopy(inputs.hw)),
            NodeStatus(status),
            CO2Footprint(co2),
        )
        user_extra, _ = decode_extra_data(inputs.user_input.extra_data)
        extra = base_extra_data(inputs.ml_model.model, user_extra)
        produced, problem = decode_extra_data(co2.extra_data)
        extra.update(produced)
        extra["num_outputs"] = coerce_num_outputs(extra.get("num_outputs"))
        if not isinstance(extra.get("model_restrains"), list):
            extra["model_restrains"] = base_extra_data(inputs.ml_model.model, user_extra)["model_restrains"]
        if problem is not None:
            extra["callback_extra_data_error"] = problem
        return TaskOutput(
            inputs.task_id,
            carbon_g=co2.carbon_footprint,
            energy_kwh=co2.energy_consumption,
            grid_ci_g_per_kwh=co2.carbon_intensity,
            extra_data=extra,
            node_error=_as_int(status.node_status) == Status.NODE_ERROR.value,
        )

    def fail(self, inputs: TaskInputs, message: str) -> TaskOutput:
        return error_output(inputs, message)


def _as_int(value: Any) -> int:
    """An enum literal or a plain int (callbacks may set either) as its integer value."""
    return int(getattr(value, "value", value))


def service_responder(service_callback: ServiceCallback) -> Callable[[RequestTypeImpl], ResponseTypeImpl]:
    """A configuration responder calling an upstream-style ``(req, res)`` service callback."""

    def respond(request: RequestTypeImpl) -> ResponseTypeImpl:
        response = ResponseTypeImpl(node_id=request.node_id, transaction_id=request.transaction_id)
        service_callback(RequestType(copy.deepcopy(request)), ResponseType(response))
        return response

    return respond


class _Termination:
    """Process-wide terminate(): a generation counter, so nodes created later are not affected."""

    def __init__(self) -> None:
        self.changed = threading.Condition()
        self.generation = 0

    def signal(self) -> None:
        with self.changed:
            self.generation += 1
            self.changed.notify_all()


_termination = _Termination()


class CarbonFootprintNode:
    """The carbon node, upstream API. Starts serving at construction (NODE_INITIALIZING, NODE_IDLE)."""

    def __init__(
        self,
        callback: TaskCallback | None = None,
        service_callback: ServiceCallback | None = None,
        *,
        domain_id: int | None = None,
        start_timeout_s: float = 30.0,
        stop_timeout_s: float = 30.0,
        **runtime_options: Any,
    ) -> None:
        if callback is None:
            raise ValueError("CarbonFootprintNode constructor expects a callback.")
        if service_callback is None:
            raise ValueError("CarbonFootprintNode constructor expects a service callback.")
        self._stop_timeout_s = stop_timeout_s
        with _termination.changed:
            self._generation = _termination.generation
        self.runtime = NodeRuntime(
            CallbackHandler(callback),
            domain_id=domain_id_from_env() if domain_id is None else domain_id,
            config_responder=service_responder(service_callback),
            **runtime_options,
        )
        self.runtime.start(start_timeout_s)

    def spin(self) -> None:
        """Serve until :meth:`terminate` is called (from any thread), then stop the node."""
        try:
            with _termination.changed:
                while _termination.generation == self._generation:
                    _termination.changed.wait(_SPIN_POLL_S)
        finally:
            self.runtime.stop(self._stop_timeout_s)

    @staticmethod
    def terminate() -> None:
        """Wake every node spinning in this process (callable on the class, as upstream)."""
        log.info("terminate_requested")
        _termination.signal()
