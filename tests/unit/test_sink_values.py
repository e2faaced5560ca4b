"""Avro datums back to column values: the inverse of liberator.avro.values, per dialect."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from liberator.schema import ArrayType, BitsType, IntervalType, IntType, StringType, TimestampType
from liberator.sinks.sql.columns import Kind
from liberator.sinks.sql.values import interval_text, pg_array_literal, to_column

UTC_NOON = dt.datetime(2024, 1, 1, 12, 0, 0, 250000, tzinfo=dt.UTC)


def test_timestamps_are_wall_clock_unless_the_column_is_aware() -> None:
    naive = dt.datetime(2024, 1, 1, 12, 0, 0, 250000)
    assert to_column(Kind("timestamp"), "postgresql", TimestampType())(UTC_NOON) == naive
    assert to_column(Kind("timestamp"), "postgresql", TimestampType(with_timezone=True))(UTC_NOON) == UTC_NOON
    assert to_column(Kind("timestamp"), "mysql", TimestampType(with_timezone=True))(UTC_NOON) == naive  # UTC session
    assert to_column(Kind("timestamp"), "sqlite", None)(UTC_NOON) == "2024-01-01 12:00:00.250000"
    offset = UTC_NOON.astimezone(dt.timezone(dt.timedelta(hours=2)))
    assert to_column(Kind("timestamp"), "postgresql", TimestampType())(offset) == naive


@given(st.datetimes(timezones=st.timezones() | st.just(dt.UTC) | st.none()))
def test_a_wall_clock_column_gets_the_utc_reading_of_any_timestamp(value: dt.datetime) -> None:
    convert = to_column(Kind("timestamp"), "postgresql", TimestampType())
    try:
        expected = value.astimezone(dt.UTC).replace(tzinfo=None) if value.tzinfo is not None else value
    except OverflowError:
        expected = None  # beyond year 1..9999 in UTC: the converter must refuse it too
    if expected is None:
        try:
            convert(value)
        except OverflowError:
            return
        raise AssertionError("a value beyond the datetime range was converted")
    assert convert(value) == expected and convert(value).tzinfo is None


def test_decimals_dates_and_times_per_dialect() -> None:
    assert to_column(Kind("decimal", 20, 0), "mysql", IntType(64, unsigned=True))(Decimal(2**64 - 1)) == 2**64 - 1
    assert to_column(Kind("decimal", 10, 2), "postgresql", None)(Decimal("1.50")) == Decimal("1.50")
    assert to_column(Kind("decimal", 10, 2), "sqlite", None)(Decimal("1.50")) == "1.50"
    assert to_column(Kind("numeric"), "mysql", None)("1.50") == Decimal("1.50")
    assert to_column(Kind("numeric"), "postgresql", None)("NaN") == "NaN"
    assert to_column(Kind("date"), "sqlite", None)(dt.date(1, 1, 1)) == "0001-01-01"
    assert to_column(Kind("time"), "sqlite", None)(dt.time(23, 59, 59, 999999)) == "23:59:59.999999"
    assert to_column(Kind("uuid"), "mysql", None)(uuid.UUID(int=1)) == "00000000-0000-0000-0000-000000000001"


def test_sets_bits_intervals_and_arrays() -> None:
    assert to_column(Kind("set"), "mysql", None)(["a", "c"]) == "a,c"
    assert to_column(Kind("set"), "postgresql", ArrayType(StringType()))(["a", "c"]) == '{"a","c"}'
    assert to_column(Kind("bits"), "mysql", BitsType(5))("00101") == 5
    assert to_column(Kind("bits"), "postgresql", BitsType(5))("00101") == "00101"
    interval = {"months": 14, "days": -3, "micros": 14706789000}
    assert to_column(Kind("interval"), "postgresql", IntervalType())(interval) == interval_text(interval)
    assert interval_text(interval) == "14 mons -3 days 14706789000 microseconds"
    assert to_column(Kind("interval"), "sqlite", None)(interval) == '{"months":14,"days":-3,"micros":14706789000}'
    assert to_column(Kind("array"), "mysql", None)([Decimal("1.5"), None]) == '["1.5",null]'


def test_pg_array_literal_quotes_every_element() -> None:
    assert pg_array_literal(["a,b", "", None, '"q"', "back\\slash"]) == '{"a,b","",NULL,"\\"q\\"","back\\\\slash"}'
    assert pg_array_literal([1, True, dt.date(2024, 1, 2)]) == '{"1","t","2024-01-02"}'
