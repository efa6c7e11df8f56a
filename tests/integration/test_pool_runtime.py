"""The node runtime with the measurement pool, driven by a real orchestrator on loopback: tasks for a
host's hardware measured there, the others locally, hosts measuring at the same time, each in order."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from carbon_node.bus.orchestrator import Orchestrator
from carbon_node.bus.pool_client import PoolClient
from carbon_node.bus.pool_measurer import PoolMeasurer
from carbon_node.bus.runtime import NodeRuntime
from carbon_node.core import TaskId
from carbon_node.engine import Engine
from carbon_node.engine.config import EngineConfig
from carbon_node.testing import make_measurement
from carbon_node.wire import HWResourceImpl, MLModelImpl, UserInputImpl
from tests.bus.pool_helpers import WAIT_S, SlowMeasurer, start_host, until

WINDOW_S = 0.6


@pytest.fixture
def orchestrator(dds_domain: int) -> Iterator[Orchestrator]:
    with Orchestrator(dds_domain) as orch:
        yield orch


def test_hosts_measure_at_the_same_time_each_in_order_and_every_task_is_answered_once(
    dds_domain: int, orchestrator: Orchestrator
) -> None:
    h100 = SlowMeasurer(WINDOW_S, make_measurement(energy_kwh=7e-4))
    orin = SlowMeasurer(WINDOW_S, make_measurement(energy_kwh=2e-5))
    local = SlowMeasurer(WINDOW_S, make_measurement(energy_kwh=5e-5))
    hosts = [start_host(dds_domain, "NVIDIA H100", measurer=h100), start_host(dds_domain, "Jetson AGX Orin", measurer=orin)]
    client = PoolClient(dds_domain)
    pool = PoolMeasurer(local, hardware=["AMD EPYC"])
    pool.connect(client)
    runtime = NodeRuntime(Engine(EngineConfig(window_s=WINDOW_S), pool), domain_id=dds_domain)
    try:
        until(lambda: len(client.hosts()) == 2)
        runtime.start(WAIT_S)
        hardware = ["NVIDIA H100 80GB HBM3", "Jetson AGX Orin", "", "nvidia h100", "jetson agx orin", "TPU"]
        started = time.monotonic()
        for n, hw in enumerate(hardware, start=1):
            orchestrator.publish_task(
                TaskId(n, 1),
                MLModelImpl(model=f"/srv/models/m{n}"),
                HWResourceImpl(hw_description=hw, latency=1e-6),
                UserInputImpl(),
            )
        outputs = orchestrator.wait_outputs(len(hardware), WAIT_S)
        elapsed_s = time.monotonic() - started
        assert len(outputs) == len(hardware)
        by_task: dict[int, dict[str, Any]] = {o.task_id.problem_id: json.loads(bytes(o.extra_data)) for o in outputs}
        where = {n: by_task[n]["measured_on"]["host"] for n in by_task}
        assert where == {
            1: hosts[0].host_id,
            2: hosts[1].host_id,
            3: "local",
            4: hosts[0].host_id,
            5: hosts[1].host_id,
            6: "local",
        }
        assert [by_task[n]["carbontracker_energy_kwh"] for n in (1, 2, 3)] == [None, None, None]
        energy = {n: o.energy_consumption for n, o in ((o.task_id.problem_id, o) for o in outputs)}
        assert energy[1] > energy[3] > energy[2]  # 700 W > 50 W > 15 W in the fakes' figures
        # Three queues of two windows side by side: about 2 windows, not 6.
        assert elapsed_s < 4 * WINDOW_S, elapsed_s
        assert [s.model for s in h100.calls] == ["/srv/models/m1", "/srv/models/m4"]
        assert [s.model for s in orin.calls] == ["/srv/models/m2", "/srv/models/m5"]
        assert [s.model for s in local.calls] == ["/srv/models/m3", "/srv/models/m6"]
        time.sleep(0.3)
        assert orchestrator.output_count() == len(hardware)  # no second output for any task
    finally:
        runtime.stop(WAIT_S)
        client.close()
        for host in hosts:
            host.stop(WAIT_S)
