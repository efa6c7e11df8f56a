"""The fast paths of the bus against the binding's own serializer: input decoding, output encoding, keys.

The fast decoder must give exactly what the binding's decoder gives, for samples captured from Fast
DDS and for generated ones, and hand anything else to the binding's decoder; the output and key
encoders must give the binding's bytes.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carbon_node.bus.codec import _LAYOUTS, decoder_for, fast_decode
from carbon_node.bus.cyclone import _pad4, encode_output, encode_output_key
from carbon_node.wire import WIRE_TYPES, CO2FootprintImpl, HWResourceImpl, MLModelImpl, TaskIdImpl, UserInputImpl
from tests.conftest import VECTORS_DIR

INPUT_TYPES = (MLModelImpl, HWResourceImpl, UserInputImpl)

u32 = st.integers(0, 2**32 - 1)
i32 = st.integers(-(2**31), 2**31 - 1)
text = st.text(max_size=40)
octets = st.lists(st.integers(0, 255), max_size=40)
texts = st.lists(text, max_size=4)
f64 = st.floats(allow_nan=False)
task_ids = st.builds(TaskIdImpl, u32, u32)

SAMPLES = {
    MLModelImpl: st.builds(MLModelImpl, text, text, octets, text, text, texts, f64, octets, task_ids),
    HWResourceImpl: st.builds(HWResourceImpl, text, f64, f64, f64, f64, octets, task_ids),
    UserInputImpl: st.builds(
        UserInputImpl,
        text,
        text,
        text,
        texts,
        texts,
        u32,
        u32,
        st.booleans(),
        i32,
        st.booleans(),
        f64,
        text,
        text,
        octets,
        task_ids,
    ),
}


def _captured(type_name: str) -> list[bytes]:
    doc = json.loads((VECTORS_DIR / f"{type_name}.json").read_text())
    return [bytes.fromhex(sample["serialized_payload_hex"]) for sample in doc["samples"]]


@pytest.mark.parametrize("cls", INPUT_TYPES, ids=lambda c: c.__name__)
def test_the_layouts_follow_the_declared_members(cls: type[Any]) -> None:
    assert len(_LAYOUTS[cls]) == len(dataclasses.fields(cls))


@pytest.mark.parametrize("cls", INPUT_TYPES, ids=lambda c: c.__name__)
def test_samples_captured_from_fast_dds_decode_as_the_binding_decodes_them(cls: type[Any]) -> None:
    payloads = _captured(cls.__name__)
    assert payloads
    for payload in payloads:
        assert fast_decode(cls, payload) == cls.deserialize(payload)


@settings(max_examples=150, deadline=None)
@given(st.one_of(*SAMPLES.values()))
def test_generated_samples_decode_as_the_binding_decodes_them(sample: Any) -> None:
    payload = _pad4(sample.serialize(use_version_2=False))
    assert fast_decode(type(sample), payload) == sample == type(sample).deserialize(payload)


@pytest.mark.parametrize("cls", INPUT_TYPES, ids=lambda c: c.__name__)
def test_bytes_the_fast_decoder_refuses_go_to_the_binding(cls: type[Any]) -> None:
    decode = decoder_for(cls)
    payload = _captured(cls.__name__)[0]
    truncated = payload[: len(payload) // 2]
    with pytest.raises(Exception):  # noqa: B017 - whatever the fast decoder raises, it refuses
        fast_decode(cls, truncated)
    with pytest.raises(Exception):  # noqa: B017 - and the binding's decoder judges: it raises too
        decode(truncated)
    xcdr2 = cls.deserialize(payload).serialize(use_version_2=True)
    assert decode(xcdr2) == cls.deserialize(xcdr2) == cls.deserialize(payload)


def test_invalid_utf8_in_a_string_is_refused_by_both() -> None:
    payload = bytearray(_pad4(HWResourceImpl(hw_description="ab").serialize(use_version_2=False)))
    payload[8] = 0xFF  # first byte of the string, after the header and its length
    with pytest.raises(UnicodeDecodeError):
        decoder_for(HWResourceImpl)(bytes(payload))


def test_other_types_use_the_binding_decoder() -> None:
    assert decoder_for(CO2FootprintImpl) == CO2FootprintImpl.deserialize
    assert set(_LAYOUTS) == {WIRE_TYPES[name] for name in ("MLModelImpl", "HWResourceImpl", "UserInputImpl")}


@settings(max_examples=150, deadline=None)
@given(st.floats(), st.floats(), st.floats(), st.binary(max_size=300), u32, u32)
def test_outputs_encode_to_the_binding_bytes(
    carbon: float, energy: float, intensity: float, extra: bytes, problem_id: int, iteration_id: int
) -> None:
    sample = CO2FootprintImpl(carbon, energy, intensity, list(extra), TaskIdImpl(problem_id, iteration_id))
    assert encode_output(carbon, energy, intensity, extra, problem_id, iteration_id) == _pad4(
        sample.serialize(use_version_2=False)
    )
    assert encode_output_key(problem_id, iteration_id) == _pad4(
        CO2FootprintImpl(task_id=TaskIdImpl(problem_id, iteration_id)).serialize_key(use_version_2=False)
    )
