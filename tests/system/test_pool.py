"""The measurement pool across real links: a node and two measure hosts in three network namespaces joined
by veth pairs on a bridge (multicast on), each with its own simulated power (the node 50 W, a host named
"NVIDIA H100" 700 W, a host named "Jetson AGX Orin" 15 W), so that every answer's power says where it was
measured. The orchestrator (tests/system/pool_driver.py) runs in the node's namespace.

1. 50 mixed tasks (10 model directories x 5 hw_descriptions: two name the H100, one the Orin, one
   nobody's hardware, one is empty) are all answered exactly once, each measured where its hardware is
   (its power shows it) or locally; two model directories are hidden from the Orin host (a tmpfs over
   them in its mount namespace: "a path absent there"), and its tasks for them are measured locally, saying why.
2. The H100 host is SIGKILLed in the middle of a window: that task is answered once, locally, within the
   task timeout, saying that the host's liveliness was lost.
3. The H100 host started again (a new process, a new id) measures the next H100 task.

Addresses come from 198.18.0.0/15 (RFC 2544) inside the namespaces only; nothing is configured on the
host's own interfaces, and everything (namespaces, bridge, processes) is removed at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.system.conftest import REPO, require_root_and
from tests.system.test_network import ip

pytestmark = [pytest.mark.system, pytest.mark.timeout(300)]

TASK_TIMEOUT_S = 120.0
"""The node's and the hosts' task_timeout_s: generous, since three workers warm up at once on a machine
that may be loaded (the kill is answered in seconds; the test prints how many)."""
WINDOW_S = 1.0
PUE = 1.58  # carbontracker 2.4's PUE, applied to simulated power as well
WATTS = {"node": 50.0, "h100": 700.0, "orin": 15.0}
HARDWARE = {"h100": "NVIDIA H100", "orin": "Jetson AGX Orin"}
ADDRESSES = {"node": "198.18.1.1", "h100": "198.18.1.2", "orin": "198.18.1.3"}
MIXED_HW = ["NVIDIA H100 80GB HBM3", "Jetson AGX Orin", "AMD Instinct MI300X", "", "nvidia h100"]
"""hw_descriptions of the mixed tasks: H100 (by words), Orin (exact), nobody's, none, H100 (exact, any case)."""
EXPECTED_PLACE = ["h100", "orin", "node", "node", "h100"]
STOP_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Net:
    switch: str
    ns: dict[str, str]


@pytest.fixture
def net() -> Iterator[Net]:
    """Three namespaces (node, h100, orin), each with one veth to a bridge in a fourth (the switch)."""
    require_root_and("ip")
    tag = f"{os.getpid() % 100000}"
    net = Net(f"cn-sw-{tag}", {role: f"cn-{role}-{tag}" for role in ADDRESSES})
    made: list[str] = []
    try:
        for name in (net.switch, *net.ns.values()):
            ip("netns", "add", name)
            made.append(name)
        ip("-n", net.switch, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
        ip("-n", net.switch, "link", "set", "br0", "up")
        for i, (role, ns) in enumerate(net.ns.items()):
            inside, outside = f"cnv{i}{tag}"[:15], f"cnb{i}{tag}"[:15]
            ip("link", "add", inside, "netns", ns, "type", "veth", "peer", "name", outside, "netns", net.switch)
            ip("-n", net.switch, "link", "set", outside, "master", "br0", "up")
            ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", ns, "addr", "add", f"{ADDRESSES[role]}/24", "dev", inside)
            ip("-n", ns, "link", "set", inside, "up", "multicast", "on")
            ip("-n", ns, "route", "add", "224.0.0.0/4", "dev", inside)
        yield net
    finally:
        for name in reversed(made):
            subprocess.run(["ip", "netns", "delete", name], capture_output=True, timeout=30)


def environment(tmp_path: Path, role: str, domain: int) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("CARBON_NODE_", "SUSTAINML_", "CYCLONEDDS_"))}
    environ.update(
        {
            "SUSTAINML_DOMAIN_ID": str(domain),
            "CARBON_NODE_STATE_DIR": str(tmp_path / f"state-{role}-{time.monotonic_ns()}"),
            "CARBON_NODE_CACHE_DIR": str(tmp_path / f"cache-{role}"),
            "CARBON_NODE_SIM_CPU_TDP_W": str(WATTS[role]),
            "CARBON_NODE_SIM_CPU_UTIL": "1",
            "CARBON_NODE_TASK_TIMEOUT_S": str(TASK_TIMEOUT_S),
            "CARBON_NODE_LOG_FORMAT": "json",
            "OMP_NUM_THREADS": "1",
            "HF_HUB_OFFLINE": "1",
            "PYTHONPATH": str(REPO),
        }
    )
    return environ


class Processes:
    """The node, the hosts and the driver, each stopped (SIGTERM, then SIGKILL by pid) at the end."""

    def __init__(self, tmp_path: Path, net: Net, domain: int, hidden: Path) -> None:
        self.tmp_path, self.net, self.domain, self.hidden = tmp_path, net, domain, hidden
        self.started: list[subprocess.Popen[str]] = []

    def _spawn(self, role: str, command: list[str], **options: Any) -> subprocess.Popen[str]:
        log = (self.tmp_path / f"{role}-{len(self.started)}.log").open("w")
        process = subprocess.Popen(
            ["ip", "netns", "exec", self.net.ns[role], *command],
            env=environment(self.tmp_path, role, self.domain),
            stderr=log,
            text=True,
            **options,
        )
        self.started.append(process)
        return process

    def node(self) -> subprocess.Popen[str]:
        command = [sys.executable, "-m", "carbon_node", "run", "--bus", "cyclone", "--window-s", str(WINDOW_S)]
        return self._spawn("node", command, stdout=subprocess.DEVNULL)

    def host(self, role: str) -> subprocess.Popen[str]:
        serve = [sys.executable, "-m", "carbon_node", "serve-measurements", "--hardware-name", HARDWARE[role]]
        if role == "orin":  # its mount namespace (ip netns exec makes one) hides two model directories
            script = f"mount -t tmpfs none {self.hidden} && exec {' '.join(serve[:-1])} '{HARDWARE[role]}'"
            serve = ["sh", "-c", script]
        return self._spawn(role, serve, stdout=subprocess.DEVNULL)

    def driver(self) -> Driver:
        process = self._spawn(
            "node",
            [sys.executable, str(REPO / "tests" / "system" / "pool_driver.py"), str(self.domain)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        return Driver(process)

    def stop_all(self) -> None:
        for process in reversed(self.started):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in reversed(self.started):
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(STOP_TIMEOUT_S)


class Driver:
    """Talks to tests/system/pool_driver.py: commands out, events in (a reader thread, bounded waits)."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.outputs: dict[int, dict[str, Any]] = {}
        self.published: dict[int, float] = {}
        threading.Thread(target=self._read, daemon=True).start()
        self.expect("ready", 60.0)

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with contextlib.suppress(ValueError):
                self.events.put(json.loads(line))

    def send(self, **command: Any) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()

    def expect(self, kind: str, timeout_s: float) -> dict[str, Any]:
        """The next event of ``kind``, noting the outputs and publications that come meanwhile."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                event = self.events.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {kind!r} event within {timeout_s:g} s") from None
            if event["event"] == "output":
                self.outputs[event["id"]] = event
            elif event["event"] == "published":
                self.published[event["id"]] = event["t"]
            if event["event"] == kind:
                return event

    def publish(self, task: int, model: Path, hw: str) -> None:
        self.send(cmd="publish", id=task, model=str(model), hw=hw)
        self.expect("published", 10.0)

    def hosts(self) -> list[dict[str, Any]]:
        self.send(cmd="hosts")
        return list(self.expect("hosts", 10.0)["hosts"])

    def wait_hosts(self, check: Any, timeout_s: float) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while True:
            hosts = self.hosts()
            if check(hosts):
                return hosts
            assert time.monotonic() < deadline, f"hosts never as expected: {hosts}"
            time.sleep(0.2)

    def wait_outputs(self, tasks: set[int], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not tasks <= self.outputs.keys():
            try:
                self.expect("output", max(0.01, deadline - time.monotonic()))
            except AssertionError:
                raise AssertionError(f"unanswered: {sorted(tasks - self.outputs.keys())}") from None

    def samples(self) -> int:
        self.send(cmd="count")
        return int(self.expect("count", 10.0)["samples"])


def power_w(extra: dict[str, Any]) -> float:
    """The simulated power a tracker answer was measured with: window energy / window / PUE."""
    return float(extra["carbontracker_energy_kwh"]) * 3.6e6 / float(extra["window_s"]) / PUE


def where(extra: dict[str, Any], host_ids: dict[str, str]) -> str:
    host = extra["measured_on"]["host"]
    return "node" if host == "local" else next(role for role, hid in host_ids.items() if hid == host)


@pytest.fixture
def models(tmp_path: Path) -> tuple[list[Path], Path]:
    """10 model directories (copies of one tiny BERT: each its own measurement); the last two under a
    directory the Orin host cannot see."""
    from carbon_node.measure.tiny import build_tiny_text_model

    built = build_tiny_text_model(tmp_path / "built" / "tiny-bert")
    hidden = tmp_path / "models" / "node-only"
    dirs = [tmp_path / "models" / "shared" / f"m{i}" for i in range(8)] + [hidden / f"m{i}" for i in (8, 9)]
    for directory in dirs:
        shutil.copytree(built, directory)
    return dirs, hidden


def test_a_node_and_two_measure_hosts_across_namespaces(net: Net, tmp_path: Path, dds_domain: int, models: Any) -> None:
    model_dirs, hidden = models
    processes = Processes(tmp_path, net, dds_domain, hidden)
    started = time.monotonic()
    try:
        hosts = {role: processes.host(role) for role in ("h100", "orin")}
        processes.node()
        driver = processes.driver()
        found = driver.wait_hosts(lambda hs: len(hs) == 2, 60.0)
        host_ids = {role: next(h["host_id"] for h in found if h["hardware"][0] == HARDWARE[role]) for role in HARDWARE}
        assert {role: host_ids[role].split(":")[1] for role in host_ids} == {role: str(p.pid) for role, p in hosts.items()}

        # Warm-up, not counted: each queue's worker imports torch and its first model class (seconds on a
        # loaded machine), which would otherwise count against the first tasks' timeout.
        warm = tmp_path / "models" / "shared" / "warm"
        shutil.copytree(model_dirs[0], warm)
        for task, hw in ((201, "NVIDIA H100"), (202, "Jetson AGX Orin"), (203, "")):
            driver.publish(task, warm, hw)
        driver.wait_outputs({201, 202, 203}, 120.0)
        print(f"warmed up {time.monotonic() - started:.1f} s after start")

        # 1. 50 mixed tasks.
        mixed_started = time.monotonic()
        tasks: dict[int, tuple[Path, str, str]] = {}
        for model in model_dirs:
            for hw, place in zip(MIXED_HW, EXPECTED_PLACE, strict=True):
                task = len(tasks) + 1
                tasks[task] = (model, hw, place)
                driver.publish(task, model, hw)
        driver.wait_outputs(set(tasks), 150.0)
        mixed_s = time.monotonic() - mixed_started
        places: dict[str, int] = {}
        for task, (model, hw, place) in tasks.items():
            extra = driver.outputs[task]["extra"]
            assert extra["mode"] == "tracker", extra
            expected = "node" if place == "orin" and model.parent == hidden else place
            assert where(extra, host_ids) == expected, (task, hw, extra["measured_on"])
            assert abs(power_w(extra) - WATTS[expected]) / WATTS[expected] < 0.1, (task, expected, power_w(extra))
            assert extra["measured_on"]["matched"] == (expected != "node"), extra["measured_on"]
            if expected != place:
                reason = extra["measured_on"]["reason"]
                assert reason.startswith(f"measure host {host_ids['orin']} could not measure it: ") and "does not exist" in reason
            places[expected] = places.get(expected, 0) + 1
        assert places == {"h100": 20, "orin": 8, "node": 22}
        print(f"50 mixed tasks answered in {mixed_s:.1f} s: {places}")

        # 2. SIGKILL of the H100 host in the middle of a window.
        victim = tmp_path / "models" / "shared" / "victim"
        shutil.copytree(model_dirs[0], victim)
        driver.publish(101, victim, "NVIDIA H100")
        driver.wait_hosts(lambda hs: any(h["host_id"] == host_ids["h100"] and h["state"] == "busy" for h in hs), 20.0)
        time.sleep(0.4)  # the tiny model loads in ~0.1 s: its 1 s window is running
        hosts["h100"].kill()
        killed_s = time.monotonic()
        driver.wait_outputs({101}, TASK_TIMEOUT_S)
        answered = driver.outputs[101]
        extra = answered["extra"]
        answer_s = answered["t"] - driver.published[101]
        after_kill_s = answered["t"] - killed_s
        print(
            f"host SIGKILLed mid-window: answered locally {after_kill_s:.2f} s after the kill, {answer_s:.2f} s after publication"
        )
        assert answer_s < TASK_TIMEOUT_S
        assert extra["measured_on"]["host"] == "local"
        assert extra["measured_on"]["reason"].startswith(
            f"measure host {host_ids['h100']} went away during the measurement (liveliness lost"
        )
        assert abs(power_w(extra) - WATTS["node"]) / WATTS["node"] < 0.1

        # 3. The H100 host restarted is used again.
        hosts["h100"] = processes.host("h100")
        found = driver.wait_hosts(lambda hs: any(h["hardware"][0] == HARDWARE["h100"] for h in hs), 60.0)
        again = next(h["host_id"] for h in found if h["hardware"][0] == HARDWARE["h100"])
        assert again != host_ids["h100"] and again.split(":")[1] == str(hosts["h100"].pid)
        comeback = tmp_path / "models" / "shared" / "comeback"
        shutil.copytree(model_dirs[0], comeback)
        driver.publish(102, comeback, "NVIDIA H100")
        driver.wait_outputs({102}, 90.0)
        extra = driver.outputs[102]["extra"]
        assert extra["measured_on"]["host"] == again
        assert abs(power_w(extra) - WATTS["h100"]) / WATTS["h100"] < 0.1

        time.sleep(1.0)  # let any second output arrive: there must be none
        assert driver.samples() == len(tasks) + 2 + 3  # the 50, the victim, the comeback, the 3 warm-ups: once each
        driver.send(cmd="quit")
        print(f"whole scenario: {time.monotonic() - started:.1f} s")
    finally:
        processes.stop_all()
