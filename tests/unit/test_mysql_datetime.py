"""The fast DATETIME/TIMESTAMP decoder gives exactly what PyMySQL's own decoder gives, for anything."""

from __future__ import annotations

import pymysql.converters  # type: ignore[import-untyped]
import pytest
from hypothesis import given
from hypothesis import strategies as st

from liberator.sqldb import MYSQL_CONVERSIONS, mysql_datetime

SENT = [
    "2024-01-02 03:04:05",
    "2024-01-02 03:04:05.6",
    "2024-01-02 03:04:05.678",
    "2024-01-02 03:04:05.678901",
    "1000-01-01 00:00:00.000000",
    "9999-12-31 23:59:59.999999",
    "0000-00-00 00:00:00",  # zero date: PyMySQL hands the text back
    "2024-00-10 00:00:00",
    "2024-02-30 00:00:00",
    "2024-01-02 03:04:05.1234567",  # more digits than MySQL sends
    "2024-01-02",  # a date alone: PyMySQL makes a date
    "2024-01-02T03:04:05",
    "2024-01-02 03:04:05+02:00",
    "2024-01-02 03:04",
    "garbage",
    "",
]


@pytest.mark.parametrize("text", SENT)
def test_same_as_pymysql(text: str) -> None:
    expected = pymysql.converters.convert_datetime(text)
    for value in (text, text.encode()):
        got = mysql_datetime(value)
        assert (type(got), got) == (type(expected), expected)


@given(st.datetimes(), st.integers(0, 6))
def test_same_as_pymysql_for_every_datetime(value: object, digits: int) -> None:
    text = str(value)[: 20 + digits] if digits else str(value)[:19]
    assert mysql_datetime(text) == pymysql.converters.convert_datetime(text)


def test_only_the_datetime_decoders_differ_from_pymysql() -> None:
    default = pymysql.converters.conversions
    assert {k for k in MYSQL_CONVERSIONS if MYSQL_CONVERSIONS[k] is not default.get(k)} == {
        pymysql.constants.FIELD_TYPE.DATETIME,
        pymysql.constants.FIELD_TYPE.TIMESTAMP,
    }
