"""Per-type value converters: a driver's Python value -> the Avro datum fastavro encodes exactly.

Each factory returns `(exact, convert)`: a value whose class is exactly `exact` is already a valid datum
and is used as is (the hot path: no call at all); anything else goes through `convert`, which accepts the
other spellings drivers use (memoryview for bytes, int for bool, str for SQLite dates...) or raises
`ConversionError` with the reason. `DatumConverter` adds the table and column to the message.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping, MutableSequence
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from liberator.avro.pgtext import is_range, parse_pg_array, parse_pg_interval, pg_range_text
from liberator.avro.reasons import ConversionError, describe
from liberator.avro.schemas import avro_decimal
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

Convert = Callable[[Any], Any]


class _Never:
    """An `exact` class no value has: the converter always runs (range and scale checks)."""


def _wrong_type(value: Any, expected: str) -> ConversionError:
    return ConversionError(f"{describe(value)} is not {expected}")


def int_converter(bits: int, unsigned: bool) -> tuple[type, Convert]:
    lo, hi = (0, 2**bits - 1) if unsigned else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    label = f"{'unsigned ' if unsigned else ''}{bits}-bit integer"
    as_decimal = unsigned and bits >= 64  # Avro long cannot hold it: bytes decimal(20,0)

    def convert(value: Any) -> Any:
        if not isinstance(value, int):
            raise _wrong_type(value, "an integer")
        if not lo <= value <= hi:
            raise ConversionError(f"{describe(value)} is out of range for a {label}")
        return Decimal(int(value)) if as_decimal else int(value)

    return _Never, convert


def float_converter() -> tuple[type, Convert]:
    def convert(value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _wrong_type(value, "a floating-point number")
        result = float(value)
        if isinstance(value, int) and int(result) != value:
            raise ConversionError(f"{describe(value)} cannot be held exactly by a floating-point number")
        return result

    return float, convert


def _as_decimal(value: Any) -> Decimal:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    if isinstance(value, float):
        # SQLite stores NUMERIC values with a fraction as REAL: its shortest repr is the stored value.
        return Decimal(repr(value))
    raise _wrong_type(value, "a decimal number")


def decimal_converter(precision: int, scale: int | None, label: str) -> tuple[type, Convert]:
    p, s = avro_decimal(precision, scale)
    max_int_digits = p - s

    def convert(value: Any) -> Any:
        number = _as_decimal(value)
        sign, digits, exp = number.as_tuple()
        if not isinstance(exp, int):
            raise ConversionError(f"{describe(value)} cannot be held by {label} (only finite numbers)")
        extra = -exp - s
        if extra > 0:
            # More places than the column has: fine only when they are zeros (1.500 in DECIMAL(10,2)).
            if any(digits[-extra:]):
                raise ConversionError(f"{describe(value)} has more than {s} digits after the point of {label}")
            digits, exp = digits[:-extra] or (0,), -s
            number = Decimal((sign, digits, exp))
        if digits != (0,) and len(digits) + exp > max_int_digits:
            raise ConversionError(f"{describe(value)} is out of range for {label}")
        return number

    return _Never, convert


def decimal_string_converter() -> tuple[type, Convert]:
    def convert(value: Any) -> Any:
        # Plain notation keeping the stored scale ("1.50", never "1.5E+0"); NaN, Infinity, -Infinity as such.
        return format(_as_decimal(value), "f")

    return _Never, convert


def bool_converter() -> tuple[type, Convert]:
    def convert(value: Any) -> Any:
        if isinstance(value, int) and value in (0, 1):  # SQLite and MySQL store booleans as 0/1
            return bool(value)
        raise _wrong_type(value, "a boolean")

    return bool, convert


def string_converter() -> tuple[type, Convert]:
    def convert(value: Any) -> Any:
        if isinstance(value, str):
            return str(value)
        raise _wrong_type(value, "a string")

    return str, convert


def bytes_converter() -> tuple[type, Convert]:
    def convert(value: Any) -> Any:
        if isinstance(value, bytes | bytearray | memoryview):
            return bytes(value)
        raise _wrong_type(value, "bytes")

    return bytes, convert


def date_converter() -> tuple[type, Convert]:
    def convert(value: Any) -> Any:
        if isinstance(value, datetime):
            if value.time() != time(0) or value.tzinfo is not None:
                raise ConversionError(f"{describe(value)} is not a date (it has a time of day)")
            return value.date()
        if isinstance(value, date):
            return date(value.year, value.month, value.day)
        if isinstance(value, str):  # SQLite keeps dates as ISO text
            try:
                return date.fromisoformat(value)
            except ValueError:
                raise ConversionError(f"{describe(value)} is not a date") from None
        raise _wrong_type(value, "a date")

    return date, convert


def timestamp_converter() -> tuple[type, Convert]:
    def convert(value: Any) -> Any:
        if isinstance(value, str):  # SQLite keeps timestamps as ISO text
            try:
                value = datetime.fromisoformat(value)
            except ValueError:
                raise ConversionError(f"{describe(value)} is not a timestamp") from None
        if not isinstance(value, datetime):
            raise _wrong_type(value, "a timestamp")
        # fastavro would read a naive datetime in the process's local zone: pin it to UTC (documented rule).
        # An aware one is left as is: fastavro encodes the instant as micros since the epoch, in UTC.
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value

    return _Never, convert


def micros_of(delta: timedelta) -> int:
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1


def duration_converter() -> tuple[type, Convert]:
    """MySQL TIME (a timedelta from both drivers) -> signed microseconds."""

    def convert(value: Any) -> Any:
        if isinstance(value, timedelta):
            micros = micros_of(value)
        elif isinstance(value, int) and not isinstance(value, bool):
            micros = int(value)
        else:
            raise _wrong_type(value, "a duration")
        if not _LONG_MIN <= micros <= _LONG_MAX:
            raise ConversionError(f"{describe(value)} is out of range for a duration in microseconds")
        return micros

    return _Never, convert


def time_converter() -> tuple[type, Convert]:
    def convert(value: Any) -> Any:
        if isinstance(value, timedelta):  # a time of day some driver returns as the span since midnight
            micros = micros_of(value)
            if not 0 <= micros < 86_400_000_000:
                # time-micros readers (fastavro, Java's LocalTime) reject such values: refuse to write them
                raise ConversionError(f"{describe(value)} is not a time of day (00:00:00 to 23:59:59.999999)")
            return micros
        if isinstance(value, str):
            try:
                value = time.fromisoformat(value)
            except ValueError:
                raise ConversionError(f"{describe(value)} is not a time of day") from None
        if isinstance(value, time) and value.tzinfo is None:
            return (value.hour * 3600 + value.minute * 60 + value.second) * 1_000_000 + value.microsecond
        raise _wrong_type(value, "a time of day without time zone")

    return time, convert  # fastavro encodes a naive time itself


def timetz_converter() -> tuple[type, Convert]:
    def convert(value: Any) -> Any:
        if isinstance(value, time):
            return value.isoformat()  # e.g. "12:30:00.250000+02:00"
        if isinstance(value, str):
            return value
        raise _wrong_type(value, "a time of day")

    return _Never, convert


def uuid_converter() -> tuple[type, Convert]:
    def convert(value: Any) -> Any:
        try:
            if isinstance(value, uuid.UUID):
                return str(value)
            if isinstance(value, str):
                return str(uuid.UUID(value))  # validates, and normalises to the lower-case hyphenated form
            if isinstance(value, bytes) and len(value) == 16:
                return str(uuid.UUID(bytes=value))
        except ValueError:
            raise ConversionError(f"{describe(value)} is not a UUID") from None
        raise _wrong_type(value, "a UUID")

    return _Never, convert


def json_converter() -> tuple[type, Convert]:
    def convert(value: Any) -> Any:
        if isinstance(value, bytes | bytearray | memoryview):
            return bytes(value).decode("utf-8")
        try:
            return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ConversionError(f"{describe(value)} is not JSON: {exc}") from None

    # A str is JSON text (pymysql, psycopg loading json as text) and passes through untouched. psycopg's
    # default loader decodes JSON, so a top-level JSON *string* would arrive as a bare str, mistaken for
    # text: PostgreSQL sources load json/jsonb as text to stay exact.
    return str, convert


def enum_converter(enum: EnumType) -> tuple[type, Convert]:
    allowed = frozenset(enum.symbols)

    def convert(value: Any) -> Any:
        if isinstance(value, str) and value in allowed:
            return str(value)
        raise ConversionError(f"{describe(value)} is not one of the enum's values {list(enum.symbols)}")

    return _Never, convert


def set_converter(members: tuple[str, ...]) -> tuple[type, Convert]:
    order = {m: i for i, m in enumerate(members)}

    def convert(value: Any) -> Any:
        if isinstance(value, str):  # pymysql: "a,b"; members cannot contain commas
            items: Any = value.split(",") if value else ()
        elif isinstance(value, set | frozenset | list | tuple):
            items = value
        else:
            raise _wrong_type(value, "a set of members")
        unknown = [i for i in items if i not in order]
        if unknown:
            raise ConversionError(f"{describe(value)} has members {unknown} not in {list(members)}")
        return sorted(set(items), key=order.__getitem__)  # the set's own member order: stable output

    return _Never, convert


def bits_converter(length: int, varying: bool) -> tuple[type, Convert]:
    def convert(value: Any) -> Any:
        if isinstance(value, bytes | bytearray | memoryview):  # MySQL BIT(n) as raw bytes
            value = int.from_bytes(value, "big")
        if isinstance(value, int) and not isinstance(value, bool):
            if value < 0 or (length and value.bit_length() > length):
                raise ConversionError(f"{describe(value)} does not fit {length} bits")
            return format(value, f"0{length}b") if not varying else format(value, "b")
        if isinstance(value, str) and not value.strip("01"):
            if (len(value) != length and not varying) or (varying and length and len(value) > length):
                raise ConversionError(f"{describe(value)} does not have {length} bits")
            return str(value)
        raise _wrong_type(value, "a bit string")

    return _Never, convert


_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)


def interval_converter() -> tuple[type, Convert]:
    def convert(value: Any) -> Any:
        if isinstance(value, timedelta):
            # psycopg's default loader: months already folded into 30-day days; nothing better is left.
            result = {
                "months": 0,
                "days": value.days,
                "micros": value.seconds * 1_000_000 + value.microseconds,
            }
        elif isinstance(value, str):
            result = parse_pg_interval(value)
        elif isinstance(value, Mapping):
            missing = [k for k in ("months", "days", "micros") if k not in value]
            if missing:
                raise ConversionError(f"{describe(value)} has no {', '.join(missing)}")
            result = {k: value[k] for k in ("months", "days", "micros")}
        elif isinstance(value, tuple) and len(value) == 3:
            result = dict(zip(("months", "days", "micros"), value, strict=True))
        else:
            raise _wrong_type(value, "an interval")
        for key, (lo, hi) in (("months", _INT32), ("days", _INT32), ("micros", _INT64)):
            part = result[key]
            if not isinstance(part, int) or not lo <= part <= hi:
                raise ConversionError(f"{describe(value)} has {key} out of range")
        return result

    return _Never, convert


def text_converter() -> tuple[type, Convert]:
    def convert(value: Any) -> Any:
        if is_range(value) or (isinstance(value, MutableSequence) and all(is_range(r) for r in value)):
            return pg_range_text(value)
        return str(value)  # psycopg's ipaddress objects for inet/cidr print as PostgreSQL does

    return str, convert


def array_converter(item: ColumnType, item_nullable: bool, label: str) -> tuple[type, Convert]:
    exact, convert_item = converter_for(item, label)
    nested = isinstance(item, ArrayType)

    def convert(value: Any) -> Any:
        if isinstance(value, str):  # arrays of types psycopg has no loader for (enums) come as literals
            value = parse_pg_array(value)
        elif not isinstance(value, list | tuple):
            raise _wrong_type(value, "an array")
        out: list[Any] = []
        for element in value:
            if element is None:
                if not item_nullable:
                    raise ConversionError(f"{describe(value)} has a null element")
                out.append(None)
            elif element.__class__ is exact:
                out.append(element)
            elif nested or not isinstance(element, list | tuple):
                out.append(convert_item(element))
            else:
                raise ConversionError(f"{describe(value)} is multi-dimensional; cast it in a `query:`")
        return out

    return _Never, convert


def converter_for(ctype: ColumnType, label: str) -> tuple[type, Convert]:
    """(exact, convert) for a neutral type; `label` (the database type) names it in errors."""
    match ctype:
        case IntType(bits=bits, unsigned=unsigned):
            return int_converter(bits, unsigned)
        case FloatType():
            return float_converter()
        case DecimalType(precision=None):
            return decimal_string_converter()
        case DecimalType(precision=int() as precision, scale=scale):
            return decimal_converter(precision, scale, label or f"DECIMAL({precision},{scale or 0})")
        case BoolType():
            return bool_converter()
        case StringType():
            return string_converter()
        case BytesType():
            return bytes_converter()
        case DateType():
            return date_converter()
        case TimeType(with_timezone=True):
            return timetz_converter()
        case TimeType():
            return time_converter()
        case DurationType():
            return duration_converter()
        case TimestampType():
            return timestamp_converter()
        case UuidType():
            return uuid_converter()
        case JsonType():
            return json_converter()
        case EnumType() as enum:  # an Avro enum and an enum kept as string both take the symbol text
            return enum_converter(enum)
        case SetType(members=members):
            return set_converter(members)
        case BitsType(length=length, varying=varying):
            return bits_converter(length, varying)
        case IntervalType():
            return interval_converter()
        case ArrayType(item=item, item_nullable=item_nullable):
            return array_converter(item, item_nullable, label)
        case TextRepr():
            return text_converter()
    raise TypeError(f"no converter for {ctype!r}")  # pragma: no cover - exhaustive
