"""PostgreSQL text forms: array literals psycopg leaves as text, ranges, intervals."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from psycopg.types.multirange import Multirange
from psycopg.types.range import Range as PsycopgRange
from sqlalchemy.dialects.postgresql import Range as SqlaRange

from liberator.avro import DatumConverter, DatumError, parse_pg_array, parse_pg_interval, pg_range_text
from liberator.avro.reasons import ConversionError
from liberator.schema import ArrayType, Column, EnumType, IntType, TableSchema, TextRepr

INT64_MAX = 2**63 - 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{}", []),
        ("{happy}", ["happy"]),
        ("{happy,sad,NULL}", ["happy", "sad", None]),
        ('{"very sad","NULL",null}', ["very sad", "NULL", None]),
        ('{"a,b","","\\"q\\"","back\\\\slash"}', ["a,b", "", '"q"', "back\\slash"]),
    ],
)
def test_array_literals(text: str, expected: list[str | None]) -> None:
    assert parse_pg_array(text) == expected


@pytest.mark.parametrize("text", ["happy", "{a", '{"a}', "{{1,2},{3,4}}", '{"a"b}'])
def test_bad_array_literals(text: str) -> None:
    with pytest.raises(ConversionError):
        parse_pg_array(text)


def test_enum_arrays_given_as_literals_convert_item_by_item() -> None:
    mood = EnumType(("happy", "sad"), "mood")
    table = TableSchema("public", "t", (Column("m", ArrayType(mood)), Column("n", ArrayType(IntType()))), ())
    converter = DatumConverter(table)
    assert converter.convert({"m": "{sad,NULL}", "n": None}) == {"m": ["sad", None], "n": None}
    with pytest.raises(DatumError, match=r"column m: value 'angry' \(str\) is not one of the enum's values"):
        converter.convert({"m": "{angry}", "n": None})
    with pytest.raises(DatumError, match=r"column n: value \[\[1, 2\]\] \(list\) is multi-dimensional"):
        converter.convert({"m": None, "n": [[1, 2]]})


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (PsycopgRange(1, 10), "[1,10)"),
        (PsycopgRange(None, 5, "(]"), "(,5]"),
        (PsycopgRange(empty=True), "empty"),
        (SqlaRange(Decimal("1E+2"), Decimal("1.50"), bounds="[]"), "[100,1.50]"),
        (SqlaRange(date(2020, 1, 1), None), "[2020-01-01,)"),
        (
            PsycopgRange(datetime(2020, 1, 1, tzinfo=UTC), datetime(2020, 1, 2, tzinfo=UTC)),
            '["2020-01-01 00:00:00+00:00","2020-01-02 00:00:00+00:00")',
        ),
        (Multirange([PsycopgRange(1, 2), PsycopgRange(5, 6)]), "{[1,2),[5,6)}"),
        (Multirange(), "{}"),
    ],
)
def test_range_text(value: object, expected: str) -> None:
    assert pg_range_text(value) == expected
    table = TableSchema(None, "t", (Column("r", TextRepr("range")),), ())
    assert DatumConverter(table).convert({"r": value}) == {"r": expected}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("00:00:00", (0, 0, 0)),
        ("1 year 2 mons -3 days +04:05:06.789", (14, -3, 14_706_789_000)),
        ("-1 years -2 mons +3 days -04:05:06", (-14, 3, -14_706_000_000)),
        ("-00:00:00.000001", (0, 0, -1)),
        ("1 day", (0, 1, 0)),
        ("1 mon 100:00:00", (1, 0, 360_000_000_000)),
        ("-178000000 years", (-2_136_000_000, 0, 0)),
        ("2562047788:00:54.775807", (0, 0, INT64_MAX)),
    ],
)
def test_interval_text(text: str, expected: tuple[int, int, int]) -> None:
    parsed = parse_pg_interval(text)
    assert (parsed["months"], parsed["days"], parsed["micros"]) == expected


@pytest.mark.parametrize("text", ["", "P1Y", "@ 1 year", "1 fortnight", "1:2:3"])
def test_bad_interval_text(text: str) -> None:
    with pytest.raises(ConversionError):
        parse_pg_interval(text)
