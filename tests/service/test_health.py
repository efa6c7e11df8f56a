"""Liveness: the heartbeat a running node refreshes, and ``carbon-node health`` reading it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from carbon_node.bus.orchestrator import Orchestrator
from carbon_node.service.health import HEARTBEAT_INTERVAL_S, Heartbeat, check_heartbeat
from carbon_node.wire import Status
from tests.service.test_daemon import EXIT_TIMEOUT_S, IDLE_TIMEOUT_S, start_node


def health(state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CARBON_NODE_")}
    environ["CARBON_NODE_STATE_DIR"] = str(state_dir)
    return subprocess.run(
        [sys.executable, "-m", "carbon_node", "health", *args], env=environ, capture_output=True, text=True, timeout=60
    )


def test_a_missing_heartbeat_is_unhealthy_and_says_the_node_is_not_running(tmp_path: Path) -> None:
    result = check_heartbeat(tmp_path / "heartbeat")
    assert not result.healthy and "not running" in result.message


def test_a_fresh_heartbeat_is_healthy_and_a_stale_one_is_not(tmp_path: Path) -> None:
    beat = Heartbeat(tmp_path / "heartbeat")
    beat.start()
    assert json.loads(beat.path.read_text())["pid"] == os.getpid()
    assert check_heartbeat(beat.path, max_age_s=10.0).healthy
    stale = check_heartbeat(beat.path, max_age_s=10.0, now_unix_s=time.time() + 11.0)
    assert not stale.healthy and "11.0 s old" in stale.message and f"pid {os.getpid()}" in stale.message


def test_beat_refreshes_the_file_at_most_once_per_interval(tmp_path: Path) -> None:
    beat = Heartbeat(tmp_path / "heartbeat", interval_s=60.0)
    beat.start()
    os.utime(beat.path, (1.0, 1.0))
    beat.beat()  # within the interval: no write
    assert beat.path.stat().st_mtime == 1.0
    beat._last -= 61.0
    beat.beat()
    assert beat.path.stat().st_mtime > time.time() - 5


def test_beat_never_raises_when_the_file_cannot_be_touched(tmp_path: Path) -> None:
    beat = Heartbeat(tmp_path / "gone" / "heartbeat", interval_s=0.0)
    beat.beat()  # no directory: logged, not raised


def test_health_rejects_a_non_positive_max_age(tmp_path: Path) -> None:
    done = health(tmp_path, "--max-age-s", "0")
    assert done.returncode == 2 and "--max-age-s" in done.stderr


def test_health_follows_a_running_node_wedged_resumed_and_stopped(tmp_path: Path, dds_domain: int, node_cleanup: list) -> None:
    state_dir = tmp_path / "state"
    with Orchestrator(dds_domain) as orchestrator:
        node = start_node(tmp_path)
        node_cleanup.append(node)
        idle = orchestrator.wait_status(Status.NODE_IDLE, IDLE_TIMEOUT_S)
        done = health(state_dir)
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.startswith("healthy") and f"pid {node.pid}" in done.stdout

        max_age_s = 3 * HEARTBEAT_INTERVAL_S
        node.send_signal(signal.SIGSTOP)  # wedged: no thread of the node runs
        try:
            time.sleep(max_age_s + 1.0)
            done = health(state_dir, "--max-age-s", str(max_age_s))
            assert done.returncode == 1, done.stdout
            assert "wedged, stopped or killed" in done.stdout
        finally:
            node.send_signal(signal.SIGCONT)
        deadline = time.monotonic() + 3 * HEARTBEAT_INTERVAL_S + 10
        while health(state_dir, "--max-age-s", str(max_age_s)).returncode != 0:
            assert time.monotonic() < deadline, "the heartbeat did not resume after SIGCONT"
            time.sleep(0.5)

        node.send_signal(signal.SIGTERM)
        assert node.wait(EXIT_TIMEOUT_S) == 0
        orchestrator.wait_status(Status.NODE_TERMINATING, 10.0, after=idle + 1)
    done = health(state_dir)
    assert done.returncode == 1 and "not running" in done.stdout


def test_help_of_health_names_the_heartbeat() -> None:
    done = subprocess.run([sys.executable, "-m", "carbon_node", "health", "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "heartbeat" in done.stdout and "--max-age-s" in done.stdout
