"""``carbon-node send-task`` against a real node: latency units, exit statuses, and what describe says."""

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
from carbon_node.bus.upstream import resolve_bus_kind
from carbon_node.wire import Status
from tests.cli.test_cli import carbon_node
from tests.service.test_daemon import EXIT_TIMEOUT_S, IDLE_TIMEOUT_S, start_node


def running_node(tmp_path: Path, domain: int, *args: str, env: dict[str, str] | None = None) -> Iterator[int]:
    node = start_node(tmp_path, *args, env={"SUSTAINML_DOMAIN_ID": str(domain), **(env or {})})
    try:
        with Orchestrator(domain) as orchestrator:
            orchestrator.wait_status(Status.NODE_IDLE, IDLE_TIMEOUT_S)
        yield domain
    finally:
        node.send_signal(signal.SIGTERM)
        try:
            node.wait(EXIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            node.kill()


@pytest.fixture
def node_in_hours(tmp_path: Path, dds_domain: int) -> Iterator[int]:
    """A node reading HWResource.latency in hours (the default, as upstream)."""
    yield from running_node(tmp_path, dds_domain)


@pytest.fixture
def onnx_file(tmp_path: Path) -> Path:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"onnx")
    return path


def send(domain: int, *args: str) -> subprocess.CompletedProcess[str]:
    return carbon_node("send-task", "--domain", str(domain), "--timeout-s", "30", *args)


def send_50_ms(domain: int, onnx_file: Path) -> dict[str, Any]:
    done = send(domain, "--model", "m", "--model-path", str(onnx_file), "--latency", "50", "--latency-unit", "ms", "--json")
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_latency_in_milliseconds_reaches_an_hours_node_as_the_same_duration(node_in_hours: int, onnx_file: Path) -> None:
    done = send(
        node_in_hours, "--model", "m", "--model-path", str(onnx_file), "--latency", "50", "--latency-unit", "ms", "--json"
    )
    result = json.loads(done.stdout)
    assert done.returncode == 0, done.stderr
    assert result["extra_data"]["latency_unit"] == "h"
    assert result["extra_data"]["latency_s"] == pytest.approx(0.05)
    assert "node's describe answer" in result["latency_note"]


def test_latency_in_milliseconds_reaches_a_seconds_node_as_the_same_duration(
    tmp_path: Path, dds_domain: int, onnx_file: Path
) -> None:
    for domain in running_node(tmp_path, dds_domain, env={"SUSTAINML_LATENCY_UNIT": "s"}):
        result = send_50_ms(domain, onnx_file)
        assert result["extra_data"]["latency_unit"] == "s"
        assert result["extra_data"]["latency_s"] == pytest.approx(0.05)
        assert result["latency_sent"] == pytest.approx(0.05)


def test_send_task_exits_0_on_an_answer_and_1_on_an_error_answer_like_estimate(node_in_hours: int, onnx_file: Path) -> None:
    computed = send(node_in_hours, "--model", "m", "--model-path", str(onnx_file), "--latency", "1", "--latency-unit", "s")
    no_model = send(node_in_hours, "--model", "NO_MODEL")
    error = send(node_in_hours, "--model", "m", "--model-path", "/no/such/model.onnx", "--latency", "1", "--power=-1")
    assert (computed.returncode, no_model.returncode, error.returncode) == (0, 0, 1)
    assert "mode               onnx_hw_only" in computed.stdout
    assert "power_consumption is negative" in error.stdout  # the answer is printed all the same


def test_send_task_exits_3_when_no_node_answers_and_ignores_settings_it_does_not_use(dds_domain: int) -> None:
    done = carbon_node(
        "send-task", "--domain", str(dds_domain), "--timeout-s", "0.5", "--model", "NO_MODEL",
        env={"CARBON_NODE_METRICS_PORT": "0", "CT_TARGET_SECONDS": "-1"},
    )  # fmt: skip
    assert done.returncode == 3
    assert "no output" in done.stderr or "within 0.5 s" in done.stderr


def test_send_task_says_early_that_no_carbon_node_was_seen_and_exits_3(dds_domain: int) -> None:
    started = time.monotonic()
    done = carbon_node(
        "send-task", "--domain", str(dds_domain), "--discovery-timeout-s", "1", "--model", "NO_MODEL"
    )  # fmt: skip
    assert done.returncode == 3
    assert time.monotonic() - started < 30  # not the 120 s of --timeout-s
    assert f"no carbon node seen on domain {dds_domain} within 1 s" in done.stderr
    assert "SUSTAINML_DOMAIN_ID" in done.stderr and "Troubleshooting" in done.stderr


def test_a_relative_model_directory_is_sent_as_its_absolute_path_and_said_so(
    node_in_hours: int, tmp_path: Path, onnx_file: Path
) -> None:
    (tmp_path / "models" / "tiny-bert").mkdir(parents=True)
    done = carbon_node(
        "send-task", "--domain", str(node_in_hours), "--timeout-s", "30", "--model", "models/tiny-bert",
        "--model-path", str(onnx_file), "--json", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    absolute = str(tmp_path / "models" / "tiny-bert")
    assert f"using its absolute path {absolute}" in done.stderr
    assert json.loads(done.stdout)["extra_data"]["model_restrains"][0] == absolute


def test_a_relative_model_directory_that_does_not_exist_is_refused_before_sending(tmp_path: Path) -> None:
    done = carbon_node("send-task", "--model", "./models/none", "--discovery-timeout-s", "1", cwd=tmp_path)
    assert done.returncode == 2
    assert "model directory './models/none' does not exist" in done.stderr


def test_the_table_shows_extra_data_one_key_per_line_within_100_columns(node_in_hours: int, onnx_file: Path) -> None:
    done = send(node_in_hours, "--model", "m", "--model-path", str(onnx_file), "--latency", "1", "--latency-unit", "s")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert all(len(line) <= 100 for line in lines), [line for line in lines if len(line) > 100]
    keys = {line.split()[0] for line in lines[lines.index("extra_data") + 1 :] if line.startswith("  ") and line[2] != " "}
    assert {"mode", "grid_ci_source", "power_source", "units"} <= keys


def test_describe_and_the_idle_log_name_the_bus_in_use_not_auto(tmp_path: Path, dds_domain: int) -> None:
    node = start_node(tmp_path, "--bus", "auto", env={"SUSTAINML_DOMAIN_ID": str(dds_domain)})
    with Orchestrator(dds_domain) as orchestrator:
        orchestrator.wait_status(Status.NODE_IDLE, IDLE_TIMEOUT_S)
        response = orchestrator.request_configuration('{"command": "describe"}', transaction_id=3, timeout_s=10.0)
        node.send_signal(signal.SIGTERM)
        assert node.wait(EXIT_TIMEOUT_S) == 0
    described = json.loads(response.configuration)
    records = [json.loads(line) for line in (tmp_path / "node.log").read_text().splitlines() if line.startswith("{")]
    idle = next(r for r in records if r["event"] == "node.idle")
    assert described["bus"] == idle["bus"] == resolve_bus_kind("auto") != "auto"
    assert described["settings"]["bus"] == "auto"  # the setting itself, as configured


def test_send_task_sends_the_users_place_and_the_node_resolves_it(node_in_hours: int, onnx_file: Path) -> None:
    done = send(
        node_in_hours, "--model", "m", "--model-path", str(onnx_file), "--latency", "1", "--region", "California", "--json"
    )
    assert done.returncode == 0, done.stderr
    extra = json.loads(done.stdout)["extra_data"]
    assert extra["grid_ci_zone"] == "US-CA"
    assert extra["grid_ci_match"]["text"] == "California"
