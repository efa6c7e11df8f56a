"""Joins the three inputs of a task by task id (PROTOCOL.md 4.3, with fix F6). Pure: no DDS, clock injected.

Rules, each one a deliberate difference from or match with upstream:

- Inputs arrive in any order; when the third distinct input of a task arrives the task is released.
- Task id ``{0, 0}`` is rejected (logged), as upstream.
- A second sample of the same input for a pending task replaces the first (logged). Upstream keeps the
  first and miscounts, which can drop the task.
- A task incomplete for longer than ``input_timeout_s`` seconds is released as expired, naming the
  missing inputs, so that it is answered with an error output instead of waiting forever.
- At most ``max_pending`` incomplete tasks are kept; a new one evicts the oldest (released as evicted).
- A task id is released again only for a complete new set of inputs: released ids are remembered (the
  newest ``answered_capacity`` of them) with the digests of the inputs they were released with
  (:mod:`~carbon_node.bus.fingerprint`). Inputs arriving later for such an id are held apart (at most
  ``max_pending`` ids, each for at most ``input_timeout_s``); once all three have come again the task
  is released again, carrying the fingerprint it was answered for (``Release.answered_before``), so that
  the runtime replays identical inputs and computes different ones (an orchestrator restarted and
  numbering its tasks from 1.1 again). Held inputs that never complete are dropped without an answer:
  the task already has one. (Upstream counts three new inputs of an id as a task again, PROTOCOL.md 4.3.)
"""

from __future__ import annotations

import enum
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from carbon_node.bus.fingerprint import digests_fingerprint, input_digest
from carbon_node.core import TaskId, TaskInputs
from carbon_node.wire import HWResourceImpl, MLModelImpl, UserInputImpl

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
    fingerprint: str | None = None
    """``inputs_fingerprint`` of the released inputs."""
    answered_before: str | None = None
    """For a task id released earlier by this assembler: the fingerprint of the inputs released then."""


@dataclass
class _Pending:
    first_input_s: float
    samples: dict[InputKind, Any] = field(default_factory=dict)


_KIND_ORDER = (InputKind.ML_MODEL, InputKind.HW_RESOURCES, InputKind.USER_INPUT)
"""The order of the digests in a fingerprint (:func:`~carbon_node.bus.fingerprint.inputs_fingerprint`)."""


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
        self._again: OrderedDict[TaskId, _Pending] = OrderedDict()  # inputs for released ids, held apart
        self._answered: OrderedDict[TaskId, tuple[bytes, bytes, bytes]] = OrderedDict()  # -> released digests

    def reconfigure(self, *, input_timeout_s: float, max_pending: int) -> None:
        """New bounds (a reloaded configuration): held tasks expire by the new timeout, and a smaller
        ``max_pending`` evicts the oldest tasks as new ones arrive."""
        if input_timeout_s <= 0 or max_pending < 1:
            raise ValueError(f"input_timeout_s must be > 0 and max_pending >= 1, got {input_timeout_s}, {max_pending}")
        self._input_timeout_s, self._max_pending = input_timeout_s, max_pending

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
        now = self._clock()
        if task_id in self._answered:
            return self._add_again(task_id, kind, sample, now)
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

    def _add_again(self, task_id: TaskId, kind: InputKind, sample: Any, now: float) -> list[Release]:
        """An input for a released task id: held until all three came again, then released again."""
        entry = self._again.get(task_id)
        if entry is None:
            if len(self._again) >= self._max_pending:
                dropped, _ = self._again.popitem(last=False)
                log.info("late_inputs_dropped", task_id=str(dropped), reason="too many released ids with new inputs")
            entry = self._again[task_id] = _Pending(first_input_s=now)
        log.info("late_input_held", task_id=str(task_id), input=kind.value)
        entry.samples[kind] = sample
        if len(entry.samples) < len(InputKind):
            return []
        del self._again[task_id]
        before = digests_fingerprint(self._answered[task_id])
        self._pending[task_id] = entry  # released from there, as any complete task
        return [self._release(task_id, ReleaseKind.COMPLETE, now, None, answered_before=before)]

    def expire(self) -> list[Release]:
        """Release every task whose first input is older than ``input_timeout_s``."""
        now = self._clock()
        while self._again:  # held inputs of released ids: the task has its answer, drop them
            task_id, entry = next(iter(self._again.items()))
            if now - entry.first_input_s < self._input_timeout_s:
                break
            del self._again[task_id]
            log.info("late_inputs_dropped", task_id=str(task_id), received=[k.value for k in entry.samples])
        expired: list[Release] = []
        while self._pending:
            task_id, entry = next(iter(self._pending.items()))
            if now - entry.first_input_s < self._input_timeout_s:
                break
            message = f"inputs incomplete after {self._input_timeout_s:g} s"
            expired.append(self._release(task_id, ReleaseKind.EXPIRED, now, message))
        return expired

    def next_expiry_s(self) -> float | None:
        """Clock time at which the oldest pending task (or held inputs) expires, or None when nothing is held."""
        firsts = [next(iter(held.values())).first_input_s for held in (self._pending, self._again) if held]
        return min(firsts) + self._input_timeout_s if firsts else None

    def _release(
        self, task_id: TaskId, kind: ReleaseKind, now: float, reason: str | None, answered_before: str | None = None
    ) -> Release:
        entry = self._pending.pop(task_id)
        digests = (
            input_digest(entry.samples.get(_KIND_ORDER[0])),
            input_digest(entry.samples.get(_KIND_ORDER[1])),
            input_digest(entry.samples.get(_KIND_ORDER[2])),
        )
        self._answered.pop(task_id, None)
        self._answered[task_id] = digests  # newest last
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
        return Release(kind, inputs, entry.first_input_s, now, error, digests_fingerprint(digests), answered_before)
