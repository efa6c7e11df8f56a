"""The measurement pool's wire: request and reply types, their QoS, and a ``Measurement`` as JSON.

A node asks a measure host to measure a model on ``/carbon_node/measure_request``
(:class:`CarbonNodeMeasureRequestImpl`); the host answers on ``/carbon_node/measure_reply``
(:class:`CarbonNodeMeasureReplyImpl`). Both are keyed by request id and host id, FINAL and XCDR1, declared
in ``idl/carbon_node_pool.idl`` (its comments document every member and the QoS). The reply carries
the host's :class:`~carbon_node.measure.protocol.Measurement` as a JSON object, one member per field by
name (:func:`measurement_to_json`, :func:`measurement_from_json`): the same Measurement the local worker
gives, every field round-tripped, and tolerant of version skew (unknown names ignored, missing optional
ones defaulted). Who the hosts are is the announcement topic (:mod:`carbon_node.bus.announce`).

Decoding is strict about types (a peer may send anything): :func:`measurement_from_json` raises
``ValueError`` for anything that is not a valid Measurement, never another exception.
"""

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from cyclonedds.core import Policy, Qos
from cyclonedds.idl import IdlStruct
from cyclonedds.idl.annotations import final, key
from cyclonedds.util import duration

from carbon_node.measure.protocol import Measurement

if TYPE_CHECKING:  # what the cyclonedds annotations hold, in terms a type checker understands
    from builtins import float as float64
    from builtins import list as sequence
else:
    from cyclonedds.idl.types import float64, sequence

__all__ = [
    "MAX_MEASUREMENT_JSON_CHARS",
    "REPLY_TOPIC",
    "REQUEST_TOPIC",
    "CarbonNodeMeasureReplyImpl",
    "CarbonNodeMeasureRequestImpl",
    "ReplyStatus",
    "measurement_from_json",
    "measurement_to_json",
    "pool_qos",
]

REQUEST_TOPIC = "/carbon_node/measure_request"
REPLY_TOPIC = "/carbon_node/measure_reply"

ReplyStatus = Literal["measured", "rejected", "error"]

MAX_MEASUREMENT_JSON_CHARS = 1 << 20
"""Largest ``measurement`` member decoded; a longer one is refused (a measurement is a few hundred bytes)."""

MAX_POOL_INSTANCES = 4096
"""Request or reply instances a pool endpoint keeps at once (a peer flooding it is refused beyond)."""


@dataclass
@final
class CarbonNodeMeasureRequestImpl(IdlStruct, typename="CarbonNodeMeasureRequestImpl"):
    """A node's request to one measure host (field order = ``idl/carbon_node_pool.idl``)."""

    request_id: str = ""
    key("request_id")
    host_id: str = ""
    key("host_id")
    node_id: str = ""
    model: str = ""
    window_s: float64 = 0.0
    unsupported_models: sequence[str] = field(default_factory=list)
    timeout_s: float64 = 0.0


@dataclass
@final
class CarbonNodeMeasureReplyImpl(IdlStruct, typename="CarbonNodeMeasureReplyImpl"):
    """A measure host's reply (field order = ``idl/carbon_node_pool.idl``)."""

    request_id: str = ""
    key("request_id")
    host_id: str = ""
    key("host_id")
    status: str = "error"
    message: str = ""
    measurement: str = ""
    queued_s: float64 = 0.0


def pool_qos() -> Qos:
    """Every pool endpoint: RELIABLE, TRANSIENT_LOCAL, KEEP_LAST 1 per instance, bounded instances, XCDR1."""
    return Qos(
        Policy.Reliability.Reliable(max_blocking_time=duration(milliseconds=100)),
        Policy.Durability.TransientLocal,
        Policy.History.KeepLast(depth=1),
        Policy.ResourceLimits(max_samples=MAX_POOL_INSTANCES, max_instances=MAX_POOL_INSTANCES, max_samples_per_instance=1),
        Policy.DataRepresentation(use_cdrv0_representation=True),
    )


# -- Measurement <-> JSON --------------------------------------------------------------------------


def measurement_to_json(measurement: Measurement) -> str:
    """``measurement`` as a JSON object, one member per field (tuples as arrays)."""
    return json.dumps(dataclasses.asdict(measurement), sort_keys=True)


def _convert(value: Any, annotation: Any, where: str) -> Any:
    """``value`` (decoded JSON) checked against ``annotation`` and converted (lists to tuples); ValueError otherwise."""
    origin = typing.get_origin(annotation)
    if annotation is str:
        if isinstance(value, str):
            return value
    elif annotation is bool:
        if isinstance(value, bool):
            return value
    elif annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif origin is Literal:
        if any(value == choice and type(value) is type(choice) for choice in typing.get_args(annotation)):
            return value
    elif origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        for option in (o for o in options if o is not type(None)):
            try:
                return _convert(value, option, where)
            except ValueError:
                continue
    elif origin is tuple:
        args = typing.get_args(annotation)
        if isinstance(value, list) and len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(item, args[0], f"{where}[]") for item in value)
    elif origin is dict:
        _, value_type = typing.get_args(annotation)
        if isinstance(value, dict):
            return {str(k): _convert(v, value_type, f"{where}.{k}") for k, v in value.items()}
    elif dataclasses.is_dataclass(annotation) and isinstance(annotation, type):
        if isinstance(value, dict):
            return _dataclass_from(annotation, value, where)
    else:
        raise ValueError(f"{where}: no JSON form for {annotation!r}")
    raise ValueError(f"{where}: {type(value).__name__} {str(value)[:80]!r} is not a {annotation}")


def _dataclass_from(cls: type[Any], data: dict[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for spec in dataclasses.fields(cls):
        if spec.name in data:
            values[spec.name] = _convert(data[spec.name], hints[spec.name], f"{where}.{spec.name}")
        elif spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
            raise ValueError(f"{where}: {spec.name} is missing")
    return cls(**values)


def measurement_from_json(text: str) -> Measurement:
    """The :class:`Measurement` a reply's ``measurement`` member holds; ``ValueError`` when it holds none
    (not JSON, not an object, a required field missing, a field of the wrong type, a negative or
    non-finite energy or window)."""
    if len(text) > MAX_MEASUREMENT_JSON_CHARS:
        raise ValueError(f"measurement is {len(text)} characters, over the limit of {MAX_MEASUREMENT_JSON_CHARS}")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"measurement is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"measurement is JSON {type(data).__name__}, expected an object")
    try:
        measurement: Measurement = _dataclass_from(Measurement, data, "measurement")
    except (TypeError, RecursionError) as exc:  # a dataclass's own checks; hostile nesting
        raise ValueError(f"measurement: {exc}") from None
    for name in ("energy_kwh", "window_s"):
        number = getattr(measurement, name)
        if not math.isfinite(number) or number < 0:
            raise ValueError(f"measurement.{name} is {number!r}; expected a finite number >= 0")
    if measurement.forward_passes < 0:
        raise ValueError(f"measurement.forward_passes is {measurement.forward_passes}; expected >= 0")
    return measurement
