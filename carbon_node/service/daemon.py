"""The long-running node: wiring, main loop and graceful shutdown.

Start-up, in this order (so that NODE_IDLE is published well within 1.5 s of process start):

1. the measurement worker (:class:`~carbon_node.measure.client.WorkerMeasurer`) is started at once and
   warms up (imports torch, transformers, carbontracker) in its own process, in the background;
2. the engine (with the measurement pool: :mod:`carbon_node.service.pool`, which joins the domain on a
   participant of its own), the journal and the bus runtime are built; the runtime publishes
   INITIALIZING then IDLE; then the engine starts loading the place resolver's data in a thread (a few
   hundred ms of CPU that start-up does not wait for; a task that needs it first waits for it);
3. metrics are served (when ``metrics_port`` is set) and systemd is told ``READY=1``.

This process itself never imports torch, transformers or carbontracker: it only speaks DDS.

Reload (SIGHUP, ``systemctl reload``): the configuration is read again by the main loop, never in the
signal handler, and what can change without a restart is applied (:mod:`carbon_node.service.reload`);
no task is lost or answered twice, since no part is rebuilt.

Shutdown (SIGTERM or SIGINT): stop accepting tasks, let the running measurement finish or abort it
after ``shutdown_timeout_s``, answer every accepted task (an error output when aborted), publish
NODE_TERMINATING, exit 0. The first signal restores the default handlers, so a second signal ends the
process at once with a non-zero status, whatever the node is doing.

Stopping an idle node takes a fraction of a second (0.5 s is the goal): the worker is killed at once
while it still warms up and exits without an interpreter teardown when idle (see
:meth:`~carbon_node.measure.client.WorkerMeasurer.close`), and ``carbon-node run`` itself leaves through
:func:`exit_process` once everything is closed, skipping the interpreter's final collections (about
0.2 s of CPU, more on a loaded host) that would free nothing the operating system does not.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn

import structlog

from carbon_node.base import CarbonNodeError, version
from carbon_node.measure.protocol import Measurement, MeasureSpec
from carbon_node.service.health import Heartbeat, heartbeat_path
from carbon_node.service.settings import Settings
from carbon_node.service.systemd import Notifier

if TYPE_CHECKING:
    from carbon_node.bus.standby import StandbyView
    from carbon_node.core import Journal, TaskOutput
    from carbon_node.service.metrics import NodeMetrics
    from carbon_node.service.reload import ReloadPlan

__all__ = ["Daemon", "exit_process", "run_daemon"]

log = structlog.get_logger(__name__)

START_TIMEOUT_S = 10.0
"""Seconds the bus runtime may take to publish NODE_IDLE before start-up is declared failed."""

WORKER_CLOSE_TIMEOUT_S = 5.0
"""Seconds the measurement worker gets to exit after the runtime has stopped."""

_MAX_TICK_S = 5.0
"""Longest wait of the main loop between two checks (and two watchdog pings without a watchdog)."""


def _stat(source: Any, name: str) -> float:
    """A counter from ``source.stats`` (a mapping, an object, or a method returning either); 0 when absent."""
    stats = getattr(source, "stats", None)
    if callable(stats):
        stats = stats()
    value = stats.get(name, 0) if isinstance(stats, Mapping) else getattr(stats, name, 0)
    return float(value or 0)


class ObservedMeasurer:
    """The worker measurer, with each :class:`Measurement` also handed to ``on_measurement`` (metrics).

    Everything else (``start``, ``abort``, ``close``, ``stats``) is the wrapped measurer's own.
    """

    def __init__(self, measurer: Any, on_measurement: Callable[[Measurement], None]) -> None:
        self._measurer = measurer
        self._on_measurement = on_measurement

    def measure(self, spec: MeasureSpec) -> Measurement:
        measurement: Measurement = self._measurer.measure(spec)
        self._on_measurement(measurement)
        return measurement

    def __getattr__(self, name: str) -> Any:
        return getattr(self._measurer, name)


class Daemon:
    """One node process: builds the parts from ``settings``, runs until asked to stop, shuts down.

    ``notifier`` defaults to the one described by the environment (``$NOTIFY_SOCKET``).
    """

    def __init__(
        self, settings: Settings, *, notifier: Notifier | None = None, reread: Callable[[], Settings] | None = None
    ) -> None:
        self.settings = settings
        self.notifier = Notifier() if notifier is None else notifier
        self._reread = reread
        """Reads the configuration again as at start (same flags and environment); None: reload is off."""
        self._stop = threading.Event()
        self._wake = threading.Event()  # a stop or a reload was requested
        self._reload_wanted = False
        self._ready = False
        self._stop_reason = ""
        self.measurer: Any = None
        self.pool: Any = None
        """Where measurements run: the pool of measure hosts, or only this host (:mod:`carbon_node.service.pool`)."""
        self.engine: Any = None
        self.journal: Journal | None = None
        self.runtime: Any = None
        self.metrics: NodeMetrics | None = None
        self.node_id = ""
        """This node's id among the carbon nodes of its domain (set at start)."""
        self.bus_kind: str = settings.bus
        """The bus in use: ``settings.bus`` with ``auto`` resolved once the node starts."""
        self.heartbeat = Heartbeat(heartbeat_path(settings.state_dir))
        """Refreshed by the bus thread; read by ``carbon-node health`` (container health checks)."""

    # -- start-up -------------------------------------------------------------------------------

    def start(self) -> None:
        """Build every part and start the bus; returns once NODE_IDLE is published."""
        s = self.settings
        scratch_dir = s.state_dir / "scratch"
        scratch_dir.mkdir(parents=True, exist_ok=True)

        from carbon_node.service.wiring import engine_config, worker_measurer

        self.measurer = worker_measurer(s, scratch_dir)
        self.measurer.start()
        # Everything else is imported once the worker runs: it imports torch meanwhile, on another core.
        from carbon_node.service.metrics import POOL_STATS, NodeMetrics

        self.metrics = NodeMetrics(
            pending=lambda: self.runtime.stats().pending if self.runtime is not None else 0,
            in_flight=lambda: self.runtime.stats().in_flight if self.runtime is not None else 0,
            worker_restarts=lambda: _stat(self.measurer, "worker_restarts"),
            active=lambda: 0 if self._standby_view().get("role") == "standby" else 1,
            held=lambda: float(self._standby_view().get("held_tasks") or 0),
            pool=lambda: {name: _stat(self.pool, name) for name in POOL_STATS},
        )

        # Metrics first: a port clash fails start-up before the bus announces the node, and a client
        # that saw IDLE can scrape at once.
        if s.metrics_port is not None:
            self.metrics.serve(s.metrics_port, s.metrics_host)
        from carbon_node.engine.engine import Engine
        from carbon_node.service.pool import connect_pool, node_placer

        observe = self.metrics.observe_measurement
        self.pool = node_placer(s, ObservedMeasurer(self.measurer, observe), observe)
        self.engine = Engine(engine_config(s), self.pool)
        self.journal = self._open_journal()
        from carbon_node.bus.upstream import LOADER_PATH_FIX, choose_bus, make_bus

        choice = choose_bus(s.bus)
        if choice.fallback_error is not None:
            log.warning("bus.auto_fallback", bus="cyclone", error=choice.fallback_error, hint=LOADER_PATH_FIX)
        self.bus_kind = choice.kind
        runtime_factory: Callable[..., Any] = make_bus(self.bus_kind)
        self.heartbeat.start()
        from carbon_node.bus.announce import new_node_id
        from carbon_node.bus.standby import StandbyOptions

        self.node_id = new_node_id()
        standby = StandbyOptions(
            enabled=s.standby,
            node_id=self.node_id,
            detail={"bus": self.bus_kind, "domain_id": s.domain_id, "pid": os.getpid()},
            grace_s=s.standby_grace_s,
        )
        self.runtime = runtime_factory(
            self.engine,
            domain_id=s.domain_id,
            input_timeout_s=s.input_timeout_s,
            max_pending=s.max_pending_tasks,
            journal=self.journal,
            describe=self.describe,
            on_output=self._on_output,
            heartbeat=self.heartbeat.beat,
            standby=standby,
            on_role=self._on_role,
        )
        # The pool's hosts are discovered while the bus starts (and a standby listens for the other nodes).
        self.runtime.start(timeout_s=START_TIMEOUT_S, meanwhile=lambda: connect_pool(self.pool, s, self.node_id))
        self.engine.warm_up()  # the place resolver's data, in the background: after IDLE, not before
        view = self._standby_view()
        log.info(
            "node.idle",
            domain_id=s.domain_id,
            bus=self.bus_kind,
            state_dir=str(s.state_dir),
            role=view.get("role"),
            node_id=self.node_id,
            **({"active_node": view.get("active_node")} if view.get("role") == "standby" else {}),
        )
        self._ready = True
        self.notifier.ready(status=self._status_text())
        self.notifier.watchdog()

    def _open_journal(self) -> Journal | None:
        s = self.settings
        if not s.journal:
            return None
        from carbon_node.service.journal import SqliteJournal

        return SqliteJournal(s.state_dir / "journal.sqlite3", max_tasks=s.journal_max_tasks, retention_s=s.journal_retention_s)

    def describe(self) -> dict[str, Any]:
        """What the node tells a ``{"command": "describe"}`` request: version, the bus in use (``auto``
        resolved), effective settings (secrets masked)."""
        return {
            "node": "CARBON_FOOTPRINT_NODE",
            "version": version(),
            "bus": self.bus_kind,
            "standby": self._standby_view(),
            "settings": self.settings.public_dict(),
            "measure_pool": self._describe_pool(),
        }

    def _describe_pool(self) -> dict[str, Any]:
        """The pool in ``describe``: the live hosts and the counts, or where every measurement runs."""
        describe = getattr(self.pool, "describe", None)
        if callable(describe):
            return dict(describe())
        return {"enabled": False, "local_hardware": list(getattr(self.pool, "hardware", ()))}

    def _standby_view(self) -> dict[str, Any]:
        """The node's role among the carbon nodes of its domain (see :mod:`carbon_node.bus.standby`)."""
        view_of = getattr(self.runtime, "standby_view", None)
        view = view_of() if callable(view_of) else None
        if view is None:
            return {"enabled": False, "role": "active"}
        return {"enabled": self.settings.standby, **view.as_dict()}

    def _on_role(self, view: StandbyView) -> None:
        """A new role (decided at start, a takeover, a step down): said in the health file and to systemd."""
        self.heartbeat.note(role=view.role, active_node=view.active_node_id, active_host=view.active_host)
        if self._ready:  # at start, READY=1 carries it
            self.notifier.status(self._status_text())

    def _status_text(self) -> str:
        """The one line ``systemctl status`` shows."""
        view = self._standby_view()
        if view.get("role") == "standby":
            return f"standby for {view.get('active_node')} on DDS domain {self.settings.domain_id}"
        return f"idle on DDS domain {self.settings.domain_id}"

    def _on_output(self, output: TaskOutput) -> None:
        # The runtime writes the one log line per task; this hook only feeds the metrics.
        if self.metrics is not None:
            self.metrics.observe(output)

    # -- running --------------------------------------------------------------------------------

    def request_stop(self, reason: str) -> None:
        """Ask the main loop to shut down (thread-safe, idempotent)."""
        if not self._stop.is_set():
            self._stop_reason = reason
            self._stop.set()
            self._wake.set()

    def request_reload(self) -> None:
        """Ask the main loop to read the configuration again (safe from a signal handler)."""
        self._reload_wanted = True
        self._wake.set()

    def reload(self) -> ReloadPlan | None:
        """Read the configuration again and apply what can change without a restart (see
        :mod:`carbon_node.service.reload`); None when it could not be read (nothing changes then)."""
        from carbon_node.service.reload import plan_reload

        self.notifier.reloading(status="reloading the configuration")
        try:
            if self._reread is None:
                raise CarbonNodeError("this node was started without a configuration to read again")
            reread = self._reread()
        except CarbonNodeError as exc:
            log.error("reload.failed", error=str(exc), consequence="the running settings stay as they were")
            self.notifier.ready(status=self._status_text())
            return None
        plan = plan_reload(self.settings, reread)
        self._apply(plan)
        self.settings = plan.settings
        log.info(
            "reload.done",
            applied={name: new for name, (_, new) in plan.applied.items()},
            restart_needed=sorted(plan.restart_needed),
            **({"hint": "restart the node for these: systemctl restart carbon-node"} if plan.restart_needed else {}),
        )
        self.notifier.ready(status=self._status_text())
        return plan

    def _apply(self, plan: ReloadPlan) -> None:
        """Hand each part its changed settings (only the parts whose settings changed)."""
        s, changed = plan.settings, set(plan.applied)
        if changed & {"log_level", "log_format"}:
            from carbon_node.service.logs import configure_logging

            configure_logging(s.log_format, s.log_level)
        from carbon_node.engine.config import EngineConfig
        from carbon_node.service.wiring import engine_config

        if self.engine is not None and changed & set(EngineConfig.__dataclass_fields__):
            self.engine.reconfigure(engine_config(s))
        worker = {"task_timeout_s", "measure_cache_ttl_s", "model_cache_max_models", "model_cache_max_mb"}
        if self.measurer is not None and changed & worker:
            self.measurer.reconfigure(
                task_timeout_s=s.task_timeout_s,
                measure_cache_ttl_s=s.measure_cache_ttl_s,
                model_cache_max_models=s.model_cache_max_models,
                model_cache_max_mb=s.model_cache_max_mb,
            )
        reconfigure_journal = getattr(self.journal, "reconfigure", None)
        if callable(reconfigure_journal) and changed & {"journal_max_tasks", "journal_retention_s"}:
            reconfigure_journal(max_tasks=s.journal_max_tasks, retention_s=s.journal_retention_s)
        reconfigure_runtime = getattr(self.runtime, "reconfigure", None)
        if callable(reconfigure_runtime) and changed & {"input_timeout_s", "max_pending_tasks"}:
            reconfigure_runtime(input_timeout_s=s.input_timeout_s, max_pending=s.max_pending_tasks)

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT request a graceful stop; the first one re-arms the default action for the next."""

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            name = signal.Signals(signum).name
            # A second signal must end the process even if shutdown hangs in native code: default action.
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            log.info(
                "shutdown.requested",
                signal=name,
                shutdown_timeout_s=self.settings.shutdown_timeout_s,
                hint="a second signal exits at once",
            )
            self.request_stop(name)

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        # SIGHUP (systemctl reload, a closed terminal): read the configuration again, in the main loop.
        signal.signal(signal.SIGHUP, lambda _signum, _frame: self.request_reload())

    def wait(self, timeout_s: float | None = None) -> bool:
        """Run the main loop until a stop is requested (True) or ``timeout_s`` passes (False).

        Each wait on the stop event is bounded; the loop pings the systemd watchdog between waits.
        """
        tick_s = min(self.notifier.watchdog_interval_s or _MAX_TICK_S, _MAX_TICK_S)
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            wait_s = tick_s if deadline is None else max(0.0, min(tick_s, deadline - time.monotonic()))
            self._wake.wait(wait_s)
            self._wake.clear()
            if self._stop.is_set():
                return True
            if self._reload_wanted:
                self._reload_wanted = False
                self.reload()
            if deadline is not None and time.monotonic() >= deadline:
                return False
            self.notifier.watchdog()

    # -- shutdown -------------------------------------------------------------------------------

    def shutdown(self) -> bool:
        """Stop accepting, finish or abort the running task, answer all, publish TERMINATING.

        Returns True when the running measurement (if any) finished without being aborted.
        """
        s = self.settings
        self.notifier.stopping(status="stopping: finishing the running task")
        started = time.monotonic()
        clean = True
        if self.runtime is not None:
            clean = bool(self.runtime.stop(timeout_s=s.shutdown_timeout_s))
        self.heartbeat.remove()
        close_pool = getattr(self.pool, "close", None)
        if callable(close_pool):
            close_pool()
        if self.measurer is not None:
            self.measurer.close(timeout_s=WORKER_CLOSE_TIMEOUT_S)
        close_journal = getattr(self.journal, "close", None)
        if callable(close_journal):
            close_journal()
        if self.metrics is not None:
            self.metrics.close()
        log.info(
            "node.stopped",
            reason=self._stop_reason or "requested",
            aborted=not clean,
            shutdown_s=round(time.monotonic() - started, 3),
        )
        return clean


def run_daemon(settings: Settings, reread: Callable[[], Settings] | None = None) -> int:
    """Run the node until SIGTERM/SIGINT; the process exit status (0 after a graceful stop). ``reread``
    reads the configuration again for a reload (SIGHUP); without it a reload changes nothing."""
    daemon = Daemon(settings, reread=reread)
    daemon.install_signal_handlers()
    try:
        daemon.start()
    except CarbonNodeError as exc:
        log.error("node.start_failed", error=str(exc))
        _clean_up_failed_start(daemon)
        return 1
    except OSError as exc:
        log.error("node.start_failed", error=f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "))
        _clean_up_failed_start(daemon)
        return 1
    except Exception:
        log.exception("node.start_failed")
        _clean_up_failed_start(daemon)
        return 1
    try:
        daemon.wait()
    finally:
        daemon.shutdown()
    return 0


def _clean_up_failed_start(daemon: Daemon) -> None:
    """Release what a failed start had built; a second failure is one log line, never a traceback that
    buries the first one."""
    try:
        daemon.shutdown()
    except Exception as exc:
        log.warning("node.cleanup_failed", error=f"{type(exc).__name__}: {exc}")


def exit_process(status: int) -> NoReturn:
    """End the process with ``status`` after :func:`run_daemon` returned: logs and standard streams are
    flushed, then ``os._exit`` skips the interpreter's teardown (everything the node opened is closed)."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed or broken stream must not change the status
            stream.flush()
    os._exit(status)
