"""What a task was asked: a fingerprint of its three inputs' content, so that only identical inputs replay.

Upstream's orchestrator numbers tasks from 1.1 again after it restarts, so a task id alone does not
say which question was answered. :func:`input_digest` hashes every field of one input sample except
its ``task_id`` (in declaration order, each value tagged with its kind and length, so that no two
different samples encode alike); :func:`inputs_fingerprint` combines the three digests into the text
stored with each journal row. Both are linear in the size of the samples.

Octet sequences are hashed as bytes whatever their Python form (a list of ints from Cyclone or from
the upstream accessors, or ``bytes``), floats by their IEEE 754 bits (so NaN equals NaN and -0.0 is
not 0.0), enumerations by value. The encoding is versioned (``FINGERPRINT_VERSION``): a row written
under another version never matches, and its task is computed again.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import struct
from typing import Any

from carbon_node.core import TaskInputs

__all__ = ["FINGERPRINT_VERSION", "digests_fingerprint", "input_digest", "inputs_fingerprint"]

FINGERPRINT_VERSION = "v1"
_DIGEST_BYTES = 16
_MISSING = b"\x00" * _DIGEST_BYTES
_DOUBLE = struct.Struct("<d")


def _feed(out: list[bytes], value: Any) -> None:
    """Append ``value``'s tagged encoding to ``out``."""
    kind = type(value)
    if kind is str:  # the common kinds first, by exact type: the same bytes as the general case below
        data = value.encode("utf-8", "surrogatepass")
        out.append(b"s%d:" % len(data))
        out.append(data)
    elif kind is float:
        out.append(b"f" + _DOUBLE.pack(value))
    elif isinstance(value, bool):
        out.append(b"b1" if value else b"b0")
    elif isinstance(value, enum.Enum):
        _feed(out, value.value)
    elif isinstance(value, int):
        text = str(value).encode()
        out.append(b"i%d:" % len(text) + text)
    elif isinstance(value, float):
        out.append(b"f" + _DOUBLE.pack(value))
    elif isinstance(value, str):
        data = value.encode("utf-8", "surrogatepass")
        out.append(b"s%d:" % len(data) + data)
    elif isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        out.append(b"o%d:" % len(data) + data)
    elif isinstance(value, (list, tuple)):
        try:
            octets = bytes(value)  # an octet sequence: one C call instead of one per element
        except (TypeError, ValueError):
            out.append(b"l%d:" % len(value))
            for item in value:
                _feed(out, item)
        else:
            out.append(b"o%d:" % len(octets) + octets)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        _feed_fields(out, value)
    else:
        text = repr(value).encode("utf-8", "surrogatepass")
        out.append(b"r%d:" % len(text) + text)


_FIELD_TAGS: dict[type, tuple[tuple[str, bytes], ...]] = {}


def _field_tags(cls: type) -> tuple[tuple[str, bytes], ...]:
    """The fields of dataclass ``cls`` hashed (all but ``task_id``), each with its name tag; computed once."""
    tags = _FIELD_TAGS.get(cls)
    if tags is None:
        tags = tuple(
            (spec.name, b"n%d:" % len(spec.name.encode()) + spec.name.encode())
            for spec in dataclasses.fields(cls)
            if spec.name != "task_id"
        )
        _FIELD_TAGS[cls] = tags
    return tags


def _feed_fields(out: list[bytes], sample: Any) -> None:
    for name, tag in _field_tags(type(sample)):
        out.append(tag)
        _feed(out, getattr(sample, name))


def input_digest(sample: Any) -> bytes:
    """16 bytes naming the content of one input sample (``task_id`` excluded); ``None`` is all zeros.

    The encoding is collected and hashed in one call: the same digest as feeding it piece by piece.
    """
    if sample is None:
        return _MISSING
    out = [type(sample).__name__.encode() + b"|"]
    _feed_fields(out, sample)
    return hashlib.blake2b(b"".join(out), digest_size=_DIGEST_BYTES).digest()


def inputs_fingerprint(inputs: TaskInputs) -> str:
    """The fingerprint of a task's inputs as stored in the journal: ``v1:`` and 32 hex digits per input."""
    parts = (input_digest(inputs.ml_model), input_digest(inputs.hw), input_digest(inputs.user_input))
    return digests_fingerprint(parts)


def digests_fingerprint(digests: tuple[bytes, bytes, bytes]) -> str:
    """:func:`inputs_fingerprint` from the three :func:`input_digest` values (ML model, HW, user input)."""
    return f"{FINGERPRINT_VERSION}:" + b"".join(digests).hex()
