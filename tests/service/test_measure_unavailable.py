"""A node installed without the ``measure`` extra says so in its answers and starts no worker per task.

The fixture is an interpreter where ``import torch`` fails as it does when torch is not installed: a
directory on ``PYTHONPATH`` holding a ``torch`` package that raises ``ModuleNotFoundError``.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from carbon_node.bus.orchestrator import Orchestrator
from carbon_node.core import TaskId, decode_extra_data
from carbon_node.wire import Status
from tests.service.test_daemon import EXIT_TIMEOUT_S, IDLE_TIMEOUT_S, send_measurement_task, start_node

REASON = "measurement unavailable: torch is not installed (install carbon-node[measure])"


@pytest.fixture
def without_torch(tmp_path: Path) -> str:
    """A PYTHONPATH on which ``import torch`` fails as if torch were not installed."""
    package = tmp_path / "no-torch" / "torch"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'torch'\", name='torch')\n")
    return os.pathsep.join([str(package.parent), os.environ.get("PYTHONPATH", "")])


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from carbon_node.measure.tiny import build_tiny_text_model

    return build_tiny_text_model(tmp_path_factory.mktemp("models") / "tiny-bert")


def test_tracker_tasks_answer_that_measurement_is_unavailable_without_a_worker_per_task(
    tmp_path: Path, dds_domain: int, without_torch: str, tiny_model: Path
) -> None:
    node = start_node(tmp_path, env={"PYTHONPATH": without_torch})
    try:
        with Orchestrator(dds_domain) as orchestrator:
            orchestrator.wait_status(Status.NODE_IDLE, IDLE_TIMEOUT_S)
            errors = []
            for iteration in (1, 2, 3):
                send_measurement_task(orchestrator, TaskId(70, iteration), tiny_model)
                extra, _ = decode_extra_data(orchestrator.wait_output(TaskId(70, iteration), 60.0).extra_data)
                errors.append((extra["mode"], extra["error"]))
            node.send_signal(signal.SIGTERM)
            assert node.wait(EXIT_TIMEOUT_S) == 0
    finally:
        if node.poll() is None:
            node.kill()
    assert all(mode == "error" and REASON in error for mode, error in errors), errors
    events = [json.loads(line)["event"] for line in (tmp_path / "node.log").read_text().splitlines() if line.startswith("{")]
    assert events.count("measure.worker_started") == 1, events
    assert "measure.worker_replaced" not in events
    assert events.count("measure.unavailable") == 1
