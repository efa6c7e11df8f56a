"""Prometheus metrics (off by default; ``--metrics-port`` turns them on).

Served by prometheus-client's own HTTP server on ``metrics_host`` (127.0.0.1 by default: the numbers
say which models an operator runs, so they are not published beyond the host unless asked). Each node
gets its own registry, so tests and embedding applications can run several.

| Metric | Kind | Unit |
|---|---|---|
| ``carbon_node_tasks_total{mode}`` | counter | tasks answered, by output mode |
| ``carbon_node_task_duration_seconds`` | histogram | seconds from complete inputs to the answer |
| ``carbon_node_measurement_energy_kwh_total`` | counter | kWh of all measurement windows |
| ``carbon_node_last_measurement_energy_kwh`` | gauge | kWh of the latest measurement window |
| ``carbon_node_worker_restarts_total`` | gauge (read on scrape) | measurement worker replacements |
| ``carbon_node_pending_tasks`` | gauge (read on scrape) | incomplete tasks waiting for their inputs |
| ``carbon_node_in_flight_tasks`` | gauge (read on scrape) | accepted tasks not answered yet (queued or running) |
| ``carbon_node_pool_hosts`` | gauge (read on scrape) | live measure hosts of the pool |
| ``carbon_node_pool_remote_measurements_total`` | gauge (read on scrape) | measurements made by measure hosts |
| ``carbon_node_pool_fallbacks_total`` | gauge (read on scrape) | measurements moved to this host after a measure host failed |
| ``carbon_node_pool_errors_total`` | gauge (read on scrape) | tasks answered ``error`` after a measure host failed |
| ``carbon_node_pool_late_replies_total`` | gauge (read on scrape) | replies after their request was given up (dropped) |
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

if TYPE_CHECKING:  # core brings the DDS types: the daemon serves metrics before it imports them
    from carbon_node.core import TaskOutput
    from carbon_node.measure.protocol import Measurement

__all__ = ["POOL_STATS", "NodeMetrics", "task_seconds"]

log = structlog.get_logger(__name__)

POOL_STATS = {
    "pool_hosts": ("carbon_node_pool_hosts", "Live measure hosts of the pool"),
    "pool_remote_measurements": ("carbon_node_pool_remote_measurements_total", "Measurements made by measure hosts"),
    "pool_fallbacks": ("carbon_node_pool_fallbacks_total", "Measurements moved to this host after a measure host failed"),
    "pool_errors": ("carbon_node_pool_errors_total", "Tasks answered error after a measure host failed"),
    "pool_late_replies": ("carbon_node_pool_late_replies_total", "Measure host replies after their request was given up"),
}
"""The pool's numbers (``PoolMeasurer.stats()`` keys) and their metric names and help texts."""

_DURATION_BUCKETS_S = (0.005, 0.05, 0.25, 1.0, 2.5, 5.0, 10.0, 30.0, 75.0, 300.0, 900.0)


def _reader(source: Callable[[], Mapping[str, float]], key: str) -> Callable[[], float]:
    """A gauge's function: ``key`` of what ``source`` returns at scrape time (0 when absent)."""
    return lambda: float(source().get(key, 0.0))


def task_seconds(output: TaskOutput) -> float:
    """Seconds the task took: ``total_s`` when the runtime gives it, else the sum of its stages."""
    if "total_s" in output.timings:
        return float(output.timings["total_s"])
    return float(sum(output.timings.values()))


class NodeMetrics:
    """The node's metrics in their own registry.

    :meth:`observe` is the runtime's ``on_output`` hook, :meth:`observe_measurement` sees each
    measurement; ``pending``, ``in_flight``, ``worker_restarts``, ``active`` and ``held`` (the standby
    role) are read at scrape time.
    """

    def __init__(
        self,
        *,
        pending: Callable[[], float] = lambda: 0,
        in_flight: Callable[[], float] = lambda: 0,
        worker_restarts: Callable[[], float] = lambda: 0,
        active: Callable[[], float] = lambda: 1,
        held: Callable[[], float] = lambda: 0,
        pool: Callable[[], Mapping[str, float]] = dict,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.registry = CollectorRegistry() if registry is None else registry
        self.tasks = Counter("carbon_node_tasks", "Tasks answered, by output mode", ["mode"], registry=self.registry)
        self.duration = Histogram(
            "carbon_node_task_duration_seconds",
            "Seconds from complete inputs to the published answer",
            buckets=_DURATION_BUCKETS_S,
            registry=self.registry,
        )
        self.energy_total = Counter(
            "carbon_node_measurement_energy_kwh",
            "kWh of all measurement windows (whole windows, not per inference)",
            registry=self.registry,
        )
        self.energy_last = Gauge(
            "carbon_node_last_measurement_energy_kwh", "kWh of the latest measurement window", registry=self.registry
        )
        restarts = Gauge("carbon_node_worker_restarts_total", "Measurement worker replacements", registry=self.registry)
        restarts.set_function(lambda: float(worker_restarts()))
        pending_gauge = Gauge("carbon_node_pending_tasks", "Incomplete tasks waiting for their inputs", registry=self.registry)
        pending_gauge.set_function(lambda: float(pending()))
        in_flight_gauge = Gauge(
            "carbon_node_in_flight_tasks", "Accepted tasks not answered yet (queued or running)", registry=self.registry
        )
        in_flight_gauge.set_function(lambda: float(in_flight()))
        active_gauge = Gauge(
            "carbon_node_active", "1 while this node answers tasks, 0 while it stands by for another node", registry=self.registry
        )
        active_gauge.set_function(lambda: float(active()))
        held_gauge = Gauge("carbon_node_standby_held_tasks", "Tasks a standby holds for a takeover", registry=self.registry)
        held_gauge.set_function(lambda: float(held()))
        for key, (name, text) in POOL_STATS.items():
            Gauge(name, text, registry=self.registry).set_function(_reader(pool, key))
        self._server: Any = None
        self._by_mode: dict[str, Any] = {}
        """``tasks`` children per mode: ``labels()`` costs a lookup through its arguments every call."""

    def observe(self, output: TaskOutput) -> None:
        """Count one published output. Never raises: metrics must not fail a task."""
        try:
            mode = output.mode or "unknown"
            counter = self._by_mode.get(mode)
            if counter is None:
                counter = self._by_mode[mode] = self.tasks.labels(mode=mode)
            counter.inc()
            self.duration.observe(task_seconds(output))
        except Exception as exc:  # a metrics bug is logged, the task is not affected
            log.warning("metrics.observe_failed", error=str(exc))

    def observe_measurement(self, measurement: Measurement) -> None:
        """Add one measurement window's energy (kWh); answers from the measurement cache ran no window."""
        if measurement.cached or measurement.energy_kwh < 0:
            return
        self.energy_total.inc(measurement.energy_kwh)
        self.energy_last.set(measurement.energy_kwh)

    def serve(self, port: int, host: str = "127.0.0.1") -> int:
        """Serve ``/metrics`` on ``host:port`` in a daemon thread; returns the bound port (for port 0)."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        self._server = server
        bound = int(server.server_address[1])
        log.info("metrics.serving", host=host, port=bound)
        return bound

    def close(self) -> None:
        """Stop the HTTP server, if one was started."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
