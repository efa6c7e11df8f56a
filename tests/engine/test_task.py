"""Decoding the wire inputs into a typed Task: units converted once, numbers checked."""

from __future__ import annotations

import math

import pytest

from carbon_node.engine.task import decode_task
from carbon_node.testing import make_inputs


@pytest.mark.parametrize(
    ("unit", "latency", "latency_s"),
    [("h", 0.5, 1800.0), ("s", 2.0, 2.0), ("ms", 250.0, 0.25)],
)
def test_latency_is_converted_from_the_configured_unit_to_seconds(unit: str, latency: float, latency_s: float) -> None:
    task = decode_task(make_inputs(latency=latency), unit)  # type: ignore[arg-type]
    assert task.latency_s == pytest.approx(latency_s, rel=1e-12)
    assert task.latency_h == pytest.approx(latency_s / 3600.0, rel=1e-12)
    assert task.latency_unit == unit


@pytest.mark.parametrize(
    ("latency", "power", "expected"),
    [
        (math.nan, 1.0, "latency is NaN"),
        (math.inf, 1.0, "latency is infinite"),
        (-1.0, 1.0, "latency is negative"),
        (1.0, math.nan, "power_consumption is NaN"),
        (1.0, -math.inf, "power_consumption is infinite"),
        (1.0, -5.0, "power_consumption is negative"),
    ],
)
def test_unusable_hw_numbers_are_reported_and_zeroed(latency: float, power: float, expected: str) -> None:
    task = decode_task(make_inputs(latency=latency, power=power), "h")
    assert task.hw_problem is not None and expected in task.hw_problem
    assert (task.latency_s, task.power_w) == (0.0, 0.0)


def test_valid_hw_numbers_have_no_problem() -> None:
    task = decode_task(make_inputs(latency=0.0, power=12.5), "h")
    assert task.hw_problem is None
    assert task.power_w == 12.5


def test_unsupported_models_are_read_lower_case_from_the_ml_extra_data() -> None:
    task = decode_task(make_inputs(ml_extra={"unsupported_models": ["Bert", " GPT2 "]}), "h")
    assert task.unsupported_models == ("bert", "gpt2")
    assert task.warnings == ()


def test_a_malformed_unsupported_models_entry_is_a_warning_not_a_failure() -> None:
    task = decode_task(make_inputs(ml_extra={"unsupported_models": 7}), "h")
    assert task.unsupported_models == ()
    assert any("unsupported_models" in w for w in task.warnings)


def test_invalid_user_extra_data_is_kept_as_a_warning() -> None:
    task = decode_task(make_inputs(user_extra=b"\xff{"), "h")
    assert task.user_extra == {}
    assert task.warnings and "UserInput extra_data is not valid UTF-8" in task.warnings[0]


@pytest.mark.parametrize("model", ["NO_MODEL", "no_model", " No_Model "])
def test_no_model_is_recognised_in_any_case(model: str) -> None:
    assert decode_task(make_inputs(model=model), "h").is_no_model


def test_the_user_location_is_kept_as_given() -> None:
    task = decode_task(make_inputs(region=" Spain ", continent="Europe"), "h")
    assert (task.location.region, task.location.continent) == ("Spain", "Europe")


def test_an_incomplete_task_cannot_be_decoded() -> None:
    from carbon_node.core import TaskId, TaskInputs

    with pytest.raises(ValueError, match="missing"):
        decode_task(TaskInputs(TaskId(1, 1)), "h")
