"""Output checks: only an output the orchestrator accepts is published; anything else becomes an error output."""

from __future__ import annotations

import math
from typing import Any

import pytest

from carbon_node.base import CarbonNodeError
from carbon_node.bus.checks import check_output, checked_extra_data, describe_error, fail_safely
from carbon_node.core import Lane, TaskId, TaskInputs, TaskOutput, make_inputs

TASK = TaskId(3, 1)
VALID_EXTRA: dict[str, Any] = {"num_outputs": 1, "model_restrains": [], "mode": "no_model"}


def output(extra: Any = None, **figures: Any) -> TaskOutput:
    values = {"carbon_g": 1.0, "energy_kwh": 0.5, "grid_ci_g_per_kwh": 2.0, **figures}
    return TaskOutput(TASK, extra_data=VALID_EXTRA if extra is None else extra, **values)


def nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


def test_an_output_with_finite_figures_and_the_keys_the_orchestrator_needs_is_published_as_is() -> None:
    assert check_output(output()) is None


def test_the_checked_bytes_are_the_outputs_own_encoded_extra_data() -> None:
    checked = output()
    encoded, problem = checked_extra_data(checked)
    assert problem is None
    assert encoded is checked.extra_data_bytes()


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        (output(carbon_g=math.nan), "carbon_g is not a finite number: nan"),
        (output(energy_kwh=math.inf), "energy_kwh is not a finite number: inf"),
        (output(grid_ci_g_per_kwh=True), "grid_ci_g_per_kwh is not a finite number: True"),
        (output(carbon_g="1.0"), "carbon_g is not a finite number: '1.0'"),
        (output(extra=["not", "a", "mapping"]), "extra_data is not a JSON object"),
        (output(extra={**VALID_EXTRA, "num_outputs": 0}), "extra_data.num_outputs is not an integer >= 1: 0"),
        (output(extra={**VALID_EXTRA, "num_outputs": "many"}), "extra_data.num_outputs is not an integer >= 1: 'many'"),
        (output(extra={**VALID_EXTRA, "num_outputs": True}), "extra_data.num_outputs is not an integer >= 1: True"),
        (output(extra={"model_restrains": []}), "extra_data.num_outputs is not an integer >= 1: None"),
        (output(extra={**VALID_EXTRA, "model_restrains": "gpt2"}), "extra_data.model_restrains is not a list"),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_an_output_the_orchestrator_would_refuse_is_named_with_the_reason(bad: TaskOutput, problem: str) -> None:
    assert check_output(bad) == problem
    assert checked_extra_data(bad) == (b"", problem)


def test_extra_data_that_cannot_be_encoded_as_json_is_refused() -> None:
    problem = check_output(output(extra={**VALID_EXTRA, "deep": nested(100_000)}))
    assert problem is not None and problem.startswith("extra_data is not UTF-8 JSON: ")


class Failing:
    """A handler whose ``fail`` answers with ``answer``, or raises it when it is an exception."""

    def __init__(self, answer: TaskOutput | Exception) -> None:
        self.answer = answer

    def lane(self, inputs: TaskInputs) -> Lane:
        return Lane.INLINE

    def handle(self, inputs: TaskInputs) -> TaskOutput:
        raise AssertionError("not called")

    def fail(self, inputs: TaskInputs, message: str) -> TaskOutput:
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def test_fail_safely_publishes_the_handlers_error_output_when_it_passes_the_checks() -> None:
    own = output(extra={**VALID_EXTRA, "mode": "error", "error": "handler's words"})
    assert fail_safely(Failing(own), make_inputs(task_id=(3, 1)), "boom") is own


@pytest.mark.parametrize(
    "answer",
    [RuntimeError("fail raised"), output(carbon_g=math.nan)],
    ids=["fail raises", "fail returns an invalid output"],
)
def test_fail_safely_falls_back_to_the_core_error_output(answer: TaskOutput | Exception) -> None:
    fallback = fail_safely(Failing(answer), make_inputs(model="gpt2", task_id=(3, 1)), "boom")
    assert (fallback.task_id, fallback.carbon_g, fallback.mode, fallback.extra_data["error"]) == (TASK, 0.0, "error", "boom")
    assert check_output(fallback) is None


@pytest.mark.parametrize(
    ("exc", "text"),
    [
        (CarbonNodeError("model not found: gpt9"), "model not found: gpt9"),
        (ValueError("bad value"), "ValueError: bad value"),
        (KeyboardInterrupt(), "KeyboardInterrupt: "),
    ],
    ids=["our own error as is", "another with its type", "a base exception with its type"],
)
def test_an_exception_reads_as_the_text_of_an_error_output(exc: BaseException, text: str) -> None:
    assert describe_error(exc) == text
