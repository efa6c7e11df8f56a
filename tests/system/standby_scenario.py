"""Two carbon nodes in two network namespaces: the active one is killed while tasks arrive (root, run inside NS_B).

    python -m tests.system.standby_scenario NS_A WORKDIR DOMAIN MODEL

Node A runs in ``NS_A`` (``ip netns exec``), node B and this orchestrator in the namespace this runs in.
Every output sample is counted by a KEEP_ALL reader, with its arrival time, so that a second output for
a task id cannot hide behind the orchestrator's KEEP_LAST(1) history. Phases:

1. A starts, then B; 50 tasks (NO_MODEL and ONNX, answered at once) -> exactly 50 output samples;
2. 40 tasks, one every 50 ms, a measured task (tiny model, 0.3 s window) every fifth; A is SIGKILLed
   after the 15th: every task is answered; B's ``standby.took_over`` time is read from its log;
3. A is started again: it comes back as the standby; 5 more tasks -> 5 outputs, all from B.

Writes ``WORKDIR/result.json``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from cyclonedds.core import Policy, Qos
from cyclonedds.sub import DataReader
from cyclonedds.topic import Topic
from cyclonedds.util import duration

from carbon_node.bus.orchestrator import Orchestrator
from carbon_node.bus.qos import OUTPUT_TOPIC
from carbon_node.core import TaskId
from carbon_node.wire import CO2FootprintImpl, HWResourceImpl, MLModelImpl, Status, UserInputImpl

WAIT_S = 90.0


class OutputCounter:
    """Every output sample of the domain, with its arrival time (KEEP_ALL, taken on a thread)."""

    def __init__(self, orchestrator: Orchestrator) -> None:
        participant = orchestrator._participant
        qos = Qos(
            Policy.Reliability.Reliable(max_blocking_time=duration(milliseconds=100)),
            Policy.Durability.TransientLocal,
            Policy.History.KeepAll,
            Policy.DataRepresentation(use_cdrv0_representation=True),
        )
        self.reader: DataReader[CO2FootprintImpl] = DataReader(
            participant, Topic(participant, OUTPUT_TOPIC, CO2FootprintImpl), qos=qos
        )
        self.samples: list[tuple[str, float]] = []
        self._lock = threading.Lock()
        self._running = True
        self._thread = threading.Thread(target=self._take, daemon=True)
        self._thread.start()

    def _take(self) -> None:
        while self._running:
            for sample in self.reader.take(N=256):
                if sample.sample_info.valid_data:
                    with self._lock:
                        self.samples.append((f"{sample.task_id.problem_id}.{sample.task_id.iteration_id}", time.time()))
            time.sleep(0.01)

    def count(self, prefix: str) -> dict[str, int]:
        with self._lock:
            counts: dict[str, int] = {}
            for task, _ in self.samples:
                if task.startswith(prefix):
                    counts[task] = counts.get(task, 0) + 1
            return counts

    def arrivals(self, task: str) -> list[float]:
        with self._lock:
            return [at for name, at in self.samples if name == task]

    def wait(self, prefix: str, tasks: int, timeout_s: float = WAIT_S) -> dict[str, int]:
        deadline = time.monotonic() + timeout_s
        while len(self.count(prefix)) < tasks and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)  # a second output would arrive within this
        return self.count(prefix)


def node(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[str]:
    command = [*args, sys.executable, "-m", "carbon_node", "run", "--log-format", "json", "--bus", "cyclone"]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=log.open("a"), text=True)


def events(log: Path) -> list[dict[str, Any]]:
    found = []
    for line in log.read_text().splitlines():
        if line.startswith("{"):
            try:
                found.append(json.loads(line))
            except ValueError:
                continue
    return found


def wait_event(log: Path, name: str, after: int = 0, timeout_s: float = WAIT_S) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = [e for e in events(log)[after:] if e.get("event") == name]
        if found:
            return found[0]
        time.sleep(0.05)
    raise AssertionError(f"{name} not in {log.name}: {[e.get('event') for e in events(log)]}")


def send(orchestrator: Orchestrator, problem: int, iteration: int, model: str, onnx: str) -> None:
    ml = MLModelImpl(model="unet", model_path=onnx) if model == "onnx" else MLModelImpl(model=model)
    orchestrator.publish_task(
        TaskId(problem, iteration), ml, HWResourceImpl(latency=0.001, power_consumption=5.0), UserInputImpl()
    )


def main(argv: list[str]) -> int:
    ns_a, workdir_arg, domain_arg, model = argv
    workdir, domain = Path(workdir_arg), int(domain_arg)
    onnx = str(workdir / "m.onnx")
    Path(onnx).write_bytes(b"onnx")
    base = {k: v for k, v in os.environ.items() if not k.startswith(("CARBON_NODE_", "SUSTAINML_", "CYCLONEDDS_"))}
    base.update({"SUSTAINML_DOMAIN_ID": str(domain), "CARBON_NODE_SIM_CPU_TDP_W": "40", "CT_TARGET_SECONDS": "0.3"})
    base.update({"HF_HUB_OFFLINE": "1", "SUSTAINML_GRID_CI": "100"})
    env_a = {**base, "CARBON_NODE_STATE_DIR": str(workdir / "a" / "state"), "CARBON_NODE_CACHE_DIR": str(workdir / "a" / "cache")}
    env_b = {**base, "CARBON_NODE_STATE_DIR": str(workdir / "b" / "state"), "CARBON_NODE_CACHE_DIR": str(workdir / "b" / "cache")}
    (workdir / "a").mkdir()
    (workdir / "b").mkdir()
    log_a, log_b = workdir / "node-a.log", workdir / "node-b.log"
    result: dict[str, Any] = {}
    processes: list[subprocess.Popen[str]] = []
    with Orchestrator(domain) as orchestrator:
        counter = OutputCounter(orchestrator)
        try:
            a = node(["ip", "netns", "exec", ns_a], env_a, log_a)
            processes.append(a)
            orchestrator.wait_status(Status.NODE_IDLE, WAIT_S)
            b = node([], env_b, log_b)
            processes.append(b)
            result["b_start"] = wait_event(log_b, "node.idle")

            # 1. Both nodes up: one answer per task.
            for i in range(1, 51):
                send(orchestrator, 1, i, "NO_MODEL" if i % 2 else "onnx", onnx)
            result["phase1"] = counter.wait("1.", 50)

            # 2. The active node is killed while tasks arrive.
            kill_at = 0.0
            for i in range(1, 41):
                send(orchestrator, 2, i, model if i % 5 == 0 else "onnx", onnx)
                if i == 15:
                    a.send_signal(signal.SIGKILL)
                    kill_at = time.time()
                    a.wait(30)
                time.sleep(0.05)
            result["phase2"] = counter.wait("2.", 40)
            result["kill_at"] = kill_at
            took_over = wait_event(log_b, "standby.took_over")
            result["took_over"] = took_over
            result["duplicates"] = {task: counter.arrivals(task) for task, count in result["phase2"].items() if count > 1}

            # 3. The killed node comes back: as the standby.
            a = node(["ip", "netns", "exec", ns_a], env_a, log_a)
            processes.append(a)
            result["a_again"] = wait_event(log_a, "node.idle", after=len(events(log_a)))
            for i in range(1, 6):
                send(orchestrator, 3, i, "onnx", onnx)
            result["phase3"] = counter.wait("3.", 5)
            result["answered_a"] = [e["task_id"] for e in events(log_a) if e.get("event") == "task_answered"]
            result["answered_b"] = [e["task_id"] for e in events(log_b) if e.get("event") == "task_answered"]
        finally:
            counter._running = False
            for process in processes:
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
                    try:
                        process.wait(30)
                    except subprocess.TimeoutExpired:
                        process.kill()
    result["log_a"] = log_a.read_text()[-8000:]
    result["log_b"] = log_b.read_text()[-8000:]
    (workdir / "result.json").write_text(json.dumps(result), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
