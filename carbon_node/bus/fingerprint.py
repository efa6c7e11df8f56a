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


def _feed(update: Any, value: Any) -> None:
    """Feed ``value``'s tagged encoding to the hash ``update`` function."""
    if isinstance(value, bool):
        update(b"b1" if value else b"b0")
    elif isinstance(value, enum.Enum):
        _feed(update, value.value)
    elif isinstance(value, int):
        text = str(value).encode()
        update(b"i%d:" % len(text) + text)
    elif isinstance(value, float):
        update(b"f" + struct.pack("<d", value))
    elif isinstance(value, str):
        data = value.encode("utf-8", "surrogatepass")
        update(b"s%d:" % len(data) + data)
    elif isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        update(b"o%d:" % len(data) + data)
    elif isinstance(value, (list, tuple)):
        try:
            octets = bytes(value)  # an octet sequence: one C call instead of one per element
        except (TypeError, ValueError):
            update(b"l%d:" % len(value))
            for item in value:
                _feed(update, item)
        else:
            update(b"o%d:" % len(octets) + octets)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        _feed_fields(update, value)
    else:
        text = repr(value).encode("utf-8", "surrogatepass")
        update(b"r%d:" % len(text) + text)


def _feed_fields(update: Any, sample: Any) -> None:
    for spec in dataclasses.fields(sample):
        if spec.name == "task_id":
            continue
        name = spec.name.encode()
        update(b"n%d:" % len(name) + name)
        _feed(update, getattr(sample, spec.name))


def input_digest(sample: Any) -> bytes:
    """16 bytes naming the content of one input sample (``task_id`` excluded); ``None`` is all zeros."""
    if sample is None:
        return _MISSING
    digest = hashlib.blake2b(digest_size=_DIGEST_BYTES)
    digest.update(type(sample).__name__.encode() + b"|")
    _feed_fields(digest.update, sample)
    return digest.digest()


def inputs_fingerprint(inputs: TaskInputs) -> str:
    """The fingerprint of a task's inputs as stored in the journal: ``v1:`` and 32 hex digits per input."""
    parts = (input_digest(inputs.ml_model), input_digest(inputs.hw), input_digest(inputs.user_input))
    return digests_fingerprint(parts)


def digests_fingerprint(digests: tuple[bytes, bytes, bytes]) -> str:
    """:func:`inputs_fingerprint` from the three :func:`input_digest` values (ML model, HW, user input)."""
    return f"{FINGERPRINT_VERSION}:" + b"".join(digests).hex()
