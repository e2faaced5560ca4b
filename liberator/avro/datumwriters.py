"""Datums -> Avro bytes as fastavro writes them, for values that are not of the class a fast path expects.

The generated row encoders (`liberator.avro.rowcode`) encode the classes drivers hand over inline. Any
other non-null value first goes through the column's `DatumConverter` converter (which accepts the other
spellings or raises), and its datum is written here. Each writer mirrors fastavro's algorithm for that
Avro type (its pure-Python `_logical_writers_py` shows them) on the datums the converters make; anything
else raises, and the row encoder then falls back to DatumConverter + fastavro for the whole row, so a
surprise costs speed, never bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

from liberator.avro.binary import (
    DAYS_SHIFT,
    EPOCH,
    NON_NULL,
    NULL,
    bytes_bytes,
    length_bytes,
    long_bytes,
    micros_since_epoch,
    pack_double,
    pack_float,
    string_bytes,
    unscaled_bytes,
)
from liberator.avro.schemas import UINT64_PRECISION, avro_decimal, enum_is_avro
from liberator.schema import (
    ArrayType,
    BitsType,
    BoolType,
    BytesType,
    ColumnType,
    DateType,
    DecimalType,
    DurationType,
    EnumType,
    FloatType,
    IntervalType,
    IntType,
    JsonType,
    SetType,
    StringType,
    TextRepr,
    TimestampType,
    TimeType,
    UuidType,
)

DatumWriter = Callable[[Any], bytes]


def decimal_writer(precision: int, scale: int) -> DatumWriter:
    """bytes/decimal: fastavro's prepare_bytes_decimal (digits, then scaled up to the schema's scale)."""

    def write(datum: Any) -> bytes:
        if not isinstance(datum, Decimal):
            raise TypeError(f"{datum!r} is not a Decimal")
        sign, digits, exp = datum.as_tuple()
        if not isinstance(exp, int) or len(digits) > precision or exp + scale < 0:
            raise ValueError(f"{datum!r} does not fit decimal({precision}, {scale})")
        unscaled = 0
        for digit in digits:
            unscaled = unscaled * 10 + digit
        unscaled *= 10 ** (exp + scale)
        return unscaled_bytes(-unscaled if sign else unscaled)

    return write


def write_boolean(datum: Any) -> bytes:
    if datum.__class__ is not bool:
        raise TypeError(f"{datum!r} is not a bool")
    return b"\x01" if datum else b"\x00"


def write_date(datum: Any) -> bytes:
    if not isinstance(datum, date):
        raise TypeError(f"{datum!r} is not a date")
    return long_bytes(datum.toordinal() - DAYS_SHIFT)


def write_time_micros(datum: Any) -> bytes:
    if isinstance(datum, time):  # fastavro ignores a tzinfo here, and so do we
        return long_bytes(
            datum.hour * 3_600_000_000 + datum.minute * 60_000_000 + datum.second * 1_000_000 + datum.microsecond
        )
    return long_bytes(datum)


def write_timestamp_micros(datum: Any) -> bytes:
    # DatumConverter makes every timestamp aware; fastavro would read a naive one in the local zone.
    if not isinstance(datum, datetime) or datum.tzinfo is None:
        raise TypeError(f"{datum!r} is not an aware datetime")
    return long_bytes(micros_since_epoch(datum - EPOCH))


def write_interval(datum: Any) -> bytes:
    return long_bytes(datum["months"]) + long_bytes(datum["days"]) + long_bytes(datum["micros"])


def enum_writer(symbols: tuple[str, ...]) -> DatumWriter:
    indexes = {symbol: long_bytes(i) for i, symbol in enumerate(symbols)}

    def write(datum: Any) -> bytes:
        return indexes[datum]

    return write


def array_writer(item: DatumWriter, item_nullable: bool) -> DatumWriter:
    """One block of all items, then the empty block (fastavro writes an empty array as the end alone)."""

    def write(datum: Any) -> bytes:
        if not isinstance(datum, list | tuple):
            raise TypeError(f"{datum!r} is not a list")
        if not datum:
            return NULL
        parts = [length_bytes(len(datum))]
        if item_nullable:
            parts.extend(NULL if d is None else NON_NULL + item(d) for d in datum)
        else:
            parts.extend(item(d) for d in datum)
        parts.append(NULL)
        return b"".join(parts)

    return write


def datum_writer(ctype: ColumnType) -> DatumWriter:
    """The writer of one non-null datum of a column of `ctype` (the Avro type `schemas` gives it)."""
    match ctype:
        case IntType(bits=bits, unsigned=True) if bits >= 64:
            return decimal_writer(UINT64_PRECISION, 0)
        case IntType() | DurationType():
            return long_bytes
        case FloatType(bits=bits):
            return pack_float if bits <= 32 else pack_double
        case DecimalType(precision=int() as precision, scale=scale):
            return decimal_writer(*avro_decimal(precision, scale))
        case BoolType():
            return write_boolean
        case BytesType():
            return bytes_bytes
        case DateType():
            return write_date
        case TimeType(with_timezone=False):
            return write_time_micros
        case TimestampType():
            return write_timestamp_micros
        case EnumType(symbols=symbols) as enum if enum_is_avro(enum):
            return enum_writer(symbols)
        case SetType():
            return array_writer(string_bytes, False)
        case IntervalType():
            return write_interval
        case ArrayType(item=item, item_nullable=item_nullable):
            return array_writer(datum_writer(item), item_nullable)
        case (
            DecimalType()  # unconstrained: its text
            | StringType()
            | TimeType()  # with time zone: ISO text
            | UuidType()
            | JsonType()
            | EnumType()  # kept as a string
            | BitsType()
            | TextRepr()
        ):
            return string_bytes
    raise TypeError(f"no datum writer for {ctype!r}")  # pragma: no cover - exhaustive
