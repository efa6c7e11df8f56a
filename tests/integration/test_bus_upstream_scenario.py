"""Upstream scenarios (issue 2 item 13) with the upstream-style node API, on real Cyclone participants."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from carbon_node import CarbonFootprintNode
from carbon_node.bus.orchestrator import NodeNotSeen, Orchestrator
from carbon_node.bus.send_task import format_result, send_task
from carbon_node.core import TaskId
from carbon_node.wire import HWResourceImpl, MLModelImpl, Status, UserInputImpl

WAIT_S = 15.0
TASKS = 20
INTERVAL_S = 0.05
WP3_STYLE_NODE = Path(__file__).resolve().parent.parent / "fake_sustainml" / "wp3_style_node.py"


def trivial_callback(ml_model: Any, user_input: Any, hw: Any, node_status: Any, co2: Any) -> None:
    co2.carbon_footprint(float(ml_model.task_id().problem_id()))
    co2.extra_data(json.dumps({"num_outputs": 1, "model_restrains": [ml_model.model()], "mode": "no_model"}).encode())


def unsupported(req: Any, res: Any) -> None:
    res.configuration(json.dumps({"error": f"Unsupported configuration request: {req.configuration()}"}))


def inject(orchestrator: Orchestrator, count: int = TASKS) -> list[TaskId]:
    """Write ``count`` tasks ``INTERVAL_S`` apart, as the upstream test injector does."""
    task_ids = [TaskId(100 + i, 1) for i in range(count)]
    for task_id in task_ids:
        orchestrator.publish_task(task_id, MLModelImpl(model="NO_MODEL"), HWResourceImpl(), UserInputImpl())
        time.sleep(INTERVAL_S)
    return task_ids


@pytest.fixture
def spinning_node(dds_domain: int) -> Iterator[Any]:
    """Start a CarbonFootprintNode spinning on a thread (as wp3 does); terminate it afterwards."""
    threads: list[threading.Thread] = []

    def start() -> CarbonFootprintNode:
        node = CarbonFootprintNode(callback=trivial_callback, service_callback=unsupported, domain_id=dds_domain)
        thread = threading.Thread(target=node.spin, daemon=True)
        thread.start()
        threads.append(thread)
        return node

    yield start
    CarbonFootprintNode.terminate()
    for thread in threads:
        thread.join(WAIT_S)
        assert not thread.is_alive()


def test_twenty_tasks_injected_after_the_node_started_give_twenty_outputs(dds_domain: int, spinning_node: Any) -> None:
    with Orchestrator(dds_domain) as orchestrator:
        spinning_node()
        orchestrator.wait_status(Status.NODE_IDLE, WAIT_S)
        task_ids = inject(orchestrator)
        outputs = orchestrator.wait_outputs(TASKS, WAIT_S)
        assert sorted((o.task_id.problem_id, o.task_id.iteration_id) for o in outputs) == [(t.problem_id, 1) for t in task_ids]
        assert all(o.carbon_footprint == o.task_id.problem_id for o in outputs)
        assert orchestrator.output_count() == TASKS


def test_twenty_tasks_injected_before_the_node_started_are_replayed_to_it(dds_domain: int, spinning_node: Any) -> None:
    with Orchestrator(dds_domain) as orchestrator:
        task_ids = inject(orchestrator)
        spinning_node()
        outputs = orchestrator.wait_outputs(TASKS, WAIT_S)
        assert {TaskId(o.task_id.problem_id, o.task_id.iteration_id) for o in outputs} == set(task_ids)
        assert orchestrator.output_count() == TASKS


def test_terminate_wakes_every_spinning_node_and_publishes_terminating(dds_domain: int) -> None:
    with Orchestrator(dds_domain) as orchestrator:
        nodes = [CarbonFootprintNode(trivial_callback, unsupported, domain_id=dds_domain) for _ in range(2)]
        threads = [threading.Thread(target=node.spin, daemon=True) for node in nodes]
        for thread in threads:
            thread.start()
        CarbonFootprintNode.terminate()
        for thread in threads:
            thread.join(WAIT_S)
        assert not any(thread.is_alive() for thread in threads)
        first = orchestrator.wait_status(Status.NODE_TERMINATING, WAIT_S)
        orchestrator.wait_status(Status.NODE_TERMINATING, WAIT_S, after=first + 1)


def test_send_task_returns_the_node_answer(dds_domain: int, spinning_node: Any) -> None:
    spinning_node()
    result = send_task(model="NO_MODEL", user_extra={"num_outputs": 2}, domain_id=dds_domain, timeout_s=WAIT_S)
    assert result.extra_data["model_restrains"] == ["NO_MODEL"]
    assert "NODE_IDLE" in result.statuses
    assert json.loads(format_result(result, as_json=True))["task_id"] == result.task_id
    assert "gCO2e" in format_result(result, as_json=False)


def test_send_task_names_what_was_not_received(dds_domain: int) -> None:
    # No node on the domain: it says so (no status sample), before waiting for the output itself.
    with pytest.raises(NodeNotSeen, match=r"no carbon node seen on domain \d+ within 0.3 s \(no status sample\)"):
        send_task(model="NO_MODEL", domain_id=dds_domain, timeout_s=0.3)


def test_a_wp3_style_node_runs_unchanged_as_a_process_and_stops_on_sigint(dds_domain: int) -> None:
    with Orchestrator(dds_domain) as orchestrator:
        process = subprocess.Popen([sys.executable, str(WP3_STYLE_NODE)], env=dict(os.environ), stderr=subprocess.PIPE, text=True)
        try:
            orchestrator.wait_status(Status.NODE_IDLE, WAIT_S)
            response = orchestrator.request_configuration("dummy2", transaction_id=1, timeout_s=WAIT_S)
            assert json.loads(response.configuration) == {"error": "Unsupported configuration request: dummy2"}
            onnx = TaskId(7, 1)
            orchestrator.publish_task(
                onnx,
                MLModelImpl(model="unet", model_path="unet.onnx"),
                HWResourceImpl(latency=2.0, power_consumption=50.0),
                UserInputImpl(),
            )
            output = orchestrator.wait_output(onnx, WAIT_S)
            assert (output.energy_consumption, output.carbon_footprint) == (0.1, pytest.approx(10.0))
            assert json.loads(bytes(output.extra_data))["mode"] == "onnx_hw_only"
            process.send_signal(signal.SIGINT)
            assert process.wait(WAIT_S) == 0
            orchestrator.wait_status(Status.NODE_TERMINATING, WAIT_S)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(WAIT_S)


def test_the_bus_modules_do_not_import_the_measurement_stack() -> None:
    code = (
        "import sys, carbon_node, carbon_node.bus.runtime, carbon_node.bus.node, carbon_node.bus.orchestrator, "
        "carbon_node.bus.upstream; carbon_node.CarbonFootprintNode; "
        "print(sorted(m for m in ('torch', 'transformers', 'carbontracker', 'numpy') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=WAIT_S, check=True)
    assert result.stdout.strip() == "[]"
