"""``carbon-node serve-measurements``: the measure host process, its start-up, main loop and graceful stop.

A measure host is a node without SustainML: it runs the same measurement worker
(:class:`~carbon_node.measure.client.WorkerMeasurer`, started at once and warming up in its own process)
and serves the pool's requests (:class:`~carbon_node.bus.pool_host.MeasureHost`) on the DDS domain
``domain_id``, announcing its hardware names (``--hardware-name``, ``hardware_names``, then the detected
GPU and CPU models) and the power sources it can read. It never reads a SustainML topic.

Like the node it tells systemd ``READY=1`` once it serves, pings the watchdog from its main loop, keeps a
heartbeat file in ``state_dir`` for ``carbon-node health``, and on the first SIGTERM/SIGINT answers its
queued requests with an error (their nodes measure elsewhere at once), finishes the running window
within ``shutdown_timeout_s`` and leaves the domain; a second signal ends it at once. SIGHUP is logged
and otherwise ignored: a measure host reads its settings at start only.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

import structlog

from carbon_node.service.health import Heartbeat, heartbeat_path
from carbon_node.service.settings import Settings
from carbon_node.service.systemd import Notifier

__all__ = ["HOST_FIELDS", "run_measure_host"]

log = structlog.get_logger(__name__)

HOST_FIELDS = (
    "domain_id",
    "hardware_names",
    "device",
    "task_timeout_s",
    "model_load_timeout_s",
    "measure_cache_ttl_s",
    "model_cache_max_models",
    "model_cache_max_mb",
    "max_model_mb",
    "trust_remote_code",
    "model_dirs",
    "torch_threads",
    "sim_cpu_tdp_w",
    "sim_cpu_util",
    "state_dir",
    "cache_dir",
    "shutdown_timeout_s",
    "log_format",
    "log_level",
)
"""The settings a measure host uses (its command's flags; the others are not read)."""

_MAX_TICK_S = 5.0
WORKER_CLOSE_TIMEOUT_S = 5.0


def run_measure_host(settings: Settings, hardware: tuple[str, ...] = (), notifier: Notifier | None = None) -> int:
    """Serve measurements until SIGTERM/SIGINT; the exit status (0 after a graceful stop, 1 when it could
    not start). ``hardware``: the ``--hardware-name`` values."""
    from carbon_node.bus.pool_host import MeasureHost
    from carbon_node.service.pool import host_names, power_sources, spec_template
    from carbon_node.service.wiring import worker_measurer

    notifier = Notifier() if notifier is None else notifier
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second signal ends the process at once
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        log.info("shutdown.requested", signal=signal.Signals(signum).name, hint="a second signal exits at once")
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # SIGHUP (a closed terminal, a reload): a measure host reads its settings at start only; never die of it.
    signal.signal(signal.SIGHUP, lambda _signum, _frame: log.warning("reload.unsupported", hint="restart the measure host"))
    scratch_dir = settings.state_dir / "scratch"
    scratch_dir.mkdir(parents=True, exist_ok=True)
    measurer = worker_measurer(settings, scratch_dir)
    measurer.start()
    heartbeat = Heartbeat(heartbeat_path(settings.state_dir))
    host: MeasureHost | None = None
    try:
        heartbeat.start()
        names = host_names(settings, hardware)
        host = MeasureHost(
            measurer,
            domain_id=settings.domain_id,
            template=spec_template(settings),
            hardware=names,
            power_sources=power_sources(settings),
            detail={"device": settings.device, "measure_cache_ttl_s": settings.measure_cache_ttl_s},
            heartbeat=heartbeat.beat,
        )
        host.start()
    except Exception as exc:
        log.error("host.start_failed", error=f"{type(exc).__name__}: {exc}"[:500])
        if host is not None:
            host.stop(0.0)
        measurer.close(timeout_s=WORKER_CLOSE_TIMEOUT_S)
        heartbeat.remove()
        return 1
    status = f"serving measurements on DDS domain {settings.domain_id} as {host.host_id}"
    notifier.ready(status=status)
    tick_s = min(notifier.watchdog_interval_s or _MAX_TICK_S, _MAX_TICK_S)
    while not stop.wait(tick_s):
        notifier.watchdog()
    notifier.stopping(status="stopping: finishing the running measurement")
    host.stop(settings.shutdown_timeout_s)
    measurer.close(timeout_s=WORKER_CLOSE_TIMEOUT_S)
    heartbeat.remove()
    return 0
