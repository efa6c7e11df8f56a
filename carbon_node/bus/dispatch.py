"""Dispatch: every released task is accepted, run on its lane and answered exactly once.

:meth:`Dispatcher.route` turns a :class:`~carbon_node.bus.assembler.Release` into a
:class:`~carbon_node.bus.lanes.Job` and sends it where it runs:

- ``Lane.INLINE``, on the calling thread (the bus thread): error answers (a task expired or evicted
  before its inputs completed, a handler whose ``lane`` raised), journal replays, and the tasks the
  handler puts there (no_model, ONNX with a table intensity: a fraction of a millisecond, no I/O, so
  that two thread hand-offs would cost more than the task);
- ``Lane.FAST``, a pool of ``fast_workers`` threads, for quick tasks that may still wait (a live
  intensity lookup, a user callback);
- ``Lane.MEASURE``, one thread running measurements one at a time in arrival order; a measurement the
  handler queues on a measure host of the pool (its ``measure_queue``) runs on that host's lane instead
  (:class:`~carbon_node.bus.lanes.KeyedLanes`): hosts measure at the same time, each in arrival order.

Whether a complete task is replayed, left as answered or computed anew is :mod:`carbon_node.bus.replay`'s
decision. A task id released again while its earlier task is in flight is *deferred*: routed when that
one is answered, if its inputs differ. Each accepted job is completed once (``_complete`` claims it
under the lock): the first output published for a task id wins, a later one is dropped, and
the journal holds the very output that was published. :meth:`Dispatcher.drain` answers what a stop
leaves unfinished.

The bookkeeping shares the runtime's lock with the assembler and the publication: one lock, taken a
few times per task, and no hand-off beyond the lane's queue.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from functools import partial

import structlog

from carbon_node.base import log_enabled
from carbon_node.bus.assembler import Release, ReleaseKind
from carbon_node.bus.checks import checked_extra_data, describe_error, fail_safely
from carbon_node.bus.lanes import LOCAL_QUEUE, THREAD_JOIN_S, Job, KeyedLanes, LanePool, measure_queue
from carbon_node.bus.publication import Publication
from carbon_node.bus.replay import decide, record
from carbon_node.core import Journal, Lane, TaskHandler, TaskId, TaskInputs, TaskOutput

__all__ = ["Dispatcher"]

# The node runtime's events keep their logger name; its level also decides whether the per-task line is built.
log = structlog.get_logger("carbon_node.bus.runtime")
_stdlib_log = logging.getLogger("carbon_node.bus.runtime")

_COMPLETING_GRACE_S = 6.0
"""Seconds a stop waits for outputs already being recorded and published (a journal commit is bounded by 5 s)."""
_LOGGED_TEXT_CHARS = 200
"""Longest input text (a model name) written to a log line; a peer may send megabytes."""


class Dispatcher:
    """Accepts released tasks, runs them with ``handler`` and answers each through ``publication`` once.

    ``lock`` is the runtime's: it also guards the assembler and the publication's status sequence.
    """

    def __init__(
        self,
        handler: TaskHandler,
        publication: Publication,
        lock: threading.RLock,
        *,
        journal: Journal | None,
        on_output: Callable[[TaskOutput], None] | None,
        fast_workers: int,
        clock: Callable[[], float],
    ) -> None:
        self._handler = handler
        self._publication = publication
        self._lock = lock
        self._changed = threading.Condition(lock)
        self._journal = journal
        self._on_output = on_output
        self._fast_workers = fast_workers
        self._clock = clock
        self._accepted: dict[TaskId, Job] = {}
        self._deferred: dict[TaskId, Release] = {}  # ids released again while their earlier task is in flight
        self.by_mode: Counter[str] = Counter()
        """Outputs published per ``extra_data.mode`` (read under the lock)."""
        self.replayed = 0
        """Outputs answered from the journal without recomputing (read under the lock)."""
        self.accepting = False
        """Whether released tasks are taken: set by :meth:`open`, cleared by :meth:`stop_accepting`."""
        self._measure_lane: LanePool | None = None
        self._host_lanes: KeyedLanes | None = None
        self._fast_lane: LanePool | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def open(self) -> None:
        """Start the lanes' threads and accept tasks."""
        self._measure_lane = LanePool("measure", 1, self._run_job)
        self._host_lanes = KeyedLanes("host", self._run_job)
        self._fast_lane = LanePool("fast", self._fast_workers, self._run_job)
        self.accepting = True

    def stop_accepting(self) -> None:
        """Accept no more tasks (a deferred one is no longer routed)."""
        with self._lock:
            self.accepting = False

    def drain(self, deadline: float) -> bool:
        """Answer every accepted task by ``deadline`` (``time.monotonic()``) and close the lanes.

        Tasks not started are answered with ``handler.fail`` at once; running ones get until ``deadline``,
        then ``handler.abort()`` is called if the handler has one and they are answered with
        ``handler.fail`` too. Returns True when no task had to be cut short.
        """
        unstarted = [
            *(self._measure_lane.drain() if self._measure_lane else []),
            *(self._host_lanes.drain() if self._host_lanes else []),
            *(self._fast_lane.drain() if self._fast_lane else []),
        ]
        for job in unstarted:
            self._answer_unfinished(job, "node stopping: task not started")
        clean = not unstarted
        with self._changed:
            finished = self._changed.wait_for(lambda: not self._accepted, timeout=max(0.0, deadline - time.monotonic()))
        if not finished:
            clean = False
            abort = getattr(self._handler, "abort", None)
            if callable(abort):
                try:
                    abort()
                except Exception:
                    log.exception("handler_abort_failed")
            with self._lock:
                stuck = list(self._accepted.values())
            for job in stuck:
                self._answer_unfinished(job, "node stopping: task did not finish in time")
            with self._changed:  # a job its lane was already completing: let it publish (bounded)
                self._changed.wait_for(lambda: not self._accepted, timeout=_COMPLETING_GRACE_S)
        for lane in (self._measure_lane, self._host_lanes, self._fast_lane):
            if lane is not None and not lane.close(max(0.1, min(THREAD_JOIN_S, deadline - time.monotonic()))):
                clean = False
        return clean

    # -- queries (``in_flight`` under the lock) --------------------------------------------------

    @property
    def in_flight(self) -> int:
        """Accepted tasks not yet answered (queued or running)."""
        return len(self._accepted)

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until every accepted task has been answered; False if that takes longer than ``timeout_s``."""
        with self._changed:
            return self._changed.wait_for(lambda: not self._accepted, timeout=timeout_s)

    # -- routing ---------------------------------------------------------------------------------

    def route(self, release: Release) -> None:
        """Accept a released task and run it inline or queue it on its lane (journal replays and errors
        are inline).

        A task id released again while its earlier task is still in flight waits for that one's answer.
        """
        inputs = release.inputs
        job: Job
        with self._lock:
            if inputs.task_id in self._accepted:
                if release.fingerprint != self._accepted[inputs.task_id].fingerprint:
                    self._deferred[inputs.task_id] = release
                return
        fingerprint = release.fingerprint
        if release.kind is not ReleaseKind.COMPLETE:
            message = release.error or f"Task {inputs.task_id} incomplete"
            job = Job(inputs, Lane.INLINE, release.released_s, partial(self._fail, inputs, message), fingerprint=fingerprint)
        else:
            decision = decide(self._journal, inputs, fingerprint or "", release.answered_before)
            stored = decision.replay
            if decision.skip:
                return
            if stored is not None:
                job = Job(inputs, Lane.INLINE, release.released_s, lambda: stored, replay=True, fingerprint=fingerprint)
            else:
                try:
                    lane = self._handler.lane(inputs)
                except Exception as exc:
                    message = f"Task routing failed: {describe_error(exc)}"
                    job = Job(
                        inputs, Lane.INLINE, release.released_s, partial(self._fail, inputs, message), fingerprint=fingerprint
                    )
                else:
                    queue = measure_queue(self._handler, inputs) if lane is Lane.MEASURE else LOCAL_QUEUE
                    job = Job(
                        inputs,
                        lane,
                        release.released_s,
                        lambda: self._handler.handle(inputs),
                        fingerprint=fingerprint,
                        queue=queue,
                    )
        with self._lock:
            if inputs.task_id in self._accepted:  # a deferred task routed from a lane raced with the bus thread
                self._deferred[inputs.task_id] = release
                return
            self._accepted[inputs.task_id] = job
        if job.lane is Lane.INLINE:
            self._run_inline(job)
            return
        if job.lane is Lane.MEASURE and job.queue != LOCAL_QUEUE and self._host_lanes is not None:
            self._host_lanes.submit(job.queue, job)
            return
        pool = self._measure_lane if job.lane is Lane.MEASURE else self._fast_lane
        assert pool is not None
        pool.submit(job)

    def _run_inline(self, job: Job) -> None:
        """Answer ``job`` on the calling thread (the bus thread, or a lane completing an earlier task of
        the same id); like a lane, nothing it raises goes further (it is answered either way)."""
        try:
            self._run_job(job)
        except BaseException:
            log.exception("inline_job_crashed", task_id=str(job.inputs.task_id))

    # -- running ---------------------------------------------------------------------------------

    def _run_job(self, job: Job) -> None:
        job.started_s = self._clock()
        with self._lock:
            if job.inputs.task_id not in self._accepted:
                return  # answered meanwhile (stop)
            self._publication.task_started()
        output: TaskOutput | None = None
        extra_bytes: bytes | None = None
        try:
            try:
                output = job.produce()
            except Exception as exc:
                log.warning("task_failed", task_id=str(job.inputs.task_id), error=describe_error(exc))
                output = self._fail(job.inputs, describe_error(exc))
            extra_bytes, problem = checked_extra_data(output)
            if problem is not None:
                log.error("invalid_output_replaced", task_id=str(job.inputs.task_id), problem=problem)
                output = self._fail(job.inputs, f"invalid output: {problem}")
                extra_bytes = None
        finally:
            with self._lock:
                self._publication.task_ended()
            if output is None:  # only a BaseException escaped produce(); answer anyway
                output = self._fail(job.inputs, "task interrupted")
                extra_bytes = None
            self._complete(job, output, extra_bytes)

    def _fail(self, inputs: TaskInputs, message: str) -> TaskOutput:
        return fail_safely(self._handler, inputs, message)

    def _answer_unfinished(self, job: Job, message: str) -> None:
        self._complete(job, self._fail(job.inputs, message))

    # -- completing ------------------------------------------------------------------------------

    def _complete(self, job: Job, output: TaskOutput, extra_bytes: bytes | None = None) -> None:
        """Record, publish (status, then output) exactly once, report.

        ``extra_bytes`` is ``output``'s encoded ``extra_data`` when the caller already checked it.
        """
        if output.task_id != job.inputs.task_id:
            output = dataclasses.replace(output, task_id=job.inputs.task_id)
        with self._lock:
            # Claimed once: the lane finishing a job and stop() answering it as unfinished can race here,
            # and the journal must hold the very output that is published.
            if self._accepted.get(job.inputs.task_id) is not job or job.completing:
                log.info("duplicate_output_dropped", task_id=str(job.inputs.task_id))
                return
            job.completing = True
        if not job.replay:
            record(self._journal, output, job.fingerprint)
        now = self._clock()
        started = job.started_s if job.started_s is not None else now
        timings = {**output.timings, "queue_s": max(0.0, started - job.ready_s), "total_s": max(0.0, now - job.ready_s)}
        output = dataclasses.replace(output, timings=timings)
        with self._changed:
            if self._accepted.get(job.inputs.task_id) is not job:
                return
            self._publication.answer(output, extra_bytes)
            del self._accepted[job.inputs.task_id]
            self.by_mode[output.mode] += 1
            if job.replay:
                self.replayed += 1
            self._changed.notify_all()
            deferred = self._deferred.pop(job.inputs.task_id, None)
        if log_enabled(_stdlib_log, logging.INFO):
            _log_answer(job, output, timings)
        if self._on_output is not None:
            try:
                self._on_output(output)
            except Exception:
                log.exception("on_output_failed", task_id=str(output.task_id))
        if deferred is not None and self.accepting:
            self.route(deferred)


def _log_answer(job: Job, output: TaskOutput, timings: Mapping[str, float]) -> None:
    """The one info line per answered task."""
    ml = job.inputs.ml_model
    log.info(
        "task_answered",
        task_id=str(output.task_id),
        mode=output.mode,
        lane=job.lane.value,
        **({"measure_queue": job.queue} if job.queue else {}),
        replay=job.replay,
        model=_shorten(ml.model) if ml is not None else None,
        carbon_g=output.carbon_g,
        energy_kwh=output.energy_kwh,
        grid_ci_g_per_kwh=output.grid_ci_g_per_kwh,
        grid_ci_source=output.extra_data.get("grid_ci_source"),
        power_source=output.extra_data.get("power_source"),
        cached=output.extra_data.get("cached"),
        error=output.extra_data.get("error"),
        **{name: round(value, 6) for name, value in timings.items()},
    )


def _shorten(text: str) -> str:
    return text if len(text) <= _LOGGED_TEXT_CHARS else f"{text[:_LOGGED_TEXT_CHARS]}... ({len(text)} chars)"
