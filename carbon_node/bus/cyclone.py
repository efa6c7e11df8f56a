"""Cyclone DDS set-up for talking to the Fast DDS based SustainML stack (PROTOCOL.md 3.5).

Two things make a Cyclone participant interoperate with Fast DDS 3: the participant's entity name
(the orchestrator finds nodes by it) and ``Compatibility/IgnoreTypeInformation = 1.15`` in the Cyclone
configuration (without it Cyclone rejects Fast DDS's type objects and never matches). Cyclone reads its
configuration from ``CYCLONEDDS_URI`` when a domain's first participant is created, and that variable
accepts a comma-separated list of files and XML fragments, so the node appends its own fragment to
whatever the user configured instead of replacing it.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Mapping, MutableMapping
from typing import Any

import structlog
from cyclonedds._clayer import ddspy_take, ddspy_unregister_instance, ddspy_write
from cyclonedds.core import DDSException, Entity, InstanceState, Policy, Qos, SampleState, ViewState
from cyclonedds.domain import DomainParticipant
from cyclonedds.pub import DataWriter
from cyclonedds.sub import DataReader

from carbon_node.bus.codec import decoder_for
from carbon_node.core import CarbonNodeError

__all__ = [
    "CYCLONE_URI_ENV",
    "DOMAIN_ID_ENV",
    "IGNORE_TYPE_INFORMATION_XML",
    "NODE_NAME",
    "BusError",
    "configure_cyclone",
    "create_participant",
    "delete_entity",
    "domain_id_from_env",
    "encode_output",
    "encode_output_key",
    "merge_cyclone_uri",
    "serialize_for",
    "take_samples",
    "unregister_serialized",
    "write_serialized",
]

log = structlog.get_logger(__name__)

NODE_NAME = "CARBON_FOOTPRINT_NODE"
"""SPDP entity name of the carbon node; the orchestrator maps it to node id 1."""

ORCHESTRATOR_NAME = "ORCHESTRATOR_NODE"

CYCLONE_URI_ENV = "CYCLONEDDS_URI"
DOMAIN_ID_ENV = "SUSTAINML_DOMAIN_ID"

IGNORE_TYPE_INFORMATION_XML = (
    '<CycloneDDS><Domain Id="any"><Compatibility><IgnoreTypeInformation>1.15'
    "</IgnoreTypeInformation></Compatibility></Domain></CycloneDDS>"
)
"""Match eProsima (vendor 1.15) endpoints by type name instead of by their type objects."""


class BusError(CarbonNodeError):
    """The DDS bus could not be set up or used (participant creation, start-up timeout, ...)."""


def merge_cyclone_uri(user_uri: str | None) -> str:
    """The ``CYCLONEDDS_URI`` value to use: the user's files/fragments kept in front, ours appended once."""
    user = (user_uri or "").strip().strip(",")
    if IGNORE_TYPE_INFORMATION_XML in user:
        return user
    if not user:
        return IGNORE_TYPE_INFORMATION_XML
    return f"{user},{IGNORE_TYPE_INFORMATION_XML}"


def configure_cyclone(environ: MutableMapping[str, str] | None = None) -> str:
    """Set ``CYCLONEDDS_URI`` in ``environ`` (default: this process) to the merged value and return it.

    Idempotent. Must run before the first participant of a domain is created in this process, since
    Cyclone reads the configuration once per domain.
    """
    env = os.environ if environ is None else environ
    merged = merge_cyclone_uri(env.get(CYCLONE_URI_ENV))
    # No log line here: it runs before a program has configured its logs (structlog's default then prints
    # every level), so it was the debug line that printed when the package was first used.
    if env.get(CYCLONE_URI_ENV) != merged:
        env[CYCLONE_URI_ENV] = merged
    return merged


def domain_id_from_env(environ: Mapping[str, str] | None = None, default: int = 0) -> int:
    """``SUSTAINML_DOMAIN_ID`` (empty or unset: ``default``); raises :class:`BusError` naming the variable
    when it is not an integer from 0 to 232, instead of upstream's silent fallback to the default."""
    env = os.environ if environ is None else environ
    raw = env.get(DOMAIN_ID_ENV, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if not 0 <= value <= 232:
        raise BusError(f"invalid {DOMAIN_ID_ENV}={raw!r}: expected a DDS domain id from 0 to 232")
    return value


def create_participant(domain_id: int, name: str = NODE_NAME) -> DomainParticipant:
    """A participant announcing ``name`` as its entity name, on the interoperable Cyclone configuration."""
    configure_cyclone()
    try:
        return DomainParticipant(domain_id, qos=Qos(Policy.EntityName(name)))
    except Exception as exc:  # cyclonedds raises DDSException for bad XML, bad domain ids, no interface
        raise BusError(f"cannot create DDS participant {name} on domain {domain_id}: {exc}") from exc


def delete_entity(entity: Entity | None) -> None:
    """Delete a DDS entity (and its children) now instead of at garbage collection.

    The Python binding only deletes from ``__del__``; calling it explicitly is its supported path and
    is a no-op the second time.
    """
    if entity is not None:
        entity.__del__()


def take_samples(reader: DataReader, n: int) -> list[Any]:
    """Take up to ``n`` samples from ``reader`` and return those with valid data, decoding each one on
    its own, each with its ``sample_info``.

    ``DataReader.take`` decodes a whole batch and raises on the first sample that does not decode (a
    string field that is not UTF-8, for one): the samples it had already taken off the reader are then
    lost. Here an undecodable sample is logged and dropped, and the rest of the batch is kept. Dispose
    and unregister notices (no valid data) are skipped. The task inputs are decoded by
    :func:`carbon_node.bus.codec.decoder_for` (fast, the binding's decoder as fallback).
    """
    result = ddspy_take(reader._ref, SampleState.Any | ViewState.Any | InstanceState.Any, n)
    if isinstance(result, int):
        raise DDSException(result, f"Occurred while taking data in {reader!r}")
    data_type = reader.topic.data_type
    decode = decoder_for(data_type)
    samples: list[Any] = []
    for data, info in result:
        if not info.valid_data:
            continue
        try:
            sample = decode(data)
        except Exception as exc:  # a peer's bytes: never let them stop the reader
            log.warning(
                "undecodable_sample_dropped",
                topic=reader.topic.name,
                instance_handle=info.instance_handle,
                error=f"{type(exc).__name__}: {exc}"[:300],
            )
            continue
        sample.sample_info = info
        samples.append(sample)
    return samples


# -- pre-serialized writes --------------------------------------------------------------------------
#
# ``DataWriter.write`` serializes each sample with the binding's generic IDL machinery (tens of
# microseconds in Python). The node writes the same few status samples over and over and one output
# of a fixed, FINAL layout per task, so it serializes statuses once and encodes outputs directly; the
# bytes are handed to the same C call ``DataWriter.write`` ends in. tests/bus checks these encoders
# against the binding's serializer.

_XCDR1_LE_HEADER = b"\x00\x01\x00\x00"
"""Encapsulation header: plain CDR (XCDR1), little endian, no options."""

_OUTPUT_HEAD = struct.Struct("<dddI")
_TASK_ID = struct.Struct("<II")


def _pad4(data: bytes) -> bytes:
    """``data`` zero-padded to a multiple of 4 bytes, as ``DataWriter.write`` does before writing."""
    extra = -len(data) % 4
    return data + b"\0" * extra if extra else data


def serialize_for(writer: DataWriter, sample: Any) -> bytes:
    """``sample`` serialized exactly as ``writer.write(sample)`` would, for :func:`write_serialized`."""
    return _pad4(sample.serialize(use_version_2=writer._use_version_2))


def write_serialized(writer: DataWriter, data: bytes) -> None:
    """Write a sample already serialized for ``writer`` (:func:`serialize_for`, :func:`encode_output`)."""
    ret = ddspy_write(writer._ref, data)
    if ret < 0:
        raise DDSException(ret, f"Occurred while writing sample in {writer!r}")


def unregister_serialized(writer: DataWriter, key: bytes) -> None:
    """Unregister the instance whose serialized key is ``key`` (:func:`encode_output_key`)."""
    ret = ddspy_unregister_instance(writer._ref, key)
    if ret < 0:
        raise DDSException(ret, f"Occurred while unregistering instance in {writer!r}")


def encode_output(
    carbon_footprint: float,
    energy_consumption: float,
    carbon_intensity: float,
    extra_data: bytes,
    problem_id: int,
    iteration_id: int,
) -> bytes:
    """A ``CO2FootprintImpl`` sample in XCDR1 (the output writer's representation), padded for writing.

    The struct is FINAL: three doubles at offsets 0, 8 and 16 of the body, the ``extra_data`` octet
    sequence (uint32 length, then the bytes), the ``task_id`` (two uint32) aligned to 4. Raises
    ``struct.error`` for a task id outside uint32, as the binding's serializer would raise.
    """
    body = _OUTPUT_HEAD.pack(carbon_footprint, energy_consumption, carbon_intensity, len(extra_data)) + extra_data
    body += b"\0" * (-len(body) % 4)
    return _XCDR1_LE_HEADER + body + _TASK_ID.pack(problem_id, iteration_id)


def encode_output_key(problem_id: int, iteration_id: int) -> bytes:
    """The serialized key of the ``CO2FootprintImpl`` instance of a task (its ``task_id``), in XCDR1."""
    return _XCDR1_LE_HEADER + _TASK_ID.pack(problem_id, iteration_id)
