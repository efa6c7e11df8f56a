"""An upstream-style callback becomes a TaskHandler: lanes, outputs, extra_data completion, NODE_ERROR."""

from __future__ import annotations

import json
from typing import Any

import pytest

from carbon_node.bus.node import CallbackHandler, CarbonFootprintNode, callback_lane
from carbon_node.core import Lane, TaskId, TaskInputs
from carbon_node.wire import HWResourceImpl, MLModelImpl, Status, TaskIdImpl, UserInputImpl


def inputs(model: str = "gpt2", model_path: str = "", user_extra: dict[str, Any] | None = None) -> TaskInputs:
    task = TaskIdImpl(9, 1)
    extra = list(json.dumps(user_extra).encode()) if user_extra is not None else []
    return TaskInputs(
        TaskId(9, 1),
        ml_model=MLModelImpl(model=model, model_path=model_path, task_id=task),
        user_input=UserInputImpl(extra_data=extra, task_id=task),
        hw=HWResourceImpl(latency=0.5, power_consumption=20.0, task_id=task),
    )


@pytest.mark.parametrize(
    ("model", "model_path", "lane"),
    [
        ("NO_MODEL", "N/A", Lane.FAST),
        ("no_model", "", Lane.FAST),
        ("unet", "/models/unet.onnx", Lane.FAST),
        ("bert-base-uncased", "", Lane.MEASURE),
        ("gpt2", "model.onnx.txt", Lane.MEASURE),
    ],
)
def test_lane_is_fast_for_no_model_and_onnx_and_measure_otherwise(model: str, model_path: str, lane: Lane) -> None:
    assert callback_lane(inputs(model, model_path)) is lane


def test_the_callback_values_become_the_output() -> None:
    def callback(ml: Any, user: Any, hw: Any, status: Any, co2: Any) -> None:
        co2.carbon_footprint(hw.latency() * hw.power_consumption())
        co2.energy_consumption(0.01)
        co2.carbon_intensity(400.0)
        co2.extra_data(json.dumps({"num_outputs": 2, "model_restrains": [ml.model()], "mode": "tracker"}).encode())

    output = CallbackHandler(callback).handle(inputs())
    assert (output.carbon_g, output.energy_kwh, output.grid_ci_g_per_kwh) == (10.0, 0.01, 400.0)
    assert output.extra_data == {"num_outputs": 2, "model_restrains": ["gpt2"], "mode": "tracker"}
    assert not output.node_error


def test_missing_orchestrator_keys_are_added_to_the_callback_extra_data() -> None:
    def callback(ml: Any, user: Any, hw: Any, status: Any, co2: Any) -> None:
        co2.carbon_footprint(1.0)

    output = CallbackHandler(callback).handle(inputs(user_extra={"num_outputs": "3", "model_restrains": ["bert"]}))
    assert output.extra_data == {"num_outputs": 3, "model_restrains": ["gpt2", "bert"]}


def test_invalid_callback_extra_data_is_reported_not_published() -> None:
    def callback(ml: Any, user: Any, hw: Any, status: Any, co2: Any) -> None:
        co2.extra_data(b"not json")

    output = CallbackHandler(callback).handle(inputs())
    assert output.extra_data["num_outputs"] == 1
    assert "not valid JSON" in output.extra_data["callback_extra_data_error"]


def test_a_callback_setting_node_error_asks_for_node_error_status() -> None:
    def callback(ml: Any, user: Any, hw: Any, status: Any, co2: Any) -> None:
        status.node_status(Status.NODE_ERROR)

    assert CallbackHandler(callback).handle(inputs()).node_error


def test_callbacks_cannot_modify_the_assembled_inputs() -> None:
    def callback(ml: Any, user: Any, hw: Any, status: Any, co2: Any) -> None:
        ml.model("changed")

    task = inputs()
    CallbackHandler(callback).handle(task)
    assert task.ml_model is not None and task.ml_model.model == "gpt2"


def test_fail_gives_the_error_output() -> None:
    output = CallbackHandler(lambda *args: None).fail(inputs(), "boom")
    assert output.extra_data["mode"] == "error" and output.extra_data["error"] == "boom"


@pytest.mark.parametrize("missing", ["callback", "service_callback"])
def test_the_node_requires_both_callbacks(missing: str) -> None:
    arguments: dict[str, Any] = {"callback": lambda *a: None, "service_callback": lambda *a: None}
    arguments[missing] = None
    with pytest.raises(ValueError, match="expects a"):
        CarbonFootprintNode(**arguments)


def test_an_invalid_domain_id_stops_the_node_api_with_an_error_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    from carbon_node.bus.cyclone import BusError

    monkeypatch.setenv("SUSTAINML_DOMAIN_ID", "eu-1")
    with pytest.raises(BusError, match="SUSTAINML_DOMAIN_ID"):
        CarbonFootprintNode(lambda *a: None, lambda *a: None)
