"""Joins the three inputs of a task by task id (PROTOCOL.md 4.3, with fix F6). Pure: no DDS, clock injected.

Rules, each one a deliberate difference from or match with upstream:

- Inputs arrive in any order; when the third distinct input of a task arrives the task is released.
- Task id ``{0, 0}`` is rejected (logged), as upstream.
- A second sample of the same input for a pending task replaces the first (logged). Upstream keeps the
  first and miscounts, which can drop the task.
- A task incomplete for longer than ``input_timeout_s`` seconds is released as expired, naming the
  missing inputs, so that it is answered with an error output instead of waiting forever.
- At most ``max_pending`` incomplete tasks are kept; a new one evicts the oldest (released as evicted).
- A task id is released at most once per assembler: released ids are remembered (the newest
  ``answered_capacity`` of them) and later inputs for them are logged and ignored.
"""

from __future__ import annotations

import enum
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from carbon_node.bus.types import HWResourceImpl, MLModelImpl, UserInputImpl
from carbon_node.core import TaskId, TaskInputs

__all__ = ["Assembler", "InputKind", "Release", "ReleaseKind"]

log = structlog.get_logger(__name__)


class InputKind(enum.Enum):
    """The three inputs of a task; the values are the names used in ``TaskInputs.missing``."""

    ML_MODEL = "ml_model"
    HW_RESOURCES = "hw_resources"
    USER_INPUT = "user_input"


class ReleaseKind(enum.Enum):
    """Why a task left the assembler."""

    COMPLETE = "complete"
    EXPIRED = "expired"
    EVICTED = "evicted"


@dataclass(frozen=True)
class Release:
    """A task leaving the assembler: complete (run it) or expired/evicted (answer ``error``)."""

    kind: ReleaseKind
    inputs: TaskInputs
    first_input_s: float
    """Clock time (seconds) when the task's first input arrived."""
    released_s: float
    """Clock time (seconds) when the task was released."""
    error: str | None = None
    """The error message for an expired or evicted task; None when complete."""


@dataclass
class _Pending:
    first_input_s: float
    samples: dict[InputKind, Any] = field(default_factory=dict)


def _task_id_of(sample: Any) -> TaskId:
    return TaskId(int(sample.task_id.problem_id), int(sample.task_id.iteration_id))


class Assembler:
    """Task assembly state. Not thread-safe: the runtime calls it under its own lock."""

    def __init__(
        self,
        *,
        input_timeout_s: float = 900.0,
        max_pending: int = 500,
        answered_capacity: int = 65536,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if input_timeout_s <= 0:
            raise ValueError(f"input_timeout_s must be > 0, got {input_timeout_s}")
        if max_pending < 1 or answered_capacity < 1:
            raise ValueError("max_pending and answered_capacity must be >= 1")
        self._input_timeout_s = input_timeout_s
        self._max_pending = max_pending
        self._answered_capacity = answered_capacity
        self._clock = clock
        self._pending: OrderedDict[TaskId, _Pending] = OrderedDict()  # oldest first input first
        self._answered: OrderedDict[TaskId, None] = OrderedDict()

    @property
    def pending_count(self) -> int:
        """Incomplete tasks currently held."""
        return len(self._pending)

    def was_released(self, task_id: TaskId) -> bool:
        """Whether ``task_id`` already left the assembler (as far as the bounded memory reaches)."""
        return task_id in self._answered

    def add(self, kind: InputKind, sample: MLModelImpl | HWResourceImpl | UserInputImpl) -> list[Release]:
        """Take one input sample; return the tasks this releases (the completed one, an evicted one)."""
        task_id = _task_id_of(sample)
        if not task_id.is_valid:
            log.warning("input_rejected", reason="invalid task id {0,0}", input=kind.value)
            return []
        if task_id in self._answered:
            log.info("late_input_ignored", task_id=str(task_id), input=kind.value)
            return []
        now = self._clock()
        released: list[Release] = []
        entry = self._pending.get(task_id)
        if entry is None:
            if len(self._pending) >= self._max_pending:
                oldest_id = next(iter(self._pending))
                message = f"evicted: more than {self._max_pending} incomplete tasks pending"
                released.append(self._release(oldest_id, ReleaseKind.EVICTED, now, message))
            entry = _Pending(first_input_s=now)
            self._pending[task_id] = entry
        elif kind in entry.samples:
            log.info("input_replaced", task_id=str(task_id), input=kind.value)
        entry.samples[kind] = sample
        if len(entry.samples) == len(InputKind):
            released.append(self._release(task_id, ReleaseKind.COMPLETE, now, None))
        return released

    def expire(self) -> list[Release]:
        """Release every task whose first input is older than ``input_timeout_s``."""
        now = self._clock()
        expired: list[Release] = []
        while self._pending:
            task_id, entry = next(iter(self._pending.items()))
            if now - entry.first_input_s < self._input_timeout_s:
                break
            message = f"inputs incomplete after {self._input_timeout_s:g} s"
            expired.append(self._release(task_id, ReleaseKind.EXPIRED, now, message))
        return expired

    def next_expiry_s(self) -> float | None:
        """Clock time at which the oldest pending task expires, or None when nothing is pending."""
        if not self._pending:
            return None
        oldest = next(iter(self._pending.values()))
        return oldest.first_input_s + self._input_timeout_s

    def _release(self, task_id: TaskId, kind: ReleaseKind, now: float, reason: str | None) -> Release:
        entry = self._pending.pop(task_id)
        self._answered[task_id] = None
        while len(self._answered) > self._answered_capacity:
            self._answered.popitem(last=False)
        inputs = TaskInputs(
            task_id=task_id,
            ml_model=entry.samples.get(InputKind.ML_MODEL),
            user_input=entry.samples.get(InputKind.USER_INPUT),
            hw=entry.samples.get(InputKind.HW_RESOURCES),
        )
        error = None
        if reason is not None:
            error = f"Task {task_id} {reason}; missing inputs: {', '.join(inputs.missing)}"
            log.warning("task_incomplete", task_id=str(task_id), reason=kind.value, missing=inputs.missing)
        return Release(kind, inputs, entry.first_input_s, now, error)
