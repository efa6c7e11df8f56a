"""``carbon-node run`` as a real process on a private DDS domain: start-up, signals, notify, metrics."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from carbon_node.bus.orchestrator import Orchestrator
from carbon_node.core import TaskId, decode_extra_data, version
from carbon_node.measure.worker import PROCESS_NAME
from carbon_node.wire import HWResourceImpl, MLModelImpl, Status, UserInputImpl

HEAVY = ("torch", "transformers", "carbontracker")
IDLE_TIMEOUT_S = 30.0
EXIT_TIMEOUT_S = 30.0


def start_node(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CARBON_NODE_")}
    environ.update({"CARBON_NODE_STATE_DIR": str(tmp_path / "state"), "CARBON_NODE_CACHE_DIR": str(tmp_path / "cache")})
    environ.update(env or {})
    return subprocess.Popen(
        [sys.executable, "-m", "carbon_node", "run", "--log-format", "json", "--bus", "cyclone", *args],
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "node.log").open("w"),
        text=True,
    )


def vm_rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    return int(next(line for line in status if line.startswith("VmRSS")).split()[1])


def children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def measurement_workers(node_pid: int) -> list[int]:
    """The node's measurement worker processes: named ``carbon-measure`` once running, or still in
    multiprocessing's spawn start-up (not multiprocessing's resource tracker, which ends on its own)."""
    found = []
    for pid in children(node_pid):
        with contextlib.suppress(FileNotFoundError):
            proc = Path(f"/proc/{pid}")
            if (proc / "comm").read_bytes().strip() == PROCESS_NAME or b"spawn_main" in (proc / "cmdline").read_bytes():
                found.append(pid)
    return found


def send_measurement_task(orchestrator: Orchestrator, task_id: TaskId, model: Path) -> None:
    orchestrator.publish_task(
        task_id, MLModelImpl(model=str(model)), HWResourceImpl(latency=1e-5, power_consumption=10.0), UserInputImpl()
    )


def test_sigterm_publishes_terminating_and_exits_0(tmp_path: Path, dds_domain: int, node_cleanup: list) -> None:
    with Orchestrator(dds_domain) as orchestrator:
        started = time.monotonic()
        node = start_node(tmp_path)
        node_cleanup.append(node)
        idle = orchestrator.wait_status(Status.NODE_IDLE, IDLE_TIMEOUT_S)
        idle_s = time.monotonic() - started
        rss_kib = vm_rss_kib(node.pid)
        print(f"process start to NODE_IDLE seen: {idle_s:.2f} s; idle daemon RSS {rss_kib / 1024:.0f} MiB")
        node.send_signal(signal.SIGTERM)
        assert node.wait(EXIT_TIMEOUT_S) == 0
        orchestrator.wait_status(Status.NODE_TERMINATING, 10.0, after=idle + 1)


def test_a_running_node_describes_its_version_and_effective_settings(tmp_path: Path, dds_domain: int, node_cleanup: list) -> None:
    with Orchestrator(dds_domain) as orchestrator:
        node = start_node(tmp_path, env={"CT_TARGET_SECONDS": "2.5"})
        node_cleanup.append(node)
        orchestrator.wait_status(Status.NODE_IDLE, IDLE_TIMEOUT_S)
        response = orchestrator.request_configuration('{"command": "describe"}', transaction_id=7, timeout_s=10.0)
        node.send_signal(signal.SIGTERM)
        assert node.wait(EXIT_TIMEOUT_S) == 0
    described = json.loads(response.configuration)
    assert response.success
    assert described["node"] == "CARBON_FOOTPRINT_NODE"
    assert described["version"] == version() != "0+unknown"
    assert described["settings"]["window_s"] == 2.5


def test_each_task_gets_one_json_log_line_with_its_id_mode_model_results_and_timings(
    tmp_path: Path, dds_domain: int, node_cleanup: list
) -> None:
    with Orchestrator(dds_domain) as orchestrator:
        node = start_node(tmp_path)
        node_cleanup.append(node)
        orchestrator.wait_status(Status.NODE_IDLE, IDLE_TIMEOUT_S)
        orchestrator.publish_task(TaskId(44, 2), MLModelImpl(model="NO_MODEL"), HWResourceImpl(), UserInputImpl())
        orchestrator.wait_output(TaskId(44, 2), 30.0)
        node.send_signal(signal.SIGTERM)
        assert node.wait(EXIT_TIMEOUT_S) == 0
    records = [json.loads(line) for line in (tmp_path / "node.log").read_text().splitlines() if line.startswith("{")]
    about_task = [r for r in records if r.get("task_id") == "44.2" and r["level"] == "info"]
    assert len(about_task) == 1, about_task
    (line,) = about_task
    assert (line["event"], line["mode"], line["model"]) == ("task_answered", "no_model", "NO_MODEL")
    assert {"carbon_g", "energy_kwh", "grid_ci_g_per_kwh", "queue_s", "total_s"} <= set(line)


def test_sigint_stops_the_node_gracefully_too(tmp_path: Path, dds_domain: int, node_cleanup: list) -> None:
    with Orchestrator(dds_domain) as orchestrator:
        node = start_node(tmp_path)
        node_cleanup.append(node)
        orchestrator.wait_status(Status.NODE_IDLE, IDLE_TIMEOUT_S)
        node.send_signal(signal.SIGINT)
        assert node.wait(EXIT_TIMEOUT_S) == 0
        orchestrator.wait_status(Status.NODE_TERMINATING, 10.0)


def test_systemd_hears_ready_after_idle_then_stopping(tmp_path: Path, dds_domain: int, node_cleanup: list) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener, Orchestrator(dds_domain) as orchestrator:
        listener.bind(str(tmp_path / "notify"))
        listener.settimeout(IDLE_TIMEOUT_S)
        node = start_node(tmp_path, env={"NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "1000000"})
        node_cleanup.append(node)
        ready = listener.recv(4096).decode()
        assert ready.startswith("READY=1\nSTATUS=idle")
        assert Status.NODE_IDLE in orchestrator.statuses() or orchestrator.wait_status(Status.NODE_IDLE, 5.0) >= 0
        assert listener.recv(4096) == b"WATCHDOG=1"
        node.send_signal(signal.SIGTERM)
        messages = []
        while not any(m.startswith("STOPPING=1") for m in messages):
            messages.append(listener.recv(4096).decode())
        assert node.wait(EXIT_TIMEOUT_S) == 0


def test_sigterm_during_a_measurement_answers_it_with_an_error_after_the_shutdown_timeout(
    tmp_path: Path, dds_domain: int, node_cleanup: list, tiny_model: Path
) -> None:
    with Orchestrator(dds_domain) as orchestrator:
        node = start_node(tmp_path, "--window-s", "120", "--task-timeout-s", "300", "--shutdown-timeout-s", "1")
        node_cleanup.append(node)
        idle = orchestrator.wait_status(Status.NODE_IDLE, IDLE_TIMEOUT_S)
        task = TaskId(41, 1)
        send_measurement_task(orchestrator, task, tiny_model)
        orchestrator.wait_status(Status.NODE_RUNNING, 60.0, after=idle + 1)
        node.send_signal(signal.SIGTERM)
        output = orchestrator.wait_output(task, EXIT_TIMEOUT_S)
        assert node.wait(EXIT_TIMEOUT_S) == 0
        extra, _ = decode_extra_data(output.extra_data)
        assert extra["mode"] == "error"
        assert "stopping" in extra["error"]
        orchestrator.wait_status(Status.NODE_TERMINATING, 10.0)


def test_a_second_signal_exits_at_once_while_shutdown_waits_for_a_measurement(
    tmp_path: Path, dds_domain: int, node_cleanup: list, tiny_model: Path
) -> None:
    with Orchestrator(dds_domain) as orchestrator:
        node = start_node(tmp_path, "--window-s", "120", "--task-timeout-s", "300", "--shutdown-timeout-s", "60")
        node_cleanup.append(node)
        idle = orchestrator.wait_status(Status.NODE_IDLE, IDLE_TIMEOUT_S)
        send_measurement_task(orchestrator, TaskId(42, 1), tiny_model)
        orchestrator.wait_status(Status.NODE_RUNNING, 60.0, after=idle + 1)
        workers = measurement_workers(node.pid)
        assert workers
        node.send_signal(signal.SIGTERM)
        with pytest.raises(subprocess.TimeoutExpired):
            node.wait(1.0)  # the graceful shutdown waits for the measurement (up to 60 s)
        node.send_signal(signal.SIGTERM)
        assert node.wait(5.0) == -signal.SIGTERM
    # The worker was in a 120 s window when its node died: it notices and ends within a second or so.
    deadline = time.monotonic() + 5.0
    while any(Path(f"/proc/{pid}").exists() and not is_zombie(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists() and not is_zombie(pid)]


def is_zombie(pid: int) -> bool:
    """Whether ``pid`` has exited and waits to be reaped (its state is Z)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def test_metrics_are_served_by_a_running_node(tmp_path: Path, dds_domain: int, node_cleanup: list) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with Orchestrator(dds_domain) as orchestrator:
        node = start_node(tmp_path, "--metrics-port", str(port))
        node_cleanup.append(node)
        orchestrator.wait_status(Status.NODE_IDLE, IDLE_TIMEOUT_S)
        orchestrator.publish_task(TaskId(43, 1), MLModelImpl(model="NO_MODEL"), HWResourceImpl(), UserInputImpl())
        orchestrator.wait_output(TaskId(43, 1), 30.0)
        # The output is published before the metrics hook runs: scrape until the task is counted.
        deadline = time.monotonic() + 10.0
        while True:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                text = response.read().decode()
            if 'mode="no_model"} 1.0' in text or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        node.send_signal(signal.SIGTERM)
        assert node.wait(EXIT_TIMEOUT_S) == 0
    assert 'carbon_node_tasks_total{mode="no_model"} 1.0' in text
    assert "carbon_node_pending_tasks 0.0" in text
    assert "carbon_node_worker_restarts_total 0.0" in text


def test_the_dds_process_never_imports_torch_transformers_or_carbontracker(tmp_path: Path, dds_domain: int) -> None:
    script = f"""
import sys
from carbon_node.service.settings import load_settings
from carbon_node.service.daemon import Daemon
from carbon_node.service.systemd import Notifier
dirs = {{"state_dir": {str(tmp_path / "s")!r}, "cache_dir": {str(tmp_path / "c")!r}}}
settings = load_settings({{**dirs, "bus": "cyclone"}}).settings
daemon = Daemon(settings, notifier=Notifier({{}}))
daemon.start()
# The bare carbontracker package (an empty __init__) is allowed: the intensity table is read from its data files.
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r} and m != "carbontracker")
daemon.shutdown()
print("HEAVY:", ",".join(heavy))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "HEAVY: \n" in done.stdout


def test_an_unusable_state_directory_stops_start_up_with_one_line_and_status_2(tmp_path: Path, dds_domain: int) -> None:
    (tmp_path / "file").write_text("")
    done = subprocess.run(
        [sys.executable, "-m", "carbon_node", "run", "--state-dir", str(tmp_path / "file" / "state"), "--log-format", "json"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2  # a configuration error, like an invalid setting (issue 20)
    (line,) = done.stderr.strip().splitlines()
    assert f"{tmp_path / 'file' / 'state'} cannot be created" in line and "--state-dir" in line
