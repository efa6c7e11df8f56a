"""Fast decoding of the three task inputs from their XCDR1 bytes (PROTOCOL.md 2.3), for the bus thread.

The Python DDS binding decodes a sample through its generic IDL machinery: a chain of Python calls
per member, some 40-70 microseconds per input sample on a small CPU, three samples per task. The
input types are FINAL structs of a fixed member list, so each is decoded here by one loop over that
list with ``struct``, about ten times faster.

The binding's decoder stays the reference: a sample that is not plain little-endian XCDR1, or that
this decoder cannot read to its last member (truncated, a string without its terminating NUL, an
empty string length), is handed to the binding's decoder, which decodes it or raises as before. So
a successful fast decode is the only behaviour added, and tests/bus/test_codec.py checks it against
the binding's decoder on generated samples.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from carbon_node.wire import HWResourceImpl, MLModelImpl, TaskIdImpl, UserInputImpl

__all__ = ["decoder_for", "fast_decode"]


class _NotFast(Exception):
    """The bytes are not for this decoder (the binding's decoder takes over)."""


_U32 = struct.Struct("<I").unpack_from
_I32 = struct.Struct("<i").unpack_from
_F64 = struct.Struct("<d").unpack_from
_TWO_U32 = struct.Struct("<II").unpack_from

# One reader per member kind: (bytes, offset) -> (value, offset after it). Offsets count from the
# start of the sample, header included; the header is 4 bytes, so 4-alignment is the same from the
# start of the body and only 8-alignment shifts by it.
_Reader = Callable[[bytes, int], tuple[Any, int]]


def _string(data: bytes, pos: int) -> tuple[str, int]:
    pos = (pos + 3) & ~3
    (size,) = _U32(data, pos)
    pos += 4
    end = pos + size
    if size == 0 or end > len(data) or data[end - 1] != 0:
        raise _NotFast
    return data[pos : end - 1].decode("utf-8"), end


def _octets(data: bytes, pos: int) -> tuple[list[int], int]:
    pos = (pos + 3) & ~3
    (count,) = _U32(data, pos)
    pos += 4
    if pos + count > len(data):
        raise _NotFast
    return list(data[pos : pos + count]), pos + count


def _strings(data: bytes, pos: int) -> tuple[list[str], int]:
    pos = (pos + 3) & ~3
    (count,) = _U32(data, pos)
    pos += 4
    if count > len(data) - pos:  # each string takes at least 5 bytes: no long loop on garbage
        raise _NotFast
    texts: list[str] = []
    for _ in range(count):
        text, pos = _string(data, pos)
        texts.append(text)
    return texts, pos


def _float64(data: bytes, pos: int) -> tuple[float, int]:
    pos = ((pos - 4 + 7) & ~7) + 4
    return _F64(data, pos)[0], pos + 8


def _uint32(data: bytes, pos: int) -> tuple[int, int]:
    pos = (pos + 3) & ~3
    return _U32(data, pos)[0], pos + 4


def _int32(data: bytes, pos: int) -> tuple[int, int]:
    pos = (pos + 3) & ~3
    return _I32(data, pos)[0], pos + 4


def _bool(data: bytes, pos: int) -> tuple[bool, int]:
    return data[pos] != 0, pos + 1  # IndexError past the end, like struct's "?" would raise


def _task_id(data: bytes, pos: int) -> tuple[TaskIdImpl, int]:
    pos = (pos + 3) & ~3
    problem_id, iteration_id = _TWO_U32(data, pos)
    return TaskIdImpl(problem_id, iteration_id), pos + 8


_S, _O, _SS, _D, _U, _I, _B, _T = _string, _octets, _strings, _float64, _uint32, _int32, _bool, _task_id
_LAYOUTS: dict[type[Any], tuple[_Reader, ...]] = {
    MLModelImpl: (_S, _S, _O, _S, _S, _SS, _D, _O, _T),
    HWResourceImpl: (_S, _D, _D, _D, _D, _O, _T),
    UserInputImpl: (_S, _S, _S, _SS, _SS, _U, _U, _B, _I, _B, _D, _S, _S, _O, _T),
}
"""Member readers in declaration order (carbon_node/wire.py); tests/bus/test_codec.py checks them against the types."""

_XCDR1_LE = b"\x00\x01"


def fast_decode(data_type: type[Any], data: bytes) -> Any:
    """Decode plain little-endian XCDR1 ``data`` as ``data_type`` (one of the three input types).

    Raises ``KeyError`` for another type and an exception for bytes it does not read (see the module
    docstring); :func:`decoder_for` falls back to the binding's decoder then.
    """
    layout = _LAYOUTS[data_type]
    if data[:2] != _XCDR1_LE:
        raise _NotFast
    pos = 4
    values: list[Any] = []
    for read in layout:
        value, pos = read(data, pos)
        values.append(value)
    return data_type(*values)


def decoder_for(data_type: type[Any]) -> Callable[[bytes], Any]:
    """A decoder of ``data_type`` samples: the fast one with the binding's as fallback for the three
    input types, the binding's (``data_type.deserialize``) for any other type."""
    known = _DECODERS.get(data_type)
    if known is not None:
        return known
    if data_type not in _LAYOUTS:
        return data_type.deserialize

    def decode(data: bytes) -> Any:
        try:
            return fast_decode(data_type, data)
        except Exception:  # not plain XCDR1 LE, or bytes the reference decoder must judge
            return data_type.deserialize(data)

    _DECODERS[data_type] = decode
    return decode


_DECODERS: dict[type[Any], Callable[[bytes], Any]] = {}
