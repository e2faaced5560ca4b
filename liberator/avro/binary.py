"""Avro binary primitives, written byte for byte as fastavro writes them, for the specialised encoders.

Avro ints and longs are zig-zag varints: ``(n << 1) ^ (n >> 63)``, then 7 bits per byte, low group first,
the high bit set on every byte but the last. Varints are most of the bytes of a row, so the generated
encoders (`liberator.avro.rowcode`) look the common ones up in two tables instead of looping in Python:
`SMALL[n]` is the whole varint of any already-zig-zagged ``n < 2**14``, and `LOW14[n & 16383]` the first
two bytes of a longer one (14 bits, both continuation bits set). About 1.1 MB, shared by every encoder.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
TABLE_BITS = 14
TABLE_LIMIT = 1 << TABLE_BITS  # SMALL holds the varints of 0 .. TABLE_LIMIT - 1
TABLE_MASK = TABLE_LIMIT - 1

SMALL: tuple[bytes, ...] = tuple(
    bytes([n]) if n < 0x80 else bytes([(n & 0x7F) | 0x80, n >> 7]) for n in range(TABLE_LIMIT)
)
LOW14: tuple[bytes, ...] = tuple(bytes([(n & 0x7F) | 0x80, (n >> 7) | 0x80]) for n in range(TABLE_LIMIT))

NULL = b"\x00"  # union branch 0 ("null" first in every nullable type) and the end of an array
NON_NULL = b"\x02"  # union branch 1

pack_float: Callable[[float], bytes] = struct.Struct("<f").pack  # OverflowError where fastavro writes inf
pack_double: Callable[[float], bytes] = struct.Struct("<d").pack

# fastavro's epochs: a naive value is read as UTC by DatumConverter, which is the naive epoch's arithmetic
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
EPOCH_NAIVE = datetime(1970, 1, 1)
DAYS_SHIFT = 719_163  # date(1970, 1, 1).toordinal()
MICROS_PER_DAY = 86_400_000_000


def varint(n: int) -> bytes:
    """The varint of an already zig-zagged (non-negative) value."""
    if n < 0:
        raise ValueError(f"{n} is negative: zig-zag it first")
    if n < TABLE_LIMIT:
        return SMALL[n]
    if n < 1 << 28:
        return LOW14[n & TABLE_MASK] + SMALL[n >> 14]
    if n < 1 << 42:
        return LOW14[n & TABLE_MASK] + LOW14[(n >> 14) & TABLE_MASK] + SMALL[n >> 28]
    if n < 1 << 56:
        return LOW14[n & TABLE_MASK] + LOW14[(n >> 14) & TABLE_MASK] + LOW14[(n >> 28) & TABLE_MASK] + SMALL[n >> 42]
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def long_bytes(value: int) -> bytes:
    """An Avro int or long. Like fastavro (a C long long), refuses what 64 bits cannot hold."""
    if not isinstance(value, int):
        raise TypeError(f"{value!r} is not an integer")
    if not INT64_MIN <= value <= INT64_MAX:
        raise OverflowError(f"{value} does not fit an Avro long")
    return varint((value << 1) ^ (value >> 63))


def length_bytes(size: int) -> bytes:
    """The length prefix of a string, bytes value or array block (a long, never negative)."""
    n = size << 1
    return SMALL[n] if n < TABLE_LIMIT else varint(n)


def string_bytes(text: str) -> bytes:
    if not isinstance(text, str):
        raise TypeError(f"{text!r} is not a string")
    data = text.encode()
    return length_bytes(len(data)) + data


def bytes_bytes(data: bytes) -> bytes:
    if not isinstance(data, bytes | bytearray):
        raise TypeError(f"{data!r} is not bytes")
    return length_bytes(len(data)) + data


def unscaled_bytes(unscaled: int) -> bytes:
    """A bytes-decimal body (length prefix included) from the unscaled integer.

    Big-endian two's complement sized as fastavro sizes it: from the magnitude, ``(bits + 8) // 8`` bytes,
    so -128 takes two bytes (ff 80) and 0 one (00).
    """
    magnitude = -unscaled if unscaled < 0 else unscaled
    body = unscaled.to_bytes((magnitude.bit_length() + 8) >> 3, "big", signed=True)
    return length_bytes(len(body)) + body


def micros_since_epoch(delta: timedelta) -> int:
    """fastavro's timestamp-micros of ``value - epoch`` (the same arithmetic, so the same integer)."""
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
