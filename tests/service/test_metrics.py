"""Prometheus metrics, scraped over loopback from the node's own HTTP endpoint."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator

import pytest

from carbon_node.core import TaskId, TaskOutput
from carbon_node.measure.protocol import Measurement
from carbon_node.service.metrics import NodeMetrics


def output(mode: str, total_s: float) -> TaskOutput:
    return TaskOutput(TaskId(1, 1), 0.1, 0.2, 300.0, {"mode": mode}, timings={"measure_s": total_s / 2, "total_s": total_s})


def measurement(energy_kwh: float, *, cached: bool = False) -> Measurement:
    return Measurement(
        model="tiny", model_class="BertModel", device="cpu", dtype="float32", energy_kwh=energy_kwh, window_s=1.0,
        forward_passes=10, power_source="simulated", components=("cpu",), pue=1.0, carbontracker_version="2.4.7",
        measured_at="2026-01-01T00:00:00Z", cached=cached,
    )  # fmt: skip


@pytest.fixture
def served() -> Iterator[tuple[NodeMetrics, int]]:
    state = {"pending": 3, "in_flight": 1, "restarts": 2}
    metrics = NodeMetrics(
        pending=lambda: state["pending"], in_flight=lambda: state["in_flight"], worker_restarts=lambda: state["restarts"]
    )
    port = metrics.serve(0, "127.0.0.1")
    yield metrics, port
    metrics.close()


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def test_tasks_are_counted_by_mode(served: tuple[NodeMetrics, int]) -> None:
    metrics, port = served
    metrics.observe(output("tracker", 1.5))
    metrics.observe(output("tracker", 2.0))
    metrics.observe(output("no_model", 0.001))
    samples = scrape(port)
    assert samples['carbon_node_tasks_total{mode="tracker"}'] == 2
    assert samples['carbon_node_tasks_total{mode="no_model"}'] == 1


def test_task_durations_fill_the_histogram(served: tuple[NodeMetrics, int]) -> None:
    metrics, port = served
    metrics.observe(output("tracker", 1.5))
    metrics.observe(output("error", 0.01))
    samples = scrape(port)
    assert samples["carbon_node_task_duration_seconds_count"] == 2
    assert samples["carbon_node_task_duration_seconds_sum"] == pytest.approx(1.51)
    assert samples['carbon_node_task_duration_seconds_bucket{le="0.05"}'] == 1


def test_measurement_window_energy_is_summed_and_cached_answers_are_not(served: tuple[NodeMetrics, int]) -> None:
    metrics, port = served
    metrics.observe_measurement(measurement(2e-6))
    metrics.observe_measurement(measurement(3e-6))
    metrics.observe_measurement(measurement(9.0, cached=True))
    samples = scrape(port)
    assert samples["carbon_node_measurement_energy_kwh_total"] == pytest.approx(5e-6)
    assert samples["carbon_node_last_measurement_energy_kwh"] == pytest.approx(3e-6)


def test_pending_in_flight_and_worker_restarts_are_read_at_scrape_time(served: tuple[NodeMetrics, int]) -> None:
    _, port = served
    samples = scrape(port)
    assert samples["carbon_node_pending_tasks"] == 3
    assert samples["carbon_node_in_flight_tasks"] == 1
    assert samples["carbon_node_worker_restarts_total"] == 2


def test_the_endpoint_binds_loopback_only(served: tuple[NodeMetrics, int]) -> None:
    metrics, _ = served
    assert metrics._server.server_address[0] == "127.0.0.1"


def test_the_pools_numbers_are_read_at_scrape_time_and_absent_ones_read_zero() -> None:
    pool = {"pool_hosts": 2.0, "pool_remote_measurements": 7.0, "pool_fallbacks": 1.0}
    metrics = NodeMetrics(pool=lambda: pool)
    port = metrics.serve(0, "127.0.0.1")
    try:
        samples = scrape(port)
        assert samples["carbon_node_pool_hosts"] == 2
        assert samples["carbon_node_pool_remote_measurements_total"] == 7
        assert samples["carbon_node_pool_fallbacks_total"] == 1
        assert samples["carbon_node_pool_errors_total"] == 0 and samples["carbon_node_pool_late_replies_total"] == 0
        pool["pool_hosts"] = 0.0  # a host went away
        assert scrape(port)["carbon_node_pool_hosts"] == 0
    finally:
        metrics.close()
