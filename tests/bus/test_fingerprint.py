"""The inputs' fingerprint names their content: every field counts, the task id does not."""

from __future__ import annotations

import dataclasses
import math

import pytest

from carbon_node.bus.fingerprint import input_digest, inputs_fingerprint
from carbon_node.core import TaskId, TaskInputs, make_inputs
from carbon_node.wire import HWResourceImpl, MLModelImpl, TaskIdImpl, UserInputImpl


def test_the_same_inputs_under_another_task_id_have_the_same_fingerprint() -> None:
    assert inputs_fingerprint(make_inputs(model="gpt2", task_id=(1, 1))) == inputs_fingerprint(
        make_inputs(model="gpt2", task_id=(9, 4))
    )


@pytest.mark.parametrize(
    "changed",
    [
        {"model": "distilgpt2"},
        {"model_path": "m.onnx"},
        {"latency": 2.0},
        {"power": 0.5},
        {"user_extra": {"model_restrains": ["a"]}},
        {"ml_extra": {"x": 1}},
        {"region": "Spain"},
    ],
    ids=lambda changed: next(iter(changed)),
)
def test_any_changed_field_changes_the_fingerprint(changed: dict[str, object]) -> None:
    base = {"model": "gpt2", "latency": 1.0, "power": 10.0}
    assert inputs_fingerprint(make_inputs(**base)) != inputs_fingerprint(make_inputs(**{**base, **changed}))  # type: ignore[arg-type]


def test_octets_count_as_bytes_whatever_their_python_form_and_floats_by_their_bits() -> None:
    key = TaskIdImpl(1, 1)
    as_list = UserInputImpl(extra_data=list(b'{"a": 1}'), task_id=key)
    assert input_digest(as_list) == input_digest(dataclasses.replace(as_list, extra_data=b'{"a": 1}'))  # type: ignore[arg-type]
    nan = HWResourceImpl(latency=math.nan, task_id=key)
    assert input_digest(nan) == input_digest(HWResourceImpl(latency=float("nan"), task_id=key))
    assert input_digest(HWResourceImpl(latency=0.0)) != input_digest(HWResourceImpl(latency=-0.0))


def test_fields_do_not_run_into_each_other() -> None:
    assert input_digest(MLModelImpl(model="ab", model_path="")) != input_digest(MLModelImpl(model="a", model_path="b"))
    assert input_digest(MLModelImpl(input_batch=["a", "b"])) != input_digest(MLModelImpl(input_batch=["ab"]))


GOLDEN_V1 = [
    "v1:bb7b0292284bc950ec75dcb6b813b898cc90832ca730251866c9ff0f627718e13b0783bc8da8fd5767a3487dac4b54a9",
    "v1:6e9093e5e26d71b2a724345f42be049ab40231c1237b1a89ada64aa3def59167272e90e8920a8e5f3cfc5403d25d8a29",
    "v1:" + "0" * 96,
    "v1:edd76d365bbc88b1837208de5f69df97" + "0" * 64,
]
"""Fingerprints stored in journals by earlier versions: a faster encoder must give the very same text."""


def test_fingerprints_are_those_that_journals_already_hold() -> None:
    samples = [
        make_inputs(
            model="org/model",
            model_path="/m/x.onnx",
            latency=0.5,
            power=12.5,
            task_id=(3, 2),
            user_extra={"a": [1, 2.5, None], "b": "é"},
            ml_extra='{"k": 1}',
            region="Madrid, Spain",
            continent="Europe",
        ),
        make_inputs(model="NO_MODEL", latency=math.nan, power=-0.0),
        TaskInputs(TaskId(1, 1)),
        TaskInputs(TaskId(1, 1), ml_model=MLModelImpl(model="x\udcff", model_properties="p")),
    ]
    assert [inputs_fingerprint(s) for s in samples] == GOLDEN_V1
