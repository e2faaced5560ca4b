"""Hypothesis strategies: neutral column types and the values drivers (and careless callers) hand over.

Each type's values mix the class a driver returns, the other spellings DatumConverter accepts, the edges
(ranges, NaN, leap days, max dates, empty strings and arrays, non-ASCII), subclasses, and values it must
refuse, so a property over them checks the fast path, the converter path and the errors at once.
"""

from __future__ import annotations

import io
import ipaddress
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import fastavro
from hypothesis import strategies as st
from psycopg.types.range import Range

from liberator.avro import DatumConverter, DatumError, value_schema
from liberator.avro.schemas import avro_decimal
from liberator.schema import (
    ArrayType,
    BitsType,
    BoolType,
    BytesType,
    Column,
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
    TableSchema,
    TextRepr,
    TimestampType,
    TimeType,
    UuidType,
)

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class SubStr(str):
    pass


class SubInt(int):
    pass


JUNK = st.sampled_from([object(), [], {}, (), 1.5, "x", b"x", set(), float("nan")])
ZONES = st.one_of(
    st.builds(
        timezone, st.timedeltas(min_value=timedelta(hours=-23, minutes=-59), max_value=timedelta(hours=23, minutes=59))
    ),
    st.timezones(),
)
AVRO_NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True)
TEXT = st.one_of(st.text(max_size=12), st.text(max_size=300), st.sampled_from(["", "żółw 🐢 \x00 naïve", "\ud800"]))


def ints(bits: int, unsigned: bool) -> st.SearchStrategy[Any]:
    lo, hi = (0, 2**bits - 1) if unsigned else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    return st.one_of(
        st.integers(lo, hi),
        st.integers(-300, 300),
        st.sampled_from([lo, hi, lo - 1, hi + 1, 0, -1, INT64_MIN, INT64_MAX, 2**64 - 1, 2**64]),
        st.booleans(),
        st.builds(SubInt, st.integers(lo, hi)),
    )


def decimals(precision: int | None, scale: int | None) -> st.SearchStrategy[Any]:
    p, s = avro_decimal(precision, scale) if precision is not None else (40, 12)
    unscaled = st.one_of(
        st.integers(-(10**p) + 1, 10**p - 1),
        st.integers(-1000, 1000),
        st.sampled_from([10**p - 1, -(10**p) + 1, 10**p, 0]),
    )
    exponent = st.integers(-s - 3, 3)
    return st.one_of(
        st.builds(lambda u, e: Decimal(f"{u}E{e}"), unscaled, exponent),
        st.builds(lambda u: Decimal(u).scaleb(-s), unscaled),
        st.sampled_from(
            [Decimal("NaN"), Decimal("sNaN"), Decimal("Infinity"), Decimal("-Infinity"), Decimal("-0"), Decimal("0E-7")]
        ),
        st.integers(-(10**p), 10**p),
        st.floats(-1e6, 1e6, allow_nan=False).map(lambda f: round(f, 2)),
    )


def times(aware: bool) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.times(timezones=ZONES if aware else st.none()),
        st.times(timezones=ZONES),
        st.timedeltas(min_value=timedelta(hours=-838), max_value=timedelta(hours=838)),
        st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=1, microseconds=1)),
        st.sampled_from(["12:30:00", "25:00:00", "12:30:00.25+02:00"]),
    )


def timestamps() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.datetimes(),
        st.datetimes(timezones=ZONES),
        st.datetimes(min_value=datetime(1969, 12, 31), max_value=datetime(1970, 1, 2)),
        st.sampled_from(
            [
                datetime.min,
                datetime.max,
                datetime(2024, 2, 29, 12),
                datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5))),
            ]
        ),
        st.datetimes().map(lambda d: d.isoformat(" ")),
        st.dates(),
    )


def json_values() -> st.SearchStrategy[Any]:
    scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=5))
    tree = st.recursive(
        scalars,
        lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=3), kids, max_size=3),
        max_leaves=6,
    )
    return st.one_of(TEXT, tree, st.binary(max_size=5))


def values_for(ctype: ColumnType, depth: int = 0) -> st.SearchStrategy[Any]:
    """Values of every kind for a column of `ctype` (not None; the caller adds it)."""
    match ctype:
        case IntType(bits=bits, unsigned=unsigned):
            found = ints(bits, unsigned)
        case FloatType():
            found = st.one_of(
                st.floats(),
                st.floats(width=32),
                st.integers(-(2**60), 2**60),
                st.sampled_from([1e300, -1e300, 2**53 + 1, True]),
            )
        case DecimalType(precision=precision, scale=scale):
            found = decimals(precision, scale)
        case BoolType():
            found = st.one_of(st.booleans(), st.sampled_from([0, 1, 2]))
        case StringType() | TextRepr():
            found = st.one_of(
                TEXT, st.builds(SubStr, TEXT), st.just(ipaddress.ip_interface("10.1.2.3/8")), st.just(Range(1, 5))
            )
        case BytesType():
            found = st.one_of(
                st.binary(max_size=300), st.binary(max_size=5).map(bytearray), st.binary(max_size=5).map(memoryview)
            )
        case DateType():
            found = st.one_of(
                st.dates(),
                st.sampled_from([date.min, date.max, date(2024, 2, 29), date(1970, 1, 1), "2024-02-29", "2023-02-29"]),
                st.datetimes(),
                st.dates().map(lambda d: datetime(d.year, d.month, d.day)),
            )
        case TimeType(with_timezone=aware):
            found = times(aware)
        case DurationType():
            found = st.one_of(
                st.timedeltas(min_value=-timedelta(hours=838, minutes=59, seconds=59), max_value=timedelta(hours=839)),
                st.timedeltas(),  # beyond a long at both ends
                st.integers(INT64_MIN, INT64_MAX),
                st.times(),
            )
        case TimestampType():
            found = timestamps()
        case UuidType():
            found = st.one_of(
                st.uuids(),
                st.uuids().map(str),
                st.uuids().map(lambda u: str(u).upper()),
                st.uuids().map(lambda u: "{" + u.hex + "}"),
                st.uuids().map(lambda u: u.bytes),
                st.just("not-a-uuid"),
            )
        case JsonType():
            found = json_values()
        case EnumType(symbols=symbols):
            found = st.one_of(st.sampled_from(symbols), st.builds(SubStr, st.sampled_from(symbols)), TEXT)
        case SetType(members=members):
            member = st.sampled_from(members) if members else st.just("m")
            found = st.one_of(
                st.lists(member, max_size=4),
                st.sets(member, max_size=4),
                st.lists(member, max_size=4).map(",".join),
                st.just(["not a member"]),
            )
        case BitsType(length=length):
            found = st.one_of(
                st.integers(0, 2 ** max(length, 1)),
                st.text("01", max_size=length + 1),
                st.binary(max_size=(length + 7) // 8),
            )
        case IntervalType():
            part = st.one_of(st.integers(-(2**31), 2**31 - 1), st.sampled_from([2**31, INT64_MAX, INT64_MIN]))
            found = st.one_of(
                st.timedeltas(),
                st.tuples(part, part, st.integers(INT64_MIN, INT64_MAX)),
                st.builds(lambda m, d, u: {"months": m, "days": d, "micros": u}, part, part, part),
                st.sampled_from(["1 year 2 mons -3 days +04:05:06.789", "-00:00:00.000001", "soon"]),
            )
        case ArrayType(item=item, item_nullable=item_nullable):
            items = (
                st.one_of(values_for(item, depth + 1), st.none())
                if item_nullable or depth == 0
                else values_for(item, depth + 1)
            )
            found = st.one_of(
                st.lists(items, max_size=4),
                st.lists(items, max_size=3).map(tuple),
                st.sampled_from(["{}", "{1,NULL}", '{a,"b c"}']),
            )
        case _:
            raise AssertionError(ctype)
    return st.integers(0, 9).flatmap(lambda i: JUNK if i == 0 else found) if depth == 0 else found


def enum_types() -> st.SearchStrategy[EnumType]:
    symbols = st.lists(st.one_of(AVRO_NAMES, st.text(max_size=4)), min_size=1, max_size=4, unique=True).map(tuple)
    return st.builds(EnumType, symbols, st.one_of(st.none(), AVRO_NAMES))


SCALAR_TYPES: st.SearchStrategy[ColumnType] = st.one_of(
    st.builds(IntType, st.sampled_from([8, 16, 24, 32, 64]), st.booleans()),
    st.builds(FloatType, st.sampled_from([32, 64])),
    st.builds(DecimalType, st.integers(1, 40), st.integers(-3, 42)),
    st.builds(DecimalType, st.integers(1, 12), st.integers(0, 4)),
    st.just(DecimalType(None, None)),
    st.just(BoolType()),
    st.just(StringType()),
    st.just(BytesType()),
    st.just(DateType()),
    st.just(TimeType()),
    st.just(TimeType(with_timezone=True)),
    st.just(DurationType()),
    st.just(TimestampType()),
    st.just(TimestampType(with_timezone=True)),
    st.just(UuidType()),
    st.just(JsonType()),
    enum_types(),
    st.builds(SetType, st.lists(st.from_regex(r"[a-z ]{1,4}", fullmatch=True), max_size=4, unique=True).map(tuple)),
    st.builds(BitsType, st.integers(0, 70), st.booleans()),
    st.just(IntervalType()),
    st.just(TextRepr("inet")),
)

COLUMN_TYPES: st.SearchStrategy[ColumnType] = st.one_of(
    SCALAR_TYPES,
    st.builds(ArrayType, SCALAR_TYPES, st.booleans()),
    st.builds(
        ArrayType,
        st.builds(ArrayType, st.sampled_from([IntType(16), StringType(), DateType()]), st.booleans()),
        st.booleans(),
    ),
)


def encodable(column: Column, value: Any) -> bool:
    """Whether DatumConverter and fastavro take `value` for `column`."""
    table = TableSchema(None, "t", (column,), ())
    try:
        datum = DatumConverter(table).convert_values([value])
        fastavro.schemaless_writer(io.BytesIO(), fastavro.parse_schema(value_schema(table, "")), datum)
    except (DatumError, ValueError, TypeError, OverflowError):
        return False
    return True


@st.composite
def tables_and_rows(
    draw: st.DrawFn, max_columns: int = 5, rows: int = 3, valid: bool = False
) -> tuple[TableSchema, list[list[Any]]]:
    """A table of random columns (names include ones Avro must rename) and rows of values for it;
    `valid`: only values DatumConverter and fastavro take."""
    count = draw(st.integers(1, max_columns))
    columns = tuple(
        Column(draw(st.sampled_from([f"c{i}", f"{i} col", f"c-{i}"])), draw(COLUMN_TYPES), draw(st.booleans()), "t")
        for i in range(count)
    )
    key = tuple(c.name for c in columns[: draw(st.integers(0, count))])
    table = TableSchema("s", "t", columns, key)

    def value(column: Column) -> Any:
        if draw(st.integers(0, 4)) == 0 and (column.nullable or not valid):
            return None
        values = values_for(column.type)
        return draw(values.filter(lambda v: encodable(column, v)) if valid else values)

    value_rows = [[value(c) for c in columns] for _ in range(rows)]
    return table, value_rows
