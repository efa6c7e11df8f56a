"""The runtime's lanes: a FIFO of accepted jobs served by daemon threads (PROTOCOL.md 4, threads).

The measure lane is one :class:`LanePool` with one thread (measurements one at a time, in arrival
order); the fast lane a pool of ``fast_workers`` threads for everything else.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from carbon_node.core import Lane, TaskInputs, TaskOutput

__all__ = ["THREAD_JOIN_S", "Job", "LanePool"]

log = structlog.get_logger(__name__)

THREAD_JOIN_S = 2.0
"""Longest wait, at stop, for one of the runtime's threads (the bus thread, a lane's) to end."""


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
