"""The same TaskHandler runs on the upstream sustainml_py bindings (here a fake of them)."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from structlog.testing import capture_logs

from carbon_node.bus.cyclone import BusError
from carbon_node.bus.runtime import NodeRuntime
from carbon_node.bus.upstream import UpstreamRuntime, make_bus, upstream_available, wire_from_accessors
from carbon_node.core import Lane, TaskId, TaskInputs, TaskOutput, base_extra_data, error_output
from carbon_node.service.journal import SqliteJournal
from carbon_node.wire import MLModelImpl

FAKE_ROOT = Path(__file__).resolve().parent.parent / "fake_sustainml"


class EchoHandler:
    """Answers with the HW power as carbon; a model named 'crash' raises; 'slow*' is a measurement."""

    def __init__(self) -> None:
        self.handled: list[TaskInputs] = []

    def lane(self, inputs: TaskInputs) -> Lane:
        assert inputs.ml_model is not None
        return Lane.MEASURE if inputs.ml_model.model.startswith("slow") else Lane.FAST

    def handle(self, inputs: TaskInputs) -> TaskOutput:
        assert inputs.ml_model is not None and inputs.hw is not None
        self.handled.append(inputs)
        if inputs.ml_model.model == "crash":
            raise RuntimeError("exploded")
        extra = {**base_extra_data(inputs.ml_model.model, {}), "mode": "tracker"}
        return TaskOutput(
            inputs.task_id, inputs.hw.power_consumption, 0.5, 300.0, extra, node_error=inputs.ml_model.model == "bad"
        )

    def fail(self, inputs: TaskInputs, message: str) -> TaskOutput:
        return error_output(inputs, message)


@pytest.fixture
def fake_upstream(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    monkeypatch.syspath_prepend(str(FAKE_ROOT))
    for name in [m for m in sys.modules if m.startswith("sustainml_py")]:
        monkeypatch.delitem(sys.modules, name)
    import sustainml_py.nodes.CarbonFootprintNode as module

    module.CarbonFootprintNode.instances.clear()
    yield module
    module.CarbonFootprintNode.terminate()
    for name in [m for m in sys.modules if m.startswith("sustainml_py")]:
        del sys.modules[name]  # imported by the test: gone with the fake path


def accessor_task(module: ModuleType, model: str, power_w: float = 12.0) -> tuple[Any, Any, Any]:
    accessors = module.Accessors
    tid = module.task_id(5, 2)
    ml = accessors(model=model, model_path="", raw_model=[], model_properties_path="", model_properties="",
                   input_batch=[], target_latency=0.0, extra_data=list(b"{}"), task_id=tid)  # fmt: skip
    user = accessors(extra_data=list(b'{"num_outputs": 3}'), geo_location_region="EU", inputs=["a"], task_id=tid)
    hw = accessors(latency=0.25, power_consumption=power_w, hw_description="PIM_AI_1chip", extra_data=[], task_id=tid)
    return ml, user, hw


def start_upstream(handler: EchoHandler, module: ModuleType, **options: Any) -> tuple[UpstreamRuntime, Any]:
    runtime = UpstreamRuntime(handler, **options)
    runtime.start(5.0)
    return runtime, module.CarbonFootprintNode.instances[-1]


def test_auto_picks_the_upstream_bindings_when_importable(fake_upstream: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUSTAINML_DOMAIN_ID", "0")
    assert upstream_available()
    runtime = make_bus("auto")(EchoHandler(), domain_id=17)
    assert isinstance(runtime, UpstreamRuntime)
    # The upstream library reads the domain from the environment: it gets the resolved setting.
    assert os.environ["SUSTAINML_DOMAIN_ID"] == "17"


def test_auto_picks_cyclone_without_the_bindings() -> None:
    assert not upstream_available()
    assert make_bus("auto") is NodeRuntime


def test_asking_for_upstream_without_the_bindings_is_an_error() -> None:
    with pytest.raises(BusError, match="sustainml_py"):
        make_bus("sustainml")


def test_an_unknown_bus_is_an_error() -> None:
    with pytest.raises(BusError, match="unknown bus"):
        make_bus("zenoh")


def test_upstream_accessors_become_wire_samples(fake_upstream: ModuleType) -> None:
    ml, _, _ = accessor_task(fake_upstream, "gpt2")
    wire = wire_from_accessors(ml, MLModelImpl)
    assert (wire.model, wire.extra_data, wire.task_id.problem_id, wire.task_id.iteration_id) == ("gpt2", [123, 125], 5, 2)


def test_the_handler_output_is_written_through_the_upstream_accessors(fake_upstream: ModuleType) -> None:
    handler = EchoHandler()
    runtime, node = start_upstream(handler, fake_upstream)
    status, co2 = node.deliver(*accessor_task(fake_upstream, "gpt2", power_w=12.0))
    assert (co2.get("carbon_footprint"), co2.get("energy_consumption"), co2.get("carbon_intensity")) == (12.0, 0.5, 300.0)
    assert json.loads(bytes(co2.get("extra_data")))["mode"] == "tracker"
    assert status.get("node_status") == 4
    (seen,) = handler.handled
    assert seen.task_id == TaskId(5, 2)
    assert seen.user_input is not None and seen.user_input.geo_location_region == "EU"
    assert runtime.stop(5.0)


def test_node_error_is_set_through_the_upstream_status_accessor(fake_upstream: ModuleType) -> None:
    runtime, node = start_upstream(EchoHandler(), fake_upstream)
    status, _ = node.deliver(*accessor_task(fake_upstream, "bad"))
    assert status.get("node_status") == 1
    runtime.stop(5.0)


def test_a_handler_exception_becomes_an_error_output_on_upstream(fake_upstream: ModuleType) -> None:
    runtime, node = start_upstream(EchoHandler(), fake_upstream)
    _, co2 = node.deliver(*accessor_task(fake_upstream, "crash"))
    data = json.loads(bytes(co2.get("extra_data")))
    assert (data["mode"], data["error"], data["num_outputs"]) == ("error", "RuntimeError: exploded", 3)
    assert runtime.stats().by_mode == {"error": 1}
    runtime.stop(5.0)


def test_the_journal_replays_identical_inputs_on_upstream_too(fake_upstream: ModuleType, tmp_path: Path) -> None:
    handler = EchoHandler()
    journal = SqliteJournal(tmp_path / "journal.sqlite3", max_tasks=100, retention_s=3600.0)
    runtime, node = start_upstream(handler, fake_upstream, journal=journal)
    node.deliver(*accessor_task(fake_upstream, "gpt2", power_w=12.0))
    _, co2 = node.deliver(*accessor_task(fake_upstream, "gpt2", power_w=12.0))
    assert co2.get("carbon_footprint") == 12.0
    assert len(handler.handled) == 1 and runtime.stats().replayed == 1
    runtime.stop(5.0)


def test_a_reused_task_id_with_other_inputs_is_computed_anew_on_upstream(fake_upstream: ModuleType, tmp_path: Path) -> None:
    handler = EchoHandler()
    journal = SqliteJournal(tmp_path / "journal.sqlite3", max_tasks=100, retention_s=3600.0)
    runtime, node = start_upstream(handler, fake_upstream, journal=journal)
    node.deliver(*accessor_task(fake_upstream, "gpt2", power_w=12.0))
    with capture_logs() as logs:
        _, co2 = node.deliver(*accessor_task(fake_upstream, "distilgpt2", power_w=99.0))
    assert co2.get("carbon_footprint") == 99.0
    assert json.loads(bytes(co2.get("extra_data")))["model_restrains"] == ["distilgpt2"]
    assert len(handler.handled) == 2 and runtime.stats().replayed == 0
    assert [e["task_id"] for e in logs if e["event"] == "task_id_reused"] == ["5.2"]
    stored = journal.lookup(TaskId(5, 2))
    assert stored is not None and stored.output.carbon_g == 99.0  # the row was replaced
    runtime.stop(5.0)


def test_describe_is_served_through_the_upstream_service_callback(fake_upstream: ModuleType) -> None:
    runtime, node = start_upstream(EchoHandler(), fake_upstream, describe=lambda: {"version": "0.1.0"})
    assert json.loads(node.request('{"command": "describe"}').get("configuration")) == {"version": "0.1.0"}
    unsupported = node.request("dummy2")
    assert (unsupported.get("success"), unsupported.get("err_code")) == (False, 1)
    runtime.stop(5.0)


def test_stop_terminates_the_spinning_upstream_node(fake_upstream: ModuleType) -> None:
    runtime, _ = start_upstream(EchoHandler(), fake_upstream)
    assert runtime.stop(5.0) is True


def test_an_unreadable_upstream_input_still_gets_a_valid_error_output(fake_upstream: ModuleType) -> None:
    class BrokenHW(fake_upstream.Accessors):  # type: ignore[name-defined,misc]
        def latency(self) -> float:
            raise RuntimeError("SWIG read failed")

    runtime, node = start_upstream(EchoHandler(), fake_upstream)
    ml, user, _ = accessor_task(fake_upstream, "gpt2")
    hw = BrokenHW(power_consumption=1.0, hw_description="x", extra_data=[], task_id=fake_upstream.task_id(5, 2))
    _, co2 = node.deliver(ml, user, hw)
    data = json.loads(bytes(co2.get("extra_data")))
    assert data["mode"] == "error" and "SWIG read failed" in data["error"]
    assert data["num_outputs"] >= 1 and data["model_restrains"] == ["gpt2"]
    runtime.stop(5.0)


class QueuedHandler:
    """Every task is a measurement of 0.3 s on the queue its model names ("a1" and "a2" on "a", "b1" on "b")."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running: dict[str, int] = {}
        self.most: dict[str, int] = {}
        self.at_once = 0
        self.most_at_once = 0

    def lane(self, inputs: TaskInputs) -> Lane:
        return Lane.MEASURE

    def measure_queue(self, inputs: TaskInputs) -> str:
        assert inputs.ml_model is not None
        return inputs.ml_model.model[0]

    def handle(self, inputs: TaskInputs) -> TaskOutput:
        queue = self.measure_queue(inputs)
        with self.lock:
            self.running[queue] = self.running.get(queue, 0) + 1
            self.most[queue] = max(self.most.get(queue, 0), self.running[queue])
            self.at_once += 1
            self.most_at_once = max(self.most_at_once, self.at_once)
        time.sleep(0.3)
        with self.lock:
            self.running[queue] -= 1
            self.at_once -= 1
        assert inputs.ml_model is not None
        return TaskOutput(inputs.task_id, 1.0, 1.0, 1.0, {**base_extra_data(inputs.ml_model.model, {}), "mode": "tracker"})

    def fail(self, inputs: TaskInputs, message: str) -> TaskOutput:
        return error_output(inputs, message)


def test_measure_queues_run_side_by_side_on_the_upstream_bus_each_one_at_a_time(fake_upstream: ModuleType) -> None:
    handler = QueuedHandler()
    runtime, node = start_upstream(handler, fake_upstream)  # type: ignore[arg-type]
    threads = [threading.Thread(target=node.deliver, args=accessor_task(fake_upstream, model)) for model in ("a1", "a2", "b1")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10.0)
    assert handler.most == {"a": 1, "b": 1}
    assert handler.most_at_once == 2
    assert runtime.stop(5.0)
