"""Choose how a task is answered, keeping upstream's ``mode`` values (PROTOCOL.md 7.4, K3).

- ``no_model``: the provider found no model (``NO_MODEL``, any case): zeros and upstream's message.
- ``onnx_hw_only``: ``model_path`` ends with ``.onnx``: HW power x latency, no measurement. As
  upstream, the file is never opened and need not exist on this host (the model provider usually
  runs elsewhere); whether it does is reported (``onnx_file_present``: one stat, reused for
  ``FILE_CHECK_TTL_S`` by the tasks that name the same path, as a burst of tasks does).
- ``tracker``: measure the model's forward passes under carbontracker.
- ``error``: anything that cannot be answered; decided here when it is known before measuring.

The choice is cheap (one stat at most) so that the runtime can pick a lane without blocking.
"""

from __future__ import annotations

import enum
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from carbon_node.engine.task import Task

__all__ = ["FAILED_PREFIX", "NO_MODEL_MESSAGE", "Mode", "Route", "choose_route", "failed"]

NO_MODEL_MESSAGE = "No model selected (NO_MODEL). Carbon footprint not computed."
"""Upstream's ``error`` text for ``no_model`` outputs, verbatim."""

FAILED_PREFIX = "Failed to obtain carbon footprint information: "
"""Upstream's prefix of tracker-path failure messages."""


def failed(reason: str) -> str:
    """Upstream's error text for a task whose footprint could not be obtained."""
    return FAILED_PREFIX + reason


class Mode(enum.StrEnum):
    """The ``mode`` key of the output ``extra_data`` (upstream values)."""

    NO_MODEL = "no_model"
    ONNX_HW_ONLY = "onnx_hw_only"
    TRACKER = "tracker"
    ERROR = "error"


@dataclass(frozen=True)
class Route:
    """The chosen path, and for ``error`` the user-facing message.

    ``onnx_file_present``: on ``onnx_hw_only``, whether ``model_path`` names an existing regular
    file on this host (provenance only: the path is answered either way); ``None`` elsewhere.
    """

    mode: Mode
    error: str | None = None
    onnx_file_present: bool | None = None


FILE_CHECK_TTL_S = 1.0
"""Seconds a path's ``onnx_file_present`` answer is reused."""

_FILE_CHECKS_MAX = 1024
_file_checks: dict[str, tuple[float, bool]] = {}


def _is_file(path: str, clock: Callable[[], float] = time.monotonic) -> bool:
    """Whether ``path`` names a regular file, as a stat said at most ``FILE_CHECK_TTL_S`` ago."""
    now = clock()
    known = _file_checks.get(path)
    if known is not None and now - known[0] < FILE_CHECK_TTL_S:
        return known[1]
    try:
        present = os.path.isfile(path)
    except (OSError, ValueError):  # e.g. an embedded NUL byte
        present = False
    if len(_file_checks) >= _FILE_CHECKS_MAX:
        _file_checks.clear()
    _file_checks[path] = (now, present)
    return present


def choose_route(task: Task, is_file: Callable[[str], bool] = _is_file) -> Route:
    """The path of ``task``; ``is_file`` answers whether a path names an existing regular file."""
    if task.is_no_model:
        return Route(Mode.NO_MODEL, NO_MODEL_MESSAGE)
    if task.hw_problem is not None:
        return Route(Mode.ERROR, failed(task.hw_problem))
    if task.is_onnx:
        return Route(Mode.ONNX_HW_ONLY, onnx_file_present=is_file(task.model_path))
    if not task.model:
        return Route(Mode.ERROR, failed("the MLModel input names no model (empty model and no .onnx model_path)"))
    return Route(Mode.TRACKER)
