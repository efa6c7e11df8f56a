"""SIGHUP reloads the configuration: what can change is applied from the next task, the rest is named."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from carbon_node.bus.orchestrator import Orchestrator
from carbon_node.core import TaskId
from carbon_node.service.reload import RELOADABLE, plan_reload
from carbon_node.service.settings import Settings
from carbon_node.wire import HWResourceImpl, MLModelImpl, Status, UserInputImpl
from tests.service.test_daemon import EXIT_TIMEOUT_S, IDLE_TIMEOUT_S, start_node

ANSWER_TIMEOUT_S = 120.0


def test_a_reload_applies_what_can_change_and_names_the_rest() -> None:
    running = Settings(window_s=1.0, log_level="info", domain_id=3, electricitymaps_api_key="old")
    plan = plan_reload(running, Settings(window_s=2.5, log_level="debug", domain_id=4, electricitymaps_api_key="new"))
    assert dict(plan.applied) == {"window_s": (1.0, 2.5), "log_level": ("info", "debug")}
    assert dict(plan.restart_needed) == {"domain_id": (3, 4), "electricitymaps_api_key": ("***", "***")}
    assert (plan.settings.window_s, plan.settings.log_level) == (2.5, "debug")
    assert (plan.settings.domain_id, plan.settings.electricitymaps_api_key) == (3, "old")  # as it runs


def test_an_unchanged_configuration_changes_nothing() -> None:
    plan = plan_reload(Settings(), Settings())
    assert not plan.changed


def test_every_reloadable_name_is_a_setting() -> None:
    assert set(Settings.model_fields) >= RELOADABLE
    assert {"domain_id", "bus", "state_dir", "cache_dir", "journal", "metrics_port", "torch_threads"}.isdisjoint(RELOADABLE)


def _events(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]


def _wait_event(log: Path, name: str, count: int = 1, timeout_s: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = [e for e in _events(log) if e["event"] == name]
        if len(found) >= count:
            return found[count - 1]
        time.sleep(0.05)
    raise AssertionError(f"{name} #{count} not logged; log: {[e['event'] for e in _events(log)]}")


@pytest.fixture
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    pytest.importorskip("transformers")
    from carbon_node.measure.tiny import build_tiny_text_model

    return str(build_tiny_text_model(tmp_path_factory.mktemp("models") / "tiny-bert", weights=True))


@pytest.fixture
def node_with_file(tmp_path: Path, dds_domain: int) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    config = tmp_path / "carbon-node.toml"
    config.write_text("[carbon_node]\nwindow_s = 0.3\nmeasure_cache_ttl_s = 0\nsim_cpu_tdp_w = 40.0\n")
    node = start_node(tmp_path, "--config", str(config), env={"SUSTAINML_DOMAIN_ID": str(dds_domain)})
    try:
        yield node, config
    finally:
        if node.poll() is None:
            node.send_signal(signal.SIGTERM)
            try:
                node.wait(EXIT_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                node.kill()


def _window_s(orchestrator: Orchestrator, task: TaskId, model: str) -> float:
    orchestrator.publish_task(task, MLModelImpl(model=model), HWResourceImpl(latency=0.001), UserInputImpl())
    output = orchestrator.wait_output(task, ANSWER_TIMEOUT_S)
    extra = json.loads(bytes(output.extra_data).decode("utf-8"))
    assert extra["mode"] == "tracker", extra.get("error")
    return float(extra["window_s"])


def test_sighup_with_a_changed_file_changes_the_next_window_and_the_node_keeps_answering(
    node_with_file: tuple[subprocess.Popen[str], Path], tiny_model: str, tmp_path: Path, dds_domain: int
) -> None:
    node, config = node_with_file
    log = tmp_path / "node.log"
    with Orchestrator(dds_domain) as orchestrator:
        orchestrator.wait_status(Status.NODE_IDLE, IDLE_TIMEOUT_S)
        assert _window_s(orchestrator, TaskId(1, 1), tiny_model) == pytest.approx(0.3, abs=0.15)
        config.write_text("[carbon_node]\nwindow_s = 1.2\nmeasure_cache_ttl_s = 0\nsim_cpu_tdp_w = 40.0\ntorch_threads = 1\n")
        node.send_signal(signal.SIGHUP)
        done = _wait_event(log, "reload.done")
        assert done["applied"] == {"window_s": 1.2}
        assert done["restart_needed"] == ["torch_threads"]
        assert _window_s(orchestrator, TaskId(1, 2), tiny_model) == pytest.approx(1.2, abs=0.3)
        # An invalid file leaves the running settings as they were; the node keeps answering.
        config.write_text("[carbon_node]\nwindow_s = -1\n")
        node.send_signal(signal.SIGHUP)
        failed = _wait_event(log, "reload.failed")
        assert "window_s" in failed["error"]
        assert _window_s(orchestrator, TaskId(1, 3), tiny_model) == pytest.approx(1.2, abs=0.3)
        assert node.poll() is None


def test_tasks_sent_across_reloads_are_each_answered_once(tmp_path: Path, dds_domain: int) -> None:
    config = tmp_path / "carbon-node.toml"
    config.write_text("[carbon_node]\ngrid_ci_g_per_kwh = 100.0\n")
    node = start_node(tmp_path, "--config", str(config), env={"SUSTAINML_DOMAIN_ID": str(dds_domain)})
    log = tmp_path / "node.log"
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"x")
    try:
        with Orchestrator(dds_domain) as orchestrator:
            orchestrator.wait_status(Status.NODE_IDLE, IDLE_TIMEOUT_S)
            for i in range(1, 61):
                orchestrator.publish_task(
                    TaskId(9, i),
                    MLModelImpl(model="m", model_path=str(onnx)),
                    HWResourceImpl(latency=1.0, power_consumption=1.0),
                    UserInputImpl(),
                )
                if i % 20 == 0:
                    config.write_text(f"[carbon_node]\ngrid_ci_g_per_kwh = {100.0 + i}\n")
                    node.send_signal(signal.SIGHUP)
                    _wait_event(log, "reload.done", count=i // 20)
            outputs = orchestrator.wait_outputs(60, ANSWER_TIMEOUT_S)
            time.sleep(0.5)
            assert orchestrator.output_count() == 60
        assert {o.carbon_intensity for o in outputs} <= {100.0, 120.0, 140.0, 160.0}
        answered = [e["task_id"] for e in _events(log) if e["event"] == "task_answered"]
        assert sorted(answered) == sorted(f"9.{i}" for i in range(1, 61))  # each once
    finally:
        node.send_signal(signal.SIGTERM)
        assert node.wait(EXIT_TIMEOUT_S) == 0
