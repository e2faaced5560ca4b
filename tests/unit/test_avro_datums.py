"""Rows -> datums -> Confluent-framed Avro -> back: exact values at the extremes, and one-line errors."""

from __future__ import annotations

import ipaddress
import uuid
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from liberator.avro import (
    AvroDecoder,
    AvroEncoder,
    DatumConverter,
    DatumError,
    FramingError,
    decode,
    frame,
    key_schema,
    parse_pg_interval,
    unframe,
    value_schema,
)
from liberator.errors import SchemaError
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
DEC_38_10_MAX = Decimal("9999999999999999999999999999.9999999999")


def round_trip(ctype: ColumnType, value: Any, nullable: bool = False) -> tuple[Any, Any]:
    """(datum value, value read back by fastavro) for one column."""
    table = TableSchema("public", "t", (Column("c", ctype, nullable=nullable),), ())
    schema = value_schema(table, "ns")
    datum = DatumConverter(table).convert({"c": value})
    data = AvroEncoder(schema, 42).encode(datum)
    schema_id, back = decode(data, schema)
    assert schema_id == 42
    return datum["c"], back["c"]


@pytest.mark.parametrize(
    ("ctype", "value", "expected"),
    [
        (IntType(64), INT64_MIN, INT64_MIN),
        (IntType(64), INT64_MAX, INT64_MAX),
        (IntType(32), -(2**31), -(2**31)),
        (IntType(32, unsigned=True), 2**32 - 1, 2**32 - 1),
        (IntType(64, unsigned=True), 2**64 - 1, Decimal(2**64 - 1)),
        (IntType(64, unsigned=True), 0, Decimal(0)),
        (IntType(8), True, 1),
        (FloatType(64), 1.7976931348623157e308, 1.7976931348623157e308),
        (FloatType(64), 5, 5.0),
        (FloatType(32), 0.5, 0.5),
        (DecimalType(38, 10), DEC_38_10_MAX, DEC_38_10_MAX),
        (DecimalType(38, 10), Decimal(f"-{DEC_38_10_MAX}"), Decimal(f"-{DEC_38_10_MAX}")),
        (DecimalType(10, 2), Decimal("1.5"), Decimal("1.50")),
        (DecimalType(10, 2), Decimal("1.500"), Decimal("1.50")),  # trailing zeros past the scale are exact
        (DecimalType(10, 2), Decimal("0E-7"), Decimal("0.00")),
        (DecimalType(10, 2), 7, Decimal("7.00")),
        (DecimalType(10, 2), 0.1, Decimal("0.10")),  # SQLite REAL: its shortest repr
        (DecimalType(2, -3), Decimal("99000"), Decimal("99000")),
        (DecimalType(None, None), Decimal("1.50"), "1.50"),
        (DecimalType(None, None), Decimal("1E+5"), "100000"),
        (DecimalType(None, None), Decimal("-0.000000000000000000000000000000000001"), None),
        (DecimalType(None, None), Decimal("NaN"), "NaN"),
        (DecimalType(None, None), Decimal("-Infinity"), "-Infinity"),
        (BoolType(), True, True),
        (BoolType(), 0, False),
        (StringType(), "", ""),
        (StringType(), "żółw 🐢 \x00 naïve", "żółw 🐢 \x00 naïve"),
        (BytesType(), b"", b""),
        (BytesType(), memoryview(b"\x00\xff"), b"\x00\xff"),
        (DateType(), date(1, 1, 1), date(1, 1, 1)),
        (DateType(), date(9999, 12, 31), date(9999, 12, 31)),
        (DateType(), "2024-02-29", date(2024, 2, 29)),
        (TimeType(), time(23, 59, 59, 999999), time(23, 59, 59, 999999)),
        (TimeType(), time(0), time(0)),
        (TimeType(with_timezone=True), time(1, 2, 3, 4, tzinfo=timezone(timedelta(hours=-5))), None),
        (UuidType(), uuid.UUID(int=2**128 - 1), uuid.UUID(int=2**128 - 1)),
        (
            UuidType(),
            "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
            uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
        ),
        (JsonType(), {"b": [1, 2.5, None, True], "a": "é"}, '{"b":[1,2.5,null,true],"a":"é"}'),
        (JsonType(), '{"kept":  "as is"}', '{"kept":  "as is"}'),
        (JsonType(), [], "[]"),
        (EnumType(("a", "b"), "e"), "b", "b"),
        (EnumType(("in progress", ""), "e"), "", ""),
        (SetType(("x", "y", "z")), "z,x", ["x", "z"]),
        (SetType(("x", "y", "z")), {"y", "x"}, ["x", "y"]),
        (SetType(("x", "y")), "", []),
        (BitsType(5), 5, "00101"),
        (BitsType(16), b"\x80\x01", "1000000000000001"),
        (BitsType(4), "0110", "0110"),
        (BitsType(0, varying=True), "", ""),
        (IntervalType(), timedelta(days=-1, seconds=1), {"months": 0, "days": -1, "micros": 1_000_000}),
        (IntervalType(), "-178000000 years", {"months": -2_136_000_000, "days": 0, "micros": 0}),
        (IntervalType(), (1, 2, INT64_MAX), {"months": 1, "days": 2, "micros": INT64_MAX}),
        (ArrayType(IntType(16)), [1, None, -3], [1, None, -3]),
        (ArrayType(DecimalType(5, 2), item_nullable=False), (Decimal("1.1"),), [Decimal("1.10")]),
        (ArrayType(EnumType(("a", "b"))), ["b", None], ["b", None]),
        (TextRepr("inet"), ipaddress.ip_interface("10.1.2.3/8"), "10.1.2.3/8"),
        (TextRepr("macaddr"), "08:00:2b:01:02:03", "08:00:2b:01:02:03"),
    ],
)
def test_round_trip_is_exact(ctype: ColumnType, value: Any, expected: Any) -> None:
    _, back = round_trip(ctype, value)
    if expected is None:  # the exact text of the value
        expected = value.isoformat() if isinstance(value, time) else format(value, "f")
    assert back == expected
    assert type(back) is type(expected)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # naive: a wall-clock reading, encoded as if UTC (whatever the process's zone)
        (datetime(2024, 1, 1, 12, 0), datetime(2024, 1, 1, 12, 0, tzinfo=UTC)),
        (datetime(1, 1, 1), datetime(1, 1, 1, tzinfo=UTC)),
        (datetime(9999, 12, 31, 23, 59, 59, 999999), datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
        (datetime(1969, 12, 31, 23, 59, 59, 999999), datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
        # aware: the instant, in UTC
        (
            datetime(2024, 6, 1, 2, 30, 0, 1, tzinfo=timezone(timedelta(hours=5, minutes=30))),
            datetime(2024, 5, 31, 21, 0, 0, 1, tzinfo=UTC),
        ),
        ("2024-01-01 00:00:00.5", datetime(2024, 1, 1, 0, 0, 0, 500000, tzinfo=UTC)),  # SQLite text
    ],
)
def test_timestamps_to_the_microsecond(value: Any, expected: datetime) -> None:
    _, back = round_trip(TimestampType(), value)
    assert back == expected
    assert back.utcoffset() == timedelta(0)


def test_naive_timestamps_ignore_the_process_time_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    import time as time_module

    monkeypatch.setenv("TZ", "America/New_York")
    time_module.tzset()
    try:
        _, back = round_trip(TimestampType(), datetime(2024, 7, 1, 12, 0))
    finally:
        monkeypatch.undo()
        time_module.tzset()
    assert back == datetime(2024, 7, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("span", "micros"),
    [
        (-timedelta(hours=838, minutes=59, seconds=59), -3_020_399_000_000),
        (timedelta(hours=838, minutes=59, seconds=59), 3_020_399_000_000),
        (timedelta(0), 0),
        (-timedelta(microseconds=1), -1),
        (-timedelta(hours=12, minutes=34, seconds=56, microseconds=789012), -45_296_789_012),
        (timedelta(hours=24), 86_400_000_000),
    ],
)
def test_mysql_time_is_signed_microseconds(span: timedelta, micros: int) -> None:
    assert round_trip(DurationType(6), span) == (micros, micros)


def test_time_of_day_as_a_span_since_midnight_within_a_day() -> None:
    datum, back = round_trip(TimeType(0), timedelta(hours=23, minutes=59, seconds=59, microseconds=999999))
    assert datum == 86_400_000_000 - 1
    assert back == time(23, 59, 59, 999999)
    assert round_trip(TimeType(0), timedelta(0)) == (0, time(0))


def test_nullable_columns_take_none() -> None:
    for ctype in (IntType(), DecimalType(None, None), IntervalType(), EnumType(("a",)), TimestampType()):
        assert round_trip(ctype, None, nullable=True) == (None, None)


def test_pg_interval_text() -> None:
    assert parse_pg_interval("1 year 2 mons -3 days +04:05:06.789") == {
        "months": 14,
        "days": -3,
        "micros": 14_706_789_000,
    }
    assert parse_pg_interval("-00:00:00.000001") == {"months": 0, "days": 0, "micros": -1}
    assert parse_pg_interval("1 day") == {"months": 0, "days": 1, "micros": 0}
    assert parse_pg_interval("2562047788:00:54.775807")["micros"] == INT64_MAX


ERRORS: list[tuple[ColumnType, Any, str]] = [
    (
        DecimalType(10, 2),
        Decimal("1.005"),
        "value Decimal('1.005') (Decimal) has more than 2 digits after the point",
    ),
    (DecimalType(10, 2), Decimal("123456789.1"), "is out of range for NUMERIC(10,2)"),
    (DecimalType(10, 2), Decimal("NaN"), "cannot be held by NUMERIC(10,2) (only finite numbers)"),
    (DecimalType(10, 2), "1.00", "value '1.00' (str) is not a decimal number"),
    (IntType(16), 32768, "value 32768 (int) is out of range for a 16-bit integer"),
    (IntType(8, unsigned=True), -1, "out of range for a unsigned 8-bit integer"),
    (IntType(64, unsigned=True), 2**64, "out of range"),
    (IntType(64), INT64_MAX + 1, "out of range"),
    (IntType(32), "12", "value '12' (str) is not an integer"),
    (FloatType(64), 2**53 + 1, "cannot be held exactly"),
    (BoolType(), 2, "value 2 (int) is not a boolean"),
    (StringType(), b"x", "value b'x' (bytes) is not a string"),
    (DateType(), "0000-00-00", "value '0000-00-00' (str) is not a date"),
    (TimeType(0), timedelta(hours=-1), "is not a time of day (00:00:00 to 23:59:59.999999)"),
    (DurationType(0), timedelta.max, "is out of range for a duration in microseconds"),
    (DurationType(0), time(12), "is not a duration"),
    (TimeType(0), timedelta(hours=24), "is not a time of day"),
    (DateType(), datetime(2024, 1, 1, 10), "has a time of day"),
    (TimestampType(), "0000-00-00 00:00:00", "is not a timestamp"),
    (TimestampType(), date(2024, 1, 1), "is not a timestamp"),
    (UuidType(), "nope", "is not a UUID"),
    (JsonType(), {"x": float("nan")}, "is not JSON"),
    (EnumType(("a", "b")), "c", "is not one of the enum's values ['a', 'b']"),
    (SetType(("x",)), "x,q", "has members ['q'] not in ['x']"),
    (BitsType(3), 8, "does not fit 3 bits"),
    (BitsType(3), "0101", "does not have 3 bits"),
    (IntervalType(), "P1D", "is not an interval"),
    (IntervalType(), (2**31, 0, 0), "has months out of range"),
    (IntervalType(), {"months": 1}, "value {'months': 1} (dict) has no days, micros"),
    (IntervalType(), (1, 2), "is not an interval"),
    (ArrayType(IntType(), item_nullable=False), [1, None], "has a null element"),
    (ArrayType(IntType(16)), [1, 2**20], "out of range for a 16-bit integer"),
]


@pytest.mark.parametrize(("ctype", "value", "message"), ERRORS)
def test_values_that_do_not_fit_raise_one_line_errors_naming_table_and_column(
    ctype: ColumnType, value: Any, message: str
) -> None:
    db_type = "NUMERIC(10,2)" if isinstance(ctype, DecimalType) else ""
    table = TableSchema("shop", "orders", (Column("amount", ctype, db_type=db_type),), ())
    with pytest.raises(DatumError) as raised:
        DatumConverter(table).convert({"amount": value})
    text = str(raised.value)
    assert text.startswith("table shop.orders column amount: ")
    assert message in text
    assert "\n" not in text


def test_null_in_not_null_column_and_missing_column() -> None:
    table = TableSchema(None, "t", (Column("a", IntType(), nullable=False),), ("a",))
    converter = DatumConverter(table)
    with pytest.raises(DatumError, match="table t column a: value is NULL but the column is NOT NULL"):
        converter.convert({"a": None})
    with pytest.raises(DatumError, match="table t: the row has no column 'a'"):
        converter.convert({})
    with pytest.raises(DatumError, match="got 2 values for 1 columns"):
        converter.convert_values([1, 2])


def test_key_and_positional_conversion_use_sanitised_field_names() -> None:
    table = TableSchema(
        "s",
        "t",
        (Column("order id", IntType(), nullable=False), Column("note", StringType())),
        ("order id",),
    )
    assert DatumConverter(table).convert_values((5, "x")) == {"order_id": 5, "note": "x"}
    key = DatumConverter.for_key(table)
    assert key.field_names == ("order_id",)
    datum = key.convert({"order id": 5, "note": "ignored"})
    schema = key_schema(table, "ns")
    assert AvroDecoder(schema, 3).decode(AvroEncoder(schema, 3).encode(datum)) == {"order_id": 5}


def test_encoder_reuses_its_buffer_without_leaking_bytes() -> None:
    table = TableSchema(None, "t", (Column("s", StringType(), nullable=False),), ())
    schema = value_schema(table, "ns")
    encoder = AvroEncoder(schema, 1)
    long_one = encoder.encode({"s": "x" * 100})
    short_one = encoder.encode({"s": "y"})
    assert len(short_one) == 5 + 1 + 1
    assert decode(long_one, schema) == (1, {"s": "x" * 100})
    assert decode(short_one, schema) == (1, {"s": "y"})


def test_wire_format() -> None:
    assert frame(258, b"body") == b"\x00\x00\x00\x01\x02body"
    assert unframe(b"\x00\x00\x00\x01\x02body") == (258, b"body")
    with pytest.raises(FramingError, match=r"unknown magic byte 1 \(expected 0\)"):
        unframe(b"\x01\x00\x00\x00\x01")
    with pytest.raises(FramingError, match="too short"):
        unframe(b"\x00\x00")
    with pytest.raises(FramingError, match="out of range"):
        frame(-1, b"")
    schema = value_schema(TableSchema(None, "t", (Column("a", IntType(), nullable=False),), ()), "ns")
    with pytest.raises(FramingError, match="schema id 9, expected 8"):
        AvroDecoder(schema, 8).decode(AvroEncoder(schema, 9).encode({"a": 1}))


def test_encoder_does_not_modify_the_schema_it_is_given() -> None:
    table = TableSchema(None, "t", (Column("e", EnumType(("a",))), Column("i", IntervalType())), ())
    schema = value_schema(table, "ns")
    before = repr(schema)
    AvroEncoder(schema, 1)
    assert repr(schema) == before


@given(st.text())
def test_a_plain_string_schema_writes_what_fastavro_writes(text: str) -> None:
    # The outbox's keys take the encoder's own path for a plain string schema; fastavro is the reference.
    encoder = AvroEncoder({"type": "string"}, 77)
    try:
        expected: bytes | type[SchemaError] = encoder._write(text)
    except SchemaError:
        expected = SchemaError
    if expected is SchemaError:
        with pytest.raises(SchemaError):
            encoder.encode(text)
    else:
        assert encoder.encode(text) == expected
        assert decode(encoder.encode(text), "string") == (77, text)


def test_a_plain_string_schema_refuses_what_it_cannot_write_as_fastavro_does() -> None:
    encoder = AvroEncoder({"type": "string"}, 77)
    with pytest.raises(SchemaError, match="surrogates not allowed"):
        encoder.encode("\ud800")
    with pytest.raises(SchemaError):
        encoder.encode(42)
    assert encoder.encode("x" * 300) == encoder._write("x" * 300)  # a length past one varint byte
