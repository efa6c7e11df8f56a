"""The :class:`Measurer` the node uses: a long-lived worker process, restarted when it fails.

:class:`WorkerMeasurer` runs :func:`carbon_node.measure.worker.worker_main` in a process started with the
``spawn`` context (never a fork of the DDS process) and sends it one spec at a time over a pipe. The
worker ends by itself when the node's process is gone, also in the middle of a window.

- Start-up: :meth:`~WorkerMeasurer.start` spawns the worker, which imports torch, transformers and
  carbontracker in the background; a measurement that arrives first is sent at once and served right
  after those imports (before the worker's generic warm-up), within ``start_timeout_s`` seconds.
- Bounds: a measurement waits at most ``task_timeout_s`` seconds for its answer. On timeout the worker
  is killed and replaced and :class:`MeasureTimeout` is raised; when the worker dies (SIGKILL, segfault,
  out of memory) :class:`WorkerCrashed` is raised and the worker is replaced. The next measurement works.
- Shutdown: :meth:`~WorkerMeasurer.abort` kills the worker of a running measurement (from any thread);
  :meth:`~WorkerMeasurer.close` waits for a running measurement, then stops the worker: a worker still
  warming up is killed at once (waiting for torch's import would delay the node's stop by seconds), an
  idle one gets ``stop`` and a fraction of a second to exit.
- Measurement cache: a spec measured less than ``measure_cache_ttl_s`` seconds ago is answered with the
  earlier Measurement (``cached=True``) without running the model, as long as the model string still
  names the same model (:mod:`carbon_node.measure.identity`: a stat of the directory's files or a read
  of the hub cache's ``refs/main`` per lookup); 0 disables it.

Importing this module does not import torch, transformers or carbontracker: the DDS process stays light.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import os
import signal
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

import structlog

from carbon_node.measure.identity import model_identity
from carbon_node.measure.protocol import (
    MeasureError,
    Measurement,
    MeasureSpec,
    MeasureTimeout,
    ModelRejected,
    WorkerCrashed,
)
from carbon_node.measure.worker import worker_main
from carbon_node.measure.worker_pipe import Ready, Reply, WorkerConfig

__all__ = ["WorkerMeasurer"]

log = structlog.get_logger(__name__)

MEASURE_CACHE_MAX_ENTRIES = 256
"""Distinct specs kept in the measurement cache (oldest dropped first)."""

_STOP_GRACE_S = 2.0
"""Seconds a killed worker gets to be reaped."""

_IDLE_EXIT_S = 0.2
"""Seconds an idle, warmed-up worker gets to exit after ``stop`` before it is killed (it holds nothing
that needs saving; the bound keeps the node's stop fast)."""


def _exit_reason(exitcode: int | None) -> str:
    """Say why a worker process ended, from its exit code (negative: killed by a signal)."""
    if exitcode is None:
        return "it stopped answering"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        hints = {"SIGKILL": " (killed, e.g. out of memory)", "SIGSEGV": " (segmentation fault)", "SIGABRT": " (aborted)"}
        return f"killed by {name}{hints.get(name, '')}"
    if exitcode == 70:
        return "carbontracker exited with code 70 (no usable power source)"
    return f"exit code {exitcode}"


def _kill_if_alive(process: multiprocessing.process.BaseProcess) -> None:
    if process.is_alive():
        process.kill()
        process.join(_STOP_GRACE_S)


class _Worker:
    """One worker process and the client's end of its pipe."""

    def __init__(self, config: WorkerConfig) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, child_conn = ctx.Pipe(duplex=True)
        self.process = ctx.Process(
            target=worker_main, args=(child_conn, config, os.getpid()), name="carbon-node-measure", daemon=True
        )
        self.process.start()
        child_conn.close()  # only the child holds its end now: the pipe reports EOF when the child dies
        self.ready: Ready | None = None
        self.unavailable: str | None = None
        """Why the worker cannot measure (a library it could not import), once it said so."""
        self.started = time.monotonic()
        # The worker ignores SIGTERM (the node decides when it stops), and multiprocessing's exit hook
        # joins daemon children after a SIGTERM without a timeout: a process that exits without closing
        # its measurer would hang there. This finalizer, run at exit before that hook, kills it instead.
        weakref.finalize(self, _kill_if_alive, self.process)

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def receive(self, timeout_s: float) -> tuple[Any, ...] | None:
        """The next message, None on timeout; raises EOFError when the worker is gone."""
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            ready = wait([self.conn, self.process.sentinel], timeout=remaining)
            if self.conn in ready:
                message = self.conn.recv()  # EOFError when the child closed its end by dying
                if message[0] == "ready":
                    self.ready = message[1]
                elif message[0] == "unavailable":
                    self.unavailable = message[1]
                return tuple(message)
            if self.process.sentinel in ready:
                raise EOFError("worker exited")

    def drain(self) -> None:
        """Read, without waiting, what an exited worker sent before it went (its "unavailable" reason)."""
        try:
            while self.conn.poll():
                message = self.conn.recv()
                if message[0] == "ready":
                    self.ready = message[1]
                elif message[0] == "unavailable":
                    self.unavailable = message[1]
        except (EOFError, OSError):
            pass

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(_STOP_GRACE_S)
        self.conn.close()

    def stop(self, timeout_s: float) -> None:
        """End an idle worker: one still warming up is killed at once (it reads no request before its
        imports are done, which can take seconds); a warmed-up one is asked to exit and killed if it has
        not within ``timeout_s`` (it ignores SIGTERM)."""
        with contextlib.suppress(EOFError, OSError, ValueError):
            if self.ready is None and self.conn.poll(0):  # a "ready" already sent but not yet read
                message = self.conn.recv()
                if message[0] == "ready":
                    self.ready = message[1]
        if self.ready is not None:
            with contextlib.suppress(OSError, ValueError):
                self.conn.send(("stop",))
            self.process.join(timeout_s)
        self.kill()


class WorkerMeasurer:
    """Measures specs in a worker process (see the module docstring). Thread-safe, one at a time."""

    def __init__(
        self,
        *,
        task_timeout_s: float = 75.0,
        model_cache_max_models: int = 4,
        model_cache_max_mb: float = 2048.0,
        measure_cache_ttl_s: float = 3600.0,
        scratch_dir: Path,
        start_timeout_s: float = 120.0,
        hub_cache_dir: Path | None = None,
        torch_threads: int | None = None,
        prime_tdp_table: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.task_timeout_s = task_timeout_s
        self.measure_cache_ttl_s = measure_cache_ttl_s
        self.start_timeout_s = start_timeout_s
        self._clock = clock
        self._config = WorkerConfig(
            Path(scratch_dir),
            model_cache_max_models,
            model_cache_max_mb,
            hub_cache_dir=hub_cache_dir,
            torch_threads=torch_threads,
            prime_tdp_table=prime_tdp_table,
        )
        self._lock = threading.Lock()  # one measurement at a time
        self._state = threading.Lock()  # guards the worker handle and the flags below
        self._worker: _Worker | None = None
        self._busy = False
        self._aborted = False
        self._closed = False
        self._unavailable: str | None = None
        self._request_id = 0
        self._resize_pending = False  # the worker's model cache bounds changed: tell it before the next request
        self._results: OrderedDict[MeasureSpec, tuple[Measurement, float]] = OrderedDict()
        self._hub_cache: str | None = None  # the worker's hub cache directory, from its Ready
        self.worker_restarts = 0
        """Workers replaced after a timeout, a crash or an abort."""
        self.cached_models = 0
        """Models loaded in the worker, as of its last answer."""

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Spawn the worker if none is running; returns at once (the worker warms up in the background)."""
        with self._state:
            if self._closed:
                raise MeasureError("the measurer is closed")
            if self._unavailable is None:
                self._ensure_worker()

    @property
    def unavailable(self) -> str | None:
        """Why this installation cannot measure (a worker could not import torch, transformers or
        carbontracker), once a worker said so; every measurement then fails at once with this reason."""
        return self._unavailable

    def wait_ready(self, timeout_s: float) -> bool:
        """Start the worker if needed and wait up to ``timeout_s`` seconds for its warm-up to finish."""
        with self._lock:
            self.start()
            worker = self._worker
            if worker is None:  # measuring is unavailable: no worker is started
                return False
            if worker.ready is None:
                try:
                    worker.receive(timeout_s)
                except EOFError:
                    return False
            self._note_unavailable(worker)
            return worker.ready is not None

    def _note_unavailable(self, worker: _Worker) -> None:
        """Keep a worker's "cannot measure here" answer; the worker exits on its own after it."""
        if worker.unavailable is not None and self._unavailable is None:
            self._unavailable = worker.unavailable
            worker.kill()
            log.error("measure.unavailable", reason=worker.unavailable)

    @property
    def worker_pid(self) -> int | None:
        """Process id of the current worker, None when none is running."""
        worker = self._worker
        return worker.pid if worker is not None and worker.process.is_alive() else None

    @property
    def worker_ready(self) -> Ready | None:
        """The current worker's warm-up report (versions, import time), once it has arrived."""
        worker = self._worker
        return worker.ready if worker is not None else None

    def abort(self) -> bool:
        """Kill the worker of the running measurement (which raises WorkerCrashed); False when idle."""
        with self._state:
            if not self._busy or self._worker is None:
                return False
            self._aborted = True
            pid = self._worker.pid
            self._worker.process.kill()
        log.warning("measure.aborted", pid=pid)
        return True

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the worker (waiting up to ``timeout_s`` seconds for a running measurement); idempotent."""
        with self._state:
            self._closed = True
        held = self._lock.acquire(timeout=timeout_s)
        if not held:
            self.abort()
            held = self._lock.acquire(timeout=_STOP_GRACE_S + 1.0)
        try:
            with self._state:
                worker, self._worker = self._worker, None
            if worker is not None:
                worker.stop(min(timeout_s, _IDLE_EXIT_S))
        finally:
            if held:
                self._lock.release()

    def __enter__(self) -> WorkerMeasurer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- measuring -------------------------------------------------------------------------------

    def reconfigure(
        self,
        *,
        task_timeout_s: float,
        measure_cache_ttl_s: float,
        model_cache_max_models: int,
        model_cache_max_mb: float,
    ) -> None:
        """Apply a reloaded configuration: the time limit and the measurement cache's lifetime from the next
        measurement on (a shorter lifetime drops older answers), the worker's model cache bounds before its
        next request (a replacement worker starts with them). Never waits for a running measurement."""
        self.task_timeout_s = task_timeout_s
        self.measure_cache_ttl_s = measure_cache_ttl_s
        bounds = (model_cache_max_models, model_cache_max_mb)
        with self._state:
            if bounds != (self._config.model_cache_max_models, self._config.model_cache_max_mb):
                self._config = dataclasses.replace(
                    self._config, model_cache_max_models=model_cache_max_models, model_cache_max_mb=model_cache_max_mb
                )
                self._resize_pending = True

    def measure(self, spec: MeasureSpec) -> Measurement:
        """Measure ``spec`` in the worker, or answer from the measurement cache (see the module docstring)."""
        with self._lock:
            if self._closed:
                raise MeasureError("the measurer is closed")
            if self._unavailable is not None:
                raise MeasureError(self._unavailable)
            cached = self._cached(spec)
            if cached is not None:
                log.info("measure.cache_hit", model=spec.model, measured_at=cached.measured_at)
                return cached
            with self._state:
                worker = self._ensure_worker()
                if worker is None:  # the worker that just exited said why it cannot measure
                    raise MeasureError(self._unavailable or "measurement unavailable")
                self._busy, self._aborted = True, False
                if self._resize_pending:
                    self._resize_pending = False
                    with contextlib.suppress(OSError, ValueError):  # a dead worker is replaced by _ask
                        worker.conn.send(("configure", self._config.model_cache_max_models, self._config.model_cache_max_mb))
            try:
                reply = self._ask(worker, spec)
            finally:
                with self._state:
                    self._busy = False
            self.cached_models = reply.cached_models
            if worker.ready is not None:
                self._hub_cache = worker.ready.hub_cache or None
            if reply.measurement is None:
                error = ModelRejected if reply.error_kind == "rejected" else MeasureError
                raise error(reply.message)
            self._remember(spec, reply.measurement)
            return reply.measurement

    def _ask(self, worker: _Worker, spec: MeasureSpec) -> Reply:
        """Send ``spec`` and wait for the reply within the timeouts; replaces the worker on failure.

        The request goes out at once, also to a worker still warming up: it serves a waiting task
        before any warm-up that task does not need (see :mod:`carbon_node.measure.worker`).
        """
        # One deadline for the whole task: a worker still starting (after a replacement) counts against it.
        deadline = time.monotonic() + self.task_timeout_s
        start_deadline = worker.started + self.start_timeout_s
        try:
            self._request_id += 1
            request_id = self._request_id
            worker.conn.send(("measure", request_id, spec, deadline))
            while True:
                limit = deadline if worker.ready is not None else min(deadline, start_deadline)
                remaining = limit - time.monotonic()
                if remaining <= 0:
                    break
                message = worker.receive(remaining)
                if message is not None and message[0] == "unavailable":
                    # Installed without the measure extra: say what is missing, start no other worker.
                    self._note_unavailable(worker)
                    raise MeasureError(message[1])
                if message is not None and message[0] == "reply" and message[1].request_id == request_id:
                    reply: Reply = message[1]
                    return reply
        except (EOFError, OSError):
            worker.drain()  # what it sent before exiting, also when the request could not be sent at all
            if worker.unavailable is not None:  # it said why before exiting
                self._note_unavailable(worker)
                raise MeasureError(worker.unavailable) from None
            worker.process.join(_STOP_GRACE_S)  # reap it, so its exit code tells why it died
            reason = "the measurement was aborted" if self._aborted else _exit_reason(worker.process.exitcode)
            self._replace(worker, reason, respawn=not self._aborted)
            if self._aborted:
                raise WorkerCrashed(f"the measurement of {spec.model!r} was aborted") from None
            raise WorkerCrashed(
                f"the measurement worker died while measuring {spec.model!r} ({reason}); it was replaced"
            ) from None
        if worker.ready is None:
            if time.monotonic() >= start_deadline:
                self._replace(worker, "start timeout")
                raise MeasureTimeout(f"the measurement worker did not start within {self.start_timeout_s:g} s; it was replaced")
            # Still within its start-up allowance: it keeps warming up for the next task (and drops this
            # request, whose deadline has passed).
            raise MeasureTimeout(
                f"the measurement of {spec.model!r} exceeded its time limit of {self.task_timeout_s:g} s "
                "(task_timeout_s) while the measurement worker was still starting"
            )
        self._replace(worker, "task timeout")
        raise MeasureTimeout(
            f"the measurement of {spec.model!r} exceeded its time limit of {self.task_timeout_s:g} s "
            "(task_timeout_s); the worker was replaced"
        )

    def _ensure_worker(self) -> _Worker | None:
        """The running worker, spawning one when there is none (call with ``_state`` held); None when the
        worker that exited said that this installation cannot measure (then no other one is started)."""
        if self._worker is None or not self._worker.process.is_alive():
            if self._worker is not None:
                # A worker that cannot import torch says so and exits at once: often before any
                # request reaches it. Its reason is in the pipe; starting another would only repeat it.
                self._worker.drain()
                self._note_unavailable(self._worker)
                if self._unavailable is not None:
                    return None
                self._worker.kill()
            self._worker = _Worker(self._config)
            log.info("measure.worker_started", pid=self._worker.pid)
        return self._worker

    def _replace(self, worker: _Worker, reason: str, *, respawn: bool = True) -> None:
        """Kill ``worker`` and, unless told otherwise, start its successor at once (it warms up meanwhile)."""
        worker.kill()
        log.warning("measure.worker_replaced", pid=worker.pid, reason=reason, exitcode=worker.process.exitcode)
        with self._state:
            self.worker_restarts += 1
            self.cached_models = 0
            if self._worker is worker:
                self._worker = None
            if respawn and not self._closed:
                self._ensure_worker()

    # -- measurement cache -----------------------------------------------------------------------

    @staticmethod
    def _cache_key(spec: MeasureSpec) -> MeasureSpec:
        # Everything in the spec matters (model, device, window, sim settings, limits) but the lookup timeout.
        return dataclasses.replace(spec, load_timeout_s=0.0)

    def _cached(self, spec: MeasureSpec) -> Measurement | None:
        if self.measure_cache_ttl_s <= 0:
            return None
        entry = self._results.get(self._cache_key(spec))
        if entry is None:
            return None
        measurement, stored_at = entry
        if self._clock() - stored_at >= self.measure_cache_ttl_s:
            del self._results[self._cache_key(spec)]
            return None
        identity = model_identity(spec.model, self._hub_cache)
        if identity is None or identity != measurement.model_identity:
            log.info("measure.cache_stale", model=spec.model, measured=measurement.model_identity, now=identity)
            del self._results[self._cache_key(spec)]
            return None
        return dataclasses.replace(measurement, cached=True, load_s=0.0, measure_s=0.0)

    def _remember(self, spec: MeasureSpec, measurement: Measurement) -> None:
        if self.measure_cache_ttl_s <= 0:
            return
        key = self._cache_key(spec)
        self._results.pop(key, None)
        self._results[key] = (measurement, self._clock())
        while len(self._results) > MEASURE_CACHE_MAX_ENTRIES:
            self._results.popitem(last=False)

    def stats(self) -> dict[str, float]:
        """Numbers for metrics: worker restarts, models loaded in the worker, cached measurements."""
        return {
            "worker_restarts": float(self.worker_restarts),
            "cached_models": float(self.cached_models),
            "cached_measurements": float(len(self._results)),
        }
