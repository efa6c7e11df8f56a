"""The pool's wire: the IDL and the Python types agree, both travel as XCDR1, and a Measurement crosses
it with every field intact (and nothing else decodes as one)."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest

from carbon_node.bus.pool_types import (
    CarbonNodeMeasureReplyImpl,
    CarbonNodeMeasureRequestImpl,
    measurement_from_json,
    measurement_to_json,
)
from carbon_node.measure.protocol import Measurement
from carbon_node.measure.uncertainty import EnergyUncertainty, Part
from carbon_node.testing import make_measurement

IDL = Path(__file__).resolve().parents[2] / "carbon_node" / "bus" / "idl" / "carbon_node_pool.idl"
IDL_TYPES = {"string": str, "double": float, "boolean": bool, "sequence<string>": list}


@pytest.mark.parametrize("struct", [CarbonNodeMeasureRequestImpl, CarbonNodeMeasureReplyImpl])
def test_the_python_types_follow_the_idl_member_by_member(struct: Any) -> None:
    text = IDL.read_text()
    body = re.search(rf"@final\s+struct {struct.__name__}\s*\{{(.*?)\}};", text, re.DOTALL)
    assert body is not None, f"{struct.__name__} is not a @final struct in {IDL.name}"
    members = re.findall(r"^\s*(@key\s+)?([\w<>]+)\s+(\w+);", body.group(1), re.MULTILINE)
    assert [name for _, _, name in members] == list(struct.__dataclass_fields__)
    assert [name for k, _, name in members if k] == ["request_id", "host_id"]
    sample = struct()
    for _, idl_type, name in members:
        assert isinstance(getattr(sample, name), IDL_TYPES[idl_type]), name


def test_requests_and_replies_travel_as_xcdr1_plain_cdr() -> None:
    request = CarbonNodeMeasureRequestImpl("n:1:a/1", "h:2:b", "n:1:a", "/srv/m", 1.0, ["gpt"], 80.0)
    reply = CarbonNodeMeasureReplyImpl("n:1:a/1", "h:2:b", "measured", "", "{}", 0.25)
    for sample in (request, reply):
        data = sample.serialize()
        assert data[:4] == b"\x00\x01\x00\x00"  # CDR_LE: XCDR1, as the SustainML types (PROTOCOL.md 2.1)
        assert type(sample).deserialize(data) == sample


# A value for every field of Measurement, each unlike its default: a field added to Measurement without a
# value here fails the first test below, so the pool cannot silently drop it.
EVERY_FIELD: dict[str, Any] = {
    "model": "/srv/models/bert",
    "model_class": "BertModel",
    "device": "cuda:0",
    "dtype": "bfloat16",
    "energy_kwh": 3.25e-4,
    "window_s": 1.0625,
    "forward_passes": 117,
    "power_source": "nvml",
    "components": ("cpu", "gpu"),
    "pue": 1.58,
    "carbontracker_version": "2.4.7",
    "measured_at": "2026-12-07T10:00:00.123+00:00",
    "load_s": 0.75,
    "measure_s": 1.5,
    "cached": True,
    "cpu_power_source": "rapl",
    "gpu_power_source": "nvml",
    "notes": ("weights loaded from the model directory", "a note with ünïcode"),
    "model_identity": "files:0123456789abcdef",
    "energy_figure": "rapl_counter",
    "carbontracker_energy_kwh": 3.5e-4,
    "counter_energy_kwh": 3.25e-4,
    "torch_threads": 8,
    "power_model": {"name": "boavizta_teads_tdp_curve", "cpu_power_w": 4.25, "socket_threads": 48, "tdp_source": "server_median"},
    "uncertainty": EnergyUncertainty(
        Part("power_source", 0.75, 1.35, "RAPL counters"),
        Part("window_spread", 0.9, 1.1, "per-pass energy"),
        Part("window_spread", 1.0, 1.0, "power: one figure"),
    ),
}


def _every_field() -> Measurement:
    return Measurement(**EVERY_FIELD)


def test_every_field_of_measurement_has_a_test_value_unlike_its_default() -> None:
    assert set(EVERY_FIELD) == {f.name for f in dataclasses.fields(Measurement)}
    for spec in dataclasses.fields(Measurement):
        if spec.default is not dataclasses.MISSING:
            assert EVERY_FIELD[spec.name] != spec.default, spec.name


def test_a_measurement_crosses_the_wire_with_every_field_intact() -> None:
    measurement = _every_field()
    reply = CarbonNodeMeasureReplyImpl("r", "h", "measured", "", measurement_to_json(measurement), 0.0)
    received = CarbonNodeMeasureReplyImpl.deserialize(reply.serialize())
    assert measurement_from_json(received.measurement) == measurement
    assert measurement_from_json(measurement_to_json(make_measurement())) == make_measurement()  # defaults too


def test_a_reader_ignores_unknown_names_and_defaults_missing_optional_ones() -> None:
    """Hosts and nodes of different versions work together."""
    data = json.loads(measurement_to_json(make_measurement()))
    data["a_field_of_a_newer_host"] = {"name": "from a newer host"}
    for name in ("torch_threads", "counter_energy_kwh", "notes_extra"):
        data.pop(name, None)
    assert measurement_from_json(json.dumps(data)) == make_measurement()


def _with(**changes: Any) -> str:
    data = json.loads(measurement_to_json(make_measurement()))
    data.update(changes)
    return json.dumps(data)


def _without(name: str) -> str:
    data = json.loads(measurement_to_json(make_measurement()))
    del data[name]
    return json.dumps(data)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not json",
        "[1, 2]",
        '"a string"',
        "{" * 100_000,  # nesting beyond the recursion limit
        " " * (1 << 20) + "{}",  # over the size limit
        _without("energy_kwh"),
        _with(energy_kwh="1e-6"),
        _with(energy_kwh=True),
        _with(energy_kwh=-1.0),
        _with(energy_kwh=float("inf")),
        _with(window_s=float("nan")),
        _with(forward_passes=1.5),
        _with(forward_passes=-3),
        _with(power_source="a wall socket"),
        _with(components="cpu"),
        _with(components=["cpu", 7]),
        _with(cached="yes"),
        _with(gpu_power_source=3),
        _with(model=None),
    ],
)
def test_anything_but_a_valid_measurement_is_refused_with_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        measurement_from_json(text)
