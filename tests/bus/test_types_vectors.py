"""Our wire types against bytes captured from the real upstream stack (Fast DDS 3.4.3)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from cyclonedds.idl import IdlEnum, IdlStruct
from cyclonedds.idl._support import Endianness

from carbon_node.wire import WIRE_TYPES, CO2FootprintImpl, TaskIdImpl
from tests.conftest import VECTORS_DIR


def _samples() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in sorted(VECTORS_DIR.glob("*.json")):
        doc = json.loads(path.read_text())
        for index, sample in enumerate(doc["samples"]):
            out.append((f"{doc['type_name']}#{index}", sample | {"type_name": doc["type_name"]}))
    return out


SAMPLES = _samples()


def _plain(value: Any) -> Any:
    if isinstance(value, IdlEnum):
        return {"name": value.name, "value": value.value}
    if isinstance(value, IdlStruct):
        return {k: _plain(v) for k, v in value.__dict__.items()}
    return value


def _expected(decoded: Any) -> Any:
    """The vector's `decoded` with byte sequences as lists of ints, as our classes hold them."""
    if isinstance(decoded, dict) and set(decoded) == {"hex", "text"}:
        return list(bytes.fromhex(decoded["hex"]))
    if isinstance(decoded, dict):
        return {k: _expected(v) for k, v in decoded.items()}
    return decoded


def test_every_topic_type_has_real_samples() -> None:
    assert len(SAMPLES) == 20
    assert {s["type_name"] for _, s in SAMPLES} == set(WIRE_TYPES) - {"TaskIdImpl", "RequestTypeImpl", "ResponseTypeImpl"}


@pytest.mark.parametrize(("name", "sample"), SAMPLES, ids=[n for n, _ in SAMPLES])
def test_real_sample_decodes_to_recorded_values(name: str, sample: dict[str, Any]) -> None:
    payload = bytes.fromhex(sample["serialized_payload_hex"])
    value = WIRE_TYPES[sample["type_name"]].deserialize(payload)
    assert _plain(value) == _expected(sample["decoded"])


@pytest.mark.parametrize(("name", "sample"), SAMPLES, ids=[n for n, _ in SAMPLES])
def test_real_sample_reencodes_to_identical_xcdr1_bytes(name: str, sample: dict[str, Any]) -> None:
    payload = bytes.fromhex(sample["serialized_payload_hex"])
    cls = WIRE_TYPES[sample["type_name"]]
    assert cls.deserialize(payload).serialize(use_version_2=False) == payload


def test_worked_example_of_the_protocol_serializes_byte_for_byte() -> None:
    sample = CO2FootprintImpl(1.5, 2.5, 3.5, list(b'{"a":1}'), TaskIdImpl(1, 1))
    expected = "00010000000000000000f83f00000000000004400000000000000c40070000007b2261223a317d000100000001000000"
    assert sample.serialize(use_version_2=False).hex() == expected


def test_type_names_are_unscoped_and_structs_final() -> None:
    for name, cls in WIRE_TYPES.items():
        assert cls.__idl_typename__ == name
        assert cls.__idl_annotations__["extensibility"] == "final"


@pytest.mark.parametrize("path", sorted(Path(VECTORS_DIR).glob("*.json")), ids=lambda p: p.stem)
def test_keys_match_the_protocol(path: Path) -> None:
    doc = json.loads(path.read_text())
    cls = WIRE_TYPES[doc["type_name"]]
    keys = {name for name, notes in cls.__idl_field_annotations__.items() if notes.get("key")}
    expected = {
        "TaskIdImpl": set(),
        "NodeStatusImpl": {"node_name", "task_id"},
        "NodeControlImpl": {"source_node", "task_id"},
    }.get(doc["type_name"], {"task_id"})
    assert keys == expected


@pytest.mark.parametrize(("name", "sample"), SAMPLES, ids=[n for n, _ in SAMPLES])
def test_key_hash_equals_the_one_fast_dds_sent(name: str, sample: dict[str, Any]) -> None:
    """Same instance identity as Fast DDS: XCDR2 big-endian key, MD5 when it may exceed 16 bytes."""
    value = WIRE_TYPES[sample["type_name"]].deserialize(bytes.fromhex(sample["serialized_payload_hex"]))
    key = value.serialize_key(endianness=Endianness.Big, use_version_2=True)[4:]
    has_string_key = sample["type_name"] in {"NodeStatusImpl", "NodeControlImpl"}
    key_hash = hashlib.md5(key).digest() if has_string_key else key.ljust(16, b"\0")
    assert key_hash.hex() == sample["inline_qos_key_hash_hex"]
