"""Output checks: whether a task's output can be published as is, and the error output that replaces it.

An output goes on the bus only if the orchestrator accepts it (K2): finite figures, and ``extra_data``
a UTF-8 JSON object with ``num_outputs`` an integer >= 1 and ``model_restrains`` a list. One that
fails is replaced by ``handler.fail``'s error output, and that by ``core.error_output`` when even the
handler's error output fails (:func:`fail_safely`). Both buses use these checks: the Cyclone runtime
before it publishes, the upstream adapter before it fills upstream's accessors.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import structlog

from carbon_node.core import CarbonNodeError, TaskHandler, TaskInputs, TaskOutput, error_output

__all__ = ["check_output", "checked_extra_data", "describe_error", "fail_safely"]

log = structlog.get_logger("carbon_node.bus.runtime")  # the node runtime's events keep their logger name


def check_output(output: TaskOutput) -> str | None:
    """Why ``output`` cannot be published as is (K2: extra_data the orchestrator accepts), or None if it can."""
    return checked_extra_data(output)[1]


def checked_extra_data(output: TaskOutput) -> tuple[bytes, str | None]:
    """``output``'s published ``extra_data`` bytes and why it cannot be published (None if it can).

    The bytes are the output's own (:meth:`~carbon_node.core.TaskOutput.extra_data_bytes`, encoded once
    for the check, the journal and the write); the checks read the mapping they were encoded from.
    """
    for name in ("carbon_g", "energy_kwh", "grid_ci_g_per_kwh"):
        value = getattr(output, name)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            return b"", f"{name} is not a finite number: {value!r}"
    extra = output.extra_data
    if not isinstance(extra, Mapping):
        return b"", "extra_data is not a JSON object"
    try:
        encoded = output.extra_data_bytes()
    except (ValueError, TypeError, RecursionError) as exc:
        return b"", f"extra_data is not UTF-8 JSON: {exc}"
    num_outputs = extra.get("num_outputs")
    if not isinstance(num_outputs, int) or isinstance(num_outputs, bool) or num_outputs < 1:
        return b"", f"extra_data.num_outputs is not an integer >= 1: {num_outputs!r}"
    if not isinstance(extra.get("model_restrains"), (list, tuple)):
        return b"", "extra_data.model_restrains is not a list"
    return encoded, None


def fail_safely(handler: TaskHandler, inputs: TaskInputs, message: str) -> TaskOutput:
    """``handler.fail``, falling back to ``core.error_output`` when even that raises or misbehaves."""
    try:
        output = handler.fail(inputs, message)
        if check_output(output) is None:
            return output
    except Exception:
        log.exception("handler_fail_raised", task_id=str(inputs.task_id))
    return error_output(inputs, message)


def describe_error(exc: BaseException) -> str:
    """An exception as the text of an error output: our own errors as is, others with their type."""
    if isinstance(exc, CarbonNodeError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
