"""Upstream-style accessors read and write the wire dataclasses."""

from __future__ import annotations

import pytest

from carbon_node.bus.api import CO2Footprint, HWResource, MLModel, NodeStatus, ResponseType, to_octets
from carbon_node.wire import (
    CO2FootprintImpl,
    ErrorCode,
    HWResourceImpl,
    MLModelImpl,
    NodeStatusImpl,
    ResponseTypeImpl,
    Status,
    TaskIdImpl,
)


def test_a_getter_returns_the_field_value() -> None:
    ml = MLModel(MLModelImpl(model="bert-base-uncased", model_path="m.onnx"))
    assert (ml.model(), ml.model_path()) == ("bert-base-uncased", "m.onnx")


def test_octet_fields_read_as_a_list_of_ints() -> None:
    ml = MLModel(MLModelImpl(extra_data=list(b"{}")))
    assert ml.extra_data() == [123, 125]


def test_a_nested_task_id_reads_through_accessors() -> None:
    hw = HWResource(HWResourceImpl(task_id=TaskIdImpl(4, 2)))
    assert (hw.task_id().problem_id(), hw.task_id().iteration_id()) == (4, 2)


def test_a_setter_converts_numbers_to_the_field_type() -> None:
    wire = CO2FootprintImpl()
    co2 = CO2Footprint(wire)
    co2.carbon_footprint(3)
    assert wire.carbon_footprint == 3.0 and isinstance(wire.carbon_footprint, float)
    assert co2.carbon_footprint() == 3.0


@pytest.mark.parametrize("value", [b'{"a":1}', bytearray(b'{"a":1}'), '{"a":1}', list(b'{"a":1}')])
def test_extra_data_accepts_bytes_text_or_ints(value: object) -> None:
    wire = CO2FootprintImpl()
    CO2Footprint(wire).extra_data(value)
    assert bytes(wire.extra_data) == b'{"a":1}'


def test_octets_out_of_range_are_refused() -> None:
    with pytest.raises(ValueError):
        to_octets([256])


def test_an_enum_field_accepts_the_enum_or_its_integer() -> None:
    wire = NodeStatusImpl()
    NodeStatus(wire).node_status(Status.NODE_ERROR)
    assert wire.node_status is Status.NODE_ERROR
    NodeStatus(wire).node_status(2)
    assert wire.node_status is Status.NODE_IDLE


def test_a_response_is_filled_the_upstream_way() -> None:
    wire = ResponseTypeImpl()
    res = ResponseType(wire)
    res.configuration("{}")
    res.success(False)
    res.err_code(1)
    assert (wire.configuration, wire.success, wire.err_code) == ("{}", False, ErrorCode.INTERNAL_ERROR)


def test_an_unknown_accessor_raises_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no field 'modell'"):
        MLModel(MLModelImpl()).modell()


def test_an_accessor_takes_at_most_one_argument() -> None:
    with pytest.raises(TypeError):
        MLModel(MLModelImpl()).model("a", "b")
