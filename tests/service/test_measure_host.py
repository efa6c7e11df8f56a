"""``carbon-node serve-measurements`` and ``carbon-node hosts`` as real processes on a loopback domain, and a
real node that measures a task on the host whose hardware its hw_description names (both with their real
measurement workers and simulated power, so that the figures tell the hosts apart)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from carbon_node.bus.orchestrator import Orchestrator
from carbon_node.core import TaskId, decode_extra_data
from carbon_node.measure.hardware import cpu_model
from carbon_node.wire import HWResourceImpl, MLModelImpl, Status, UserInputImpl
from tests.service.test_daemon import EXIT_TIMEOUT_S, IDLE_TIMEOUT_S, start_node

ANSWER_TIMEOUT_S = 90.0
PUE = 1.58  # carbontracker 2.4's PUE, applied to simulated power too


def start_host(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CARBON_NODE_")}
    environ.update({"CARBON_NODE_STATE_DIR": str(tmp_path / "host-state"), "CARBON_NODE_CACHE_DIR": str(tmp_path / "cache")})
    return subprocess.Popen(
        [sys.executable, "-m", "carbon_node", "serve-measurements", "--log-format", "json", *args],
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "host.log").open("w"),
        text=True,
    )


def hosts(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "carbon_node", "hosts", *args], capture_output=True, text=True, timeout=60)


def wait_hosts(count: int, timeout_s: float = 30.0) -> list[dict[str, object]]:
    deadline = time.monotonic() + timeout_s
    while True:
        listed = json.loads(hosts("--json", "--wait-s", "1.5").stdout)["hosts"]
        if len(listed) == count or time.monotonic() > deadline:
            return listed  # type: ignore[no-any-return]


def test_hosts_says_so_and_exits_1_when_no_measure_host_is_live(dds_domain: int) -> None:
    done = hosts("--wait-s", "0.5")
    assert done.returncode == 1
    assert done.stdout.strip() == f"no live measure host on DDS domain {dds_domain}"


def test_a_measure_host_announces_its_hardware_and_power_and_leaves_at_once_on_sigterm(
    tmp_path: Path, dds_domain: int, node_cleanup: list
) -> None:
    host = start_host(tmp_path, "--hardware-name", "NVIDIA H100", "--hardware-name", "lab box", "--sim-cpu-tdp-w", "700")
    node_cleanup.append(host)
    listed = wait_hosts(1)
    assert len(listed) == 1, (tmp_path / "host.log").read_text()[-3000:]
    found = listed[0]
    assert found["hardware"][:2] == ["NVIDIA H100", "lab box"]  # type: ignore[index]
    assert cpu_model() is None or cpu_model() in found["hardware"]  # type: ignore[operator]
    assert found["power_sources"] == ["simulated"] and found["state"] in ("idle", "busy")
    assert str(found["host_id"]).split(":")[1] == str(host.pid)
    table = hosts("--wait-s", "1.5")
    assert table.returncode == 0
    assert table.stdout.splitlines()[0].split()[:3] == ["HOST_ID", "HOST_NAME", "STATE"]
    assert "NVIDIA H100; lab box" in table.stdout and f"1 live measure host(s) on DDS domain {dds_domain}" in table.stdout
    host.send_signal(signal.SIGTERM)
    assert host.wait(EXIT_TIMEOUT_S) == 0
    assert wait_hosts(0, timeout_s=5.0) == []


def test_a_node_measures_on_the_host_its_task_names_and_describes_the_pool(
    tmp_path: Path, dds_domain: int, node_cleanup: list, tiny_model: Path
) -> None:
    host = start_host(tmp_path, "--hardware-name", "NVIDIA H100", "--sim-cpu-tdp-w", "700", "--sim-cpu-util", "1")
    node_cleanup.append(host)
    with Orchestrator(dds_domain) as orchestrator:
        node = start_node(tmp_path, "--sim-cpu-tdp-w", "50", "--sim-cpu-util", "1")
        node_cleanup.append(node)
        orchestrator.wait_status(Status.NODE_IDLE, IDLE_TIMEOUT_S)
        assert len(wait_hosts(1)) == 1
        for n, hw in ((1, "NVIDIA H100 80GB HBM3"), (2, "Jetson AGX Orin")):
            orchestrator.publish_task(
                TaskId(n, 1),
                MLModelImpl(model=str(tiny_model)),
                HWResourceImpl(hw_description=hw, latency=1e-5),
                UserInputImpl(),
            )
        outputs = {
            o.task_id.problem_id: decode_extra_data(o.extra_data)[0] for o in orchestrator.wait_outputs(2, ANSWER_TIMEOUT_S)
        }
        response = orchestrator.request_configuration('{"command": "describe"}', transaction_id=3, timeout_s=10.0)
        node.send_signal(signal.SIGTERM)
        assert node.wait(EXIT_TIMEOUT_S) == 0
    host.send_signal(signal.SIGTERM)
    assert host.wait(EXIT_TIMEOUT_S) == 0
    on_host, local = outputs[1], outputs[2]
    assert on_host["measured_on"]["host"].split(":")[1] == str(host.pid) and on_host["measured_on"]["matched"]
    assert local["measured_on"]["host"] == "local" and not local["measured_on"]["matched"]
    for extra, watts in ((on_host, 700.0), (local, 50.0)):
        power_w = extra["carbontracker_energy_kwh"] * 3.6e6 / extra["window_s"] / PUE
        assert abs(power_w - watts) / watts < 0.1, (watts, power_w)
    pool = json.loads(response.configuration)["measure_pool"]
    assert pool["enabled"] and [h["hardware"][0] for h in pool["hosts"]] == ["NVIDIA H100"]
    assert pool["stats"]["pool_remote_measurements"] == 1
