"""The runtime's lanes: FIFOs of accepted jobs served by daemon threads (PROTOCOL.md 4, threads).

The measure lane is one :class:`LanePool` with one thread (measurements one at a time, in arrival
order); the fast lane a pool of ``fast_workers`` threads for everything else. Measurements the handler
queues elsewhere (on a measure host of the pool: :func:`measure_queue`) go to :class:`KeyedLanes`: one
FIFO per queue, each served by a thread of its own while it has jobs, so that measurements on different
hosts run at the same time while each host's queue stays in arrival order.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from carbon_node.core import Lane, TaskHandler, TaskInputs, TaskOutput

__all__ = ["LOCAL_QUEUE", "THREAD_JOIN_S", "Job", "KeyedLanes", "LanePool", "measure_queue"]

log = structlog.get_logger(__name__)

THREAD_JOIN_S = 2.0
"""Longest wait, at stop, for one of the runtime's threads (the bus thread, a lane's) to end."""

LOCAL_QUEUE = ""
"""The measure queue of the node's own lane (``carbon_node.measure.placement.LOCAL_QUEUE``)."""


def measure_queue(handler: TaskHandler, inputs: TaskInputs) -> str:
    """The measure queue the handler chose for a task it put on ``Lane.MEASURE`` (its optional
    ``measure_queue(inputs)`` method); :data:`LOCAL_QUEUE` when it has none, or when it fails."""
    chooser = getattr(handler, "measure_queue", None)
    if not callable(chooser):
        return LOCAL_QUEUE
    try:
        key = chooser(inputs)
    except Exception:
        log.exception("measure_queue_failed", task_id=str(inputs.task_id))
        return LOCAL_QUEUE
    return key if isinstance(key, str) else LOCAL_QUEUE


@dataclass
class Job:
    """One accepted task on its way to an output."""

    inputs: TaskInputs
    lane: Lane
    ready_s: float
    produce: Callable[[], TaskOutput]
    replay: bool = False
    fingerprint: str | None = None
    """``inputs_fingerprint`` of ``inputs``, recorded with the output in the journal."""
    queue: str = LOCAL_QUEUE
    """The measure queue (``Lane.MEASURE`` only): :data:`LOCAL_QUEUE`, or the measure host's id."""
    started_s: float | None = field(default=None)
    completing: bool = False
    """Set (under the runtime lock) by the one thread that records and publishes this job's output."""


class LanePool:
    """A FIFO of jobs served by ``workers`` daemon threads."""

    def __init__(self, name: str, workers: int, run: Callable[[Job], None]) -> None:
        self._queue: queue.SimpleQueue[Job | None] = queue.SimpleQueue()  # C-level: a hand-off costs no Python lock dance
        self._run = run
        self._threads = [threading.Thread(target=self._serve, name=f"carbon-{name}-{i}", daemon=True) for i in range(workers)]
        for thread in self._threads:
            thread.start()

    def submit(self, job: Job) -> None:
        self._queue.put(job)

    def drain(self) -> list[Job]:
        """Remove and return the jobs not started yet."""
        jobs: list[Job] = []
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return jobs
            if job is not None:
                jobs.append(job)

    def close(self, timeout_s: float) -> bool:
        """Stop the threads once their current job is done; True if they all ended within ``timeout_s``."""
        for _ in self._threads:
            self._queue.put(None)
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in self._threads)

    def _serve(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            try:
                self._run(job)
            except BaseException:  # never let a job kill the lane (SystemExit from a callback included)
                log.exception("lane_job_crashed", task_id=str(job.inputs.task_id))


class KeyedLanes:
    """One FIFO of jobs per key, each served by a daemon thread of its own while it has jobs.

    A key's thread starts with its first job and ends when its queue is empty (hosts come and go: no
    thread waits for a host that is gone). Jobs of one key run one after the other in submission order;
    jobs of different keys run at the same time.
    """

    def __init__(self, name: str, run: Callable[[Job], None]) -> None:
        self._name = name
        self._run = run
        self._lock = threading.Lock()
        self._queues: dict[str, deque[Job]] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._closed = False

    def submit(self, key: str, job: Job) -> None:
        with self._lock:
            self._queues.setdefault(key, deque()).append(job)
            if key in self._threads or self._closed:
                return
            thread = threading.Thread(target=self._serve, args=(key,), name=f"carbon-{self._name}-{key[:40]}", daemon=True)
            self._threads[key] = thread
        thread.start()

    def queued(self) -> dict[str, int]:
        """Jobs waiting per key (not counting the running one)."""
        with self._lock:
            return {key: len(jobs) for key, jobs in self._queues.items() if jobs}

    def drain(self) -> list[Job]:
        """Remove and return the jobs not started yet."""
        with self._lock:
            jobs = [job for queue_ in self._queues.values() for job in queue_]
            for queue_ in self._queues.values():
                queue_.clear()
        return jobs

    def close(self, timeout_s: float) -> bool:
        """Start no more jobs; True if every thread ended within ``timeout_s`` (their running job done)."""
        with self._lock:
            self._closed = True
            for queue_ in self._queues.values():
                queue_.clear()
            threads = list(self._threads.values())
        deadline = time.monotonic() + timeout_s
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in threads)

    def _serve(self, key: str) -> None:
        while True:
            with self._lock:
                jobs = self._queues.get(key)
                if self._closed or not jobs:
                    self._queues.pop(key, None)
                    self._threads.pop(key, None)
                    return
                job = jobs.popleft()
            try:
                self._run(job)
            except BaseException:  # never let a job kill the lane (SystemExit from a callback included)
                log.exception("lane_job_crashed", task_id=str(job.inputs.task_id))
