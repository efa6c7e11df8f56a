"""Where the engine measures a task: the placement chosen when it is routed, its queue, and
``extra_data.measured_on`` on every tracker answer (the pool itself is tests/bus/test_pool.py)."""

from __future__ import annotations

import json
from typing import Any

from carbon_node.core import Lane, TaskOutput
from carbon_node.engine import Engine
from carbon_node.engine.config import EngineConfig
from carbon_node.engine.task import decode_task
from carbon_node.measure.placement import LOCAL_QUEUE, LocalPlacer, MeasuredOn, Placement, PlacementFailed
from carbon_node.measure.protocol import Measurement, MeasureSpec
from carbon_node.testing import FakeMeasurer, make_inputs, make_measurement


def published(output: TaskOutput) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(output.extra_data_bytes())
    return data


class FakePlacer:
    """Places every task on host ``gpu:1:a`` and answers its measurement; records what it was asked."""

    def __init__(self, fail: bool = False) -> None:
        self.placed: list[tuple[str, str]] = []
        self.measured: list[tuple[MeasureSpec, Placement]] = []
        self.fail = fail

    def place(self, hardware: str, model: str) -> Placement:
        self.placed.append((hardware, model))
        return Placement("gpu:1:a", MeasuredOn("gpu:1:a", "NVIDIA H100", True, "it has the hardware"), hardware)

    def measure_placed(self, spec: MeasureSpec, placement: Placement) -> tuple[Measurement, MeasuredOn]:
        self.measured.append((spec, placement))
        if self.fail:
            raise PlacementFailed("measure host gpu:1:a went away; not measured elsewhere", placement.measured_on)
        return make_measurement(model=spec.model, energy_kwh=7e-4), placement.measured_on

    def measure(self, spec: MeasureSpec) -> Measurement:
        raise AssertionError("a placing measurer is asked through measure_placed")


def test_a_tracker_answer_says_where_it_was_measured_even_without_a_pool() -> None:
    data = published(Engine(EngineConfig(), FakeMeasurer()).handle(make_inputs(model="m", hw_description="NVIDIA H100")))
    assert data["measured_on"] == {"host": "local", "hardware": "", "matched": False, "reason": "no measure host pool"}


def test_a_local_placer_says_whether_this_hosts_hardware_matches() -> None:
    placer = LocalPlacer(FakeMeasurer(), ["NVIDIA H100", "AMD EPYC"], reason="the measure host pool is off")
    data = published(Engine(EngineConfig(), placer).handle(make_inputs(model="m", hw_description="nvidia h100 pcie")))  # type: ignore[arg-type]
    assert data["measured_on"] == {
        "host": "local",
        "hardware": "NVIDIA H100",
        "matched": True,
        "reason": "the measure host pool is off",
    }
    data = published(Engine(EngineConfig(), placer).handle(make_inputs(model="m")))  # type: ignore[arg-type]
    assert data["measured_on"]["reason"] == "the task names no hardware (hw_description is empty)"
    assert data["measured_on"]["hardware"] == "NVIDIA H100" and not data["measured_on"]["matched"]


def test_a_measured_task_is_placed_when_routed_and_queued_by_its_host() -> None:
    placer = FakePlacer()
    eng = Engine(EngineConfig(window_s=2.0), placer)  # type: ignore[arg-type]
    inputs = make_inputs(model="m", hw_description="NVIDIA H100 80GB")
    assert eng.lane(inputs) is Lane.MEASURE
    assert eng.measure_queue(inputs) == "gpu:1:a"
    assert placer.placed == [("NVIDIA H100 80GB", "m")]
    out = eng.handle(inputs)
    assert len(placer.placed) == 1  # handled with the placement chosen at routing
    spec, placement = placer.measured[0]
    assert spec.model == "m" and spec.window_s == 2.0 and placement.queue == "gpu:1:a"
    data = published(out)
    assert data["mode"] == "tracker" and data["measured_on"]["host"] == "gpu:1:a"
    assert data["carbontracker_energy_kwh"] is None and out.energy_kwh > 0


def test_tasks_that_measure_nothing_are_not_placed_and_wait_in_no_host_queue() -> None:
    placer = FakePlacer()
    eng = Engine(EngineConfig(), placer)  # type: ignore[arg-type]
    for inputs in (make_inputs(model="NO_MODEL"), make_inputs(model="m", model_path="/x/model.onnx")):
        assert eng.lane(inputs) is not Lane.MEASURE
        assert eng.measure_queue(inputs) == LOCAL_QUEUE
        assert "measured_on" not in published(eng.handle(inputs))
    assert placer.placed == []


def test_a_task_handled_without_being_routed_is_placed_then() -> None:
    placer = FakePlacer()
    published(Engine(EngineConfig(), placer).handle(make_inputs(model="m", hw_description="H100")))  # type: ignore[arg-type]
    assert placer.placed == [("H100", "m")]


def test_a_host_failure_answered_as_an_error_names_the_host_and_where_it_was_to_be_measured() -> None:
    out = Engine(EngineConfig(), FakePlacer(fail=True)).handle(make_inputs(model="m", hw_description="H100"))  # type: ignore[arg-type]
    data = published(out)
    assert data["mode"] == "error" and "measure host gpu:1:a went away" in data["error"]
    assert data["error_kind"] == "PlacementFailed"
    assert data["measured_on"]["host"] == "gpu:1:a"


def test_the_hw_description_is_decoded_and_bounded_like_every_text() -> None:
    assert decode_task(make_inputs(hw_description="  NVIDIA H100  "), "h").hw_description == "NVIDIA H100"
    long = decode_task(make_inputs(hw_description="x" * 5000), "h")
    assert len(long.hw_description) == 4096
    assert any(w.startswith("HWResource hw_description is 5000 characters") for w in long.warnings)
