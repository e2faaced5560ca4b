"""Positions, LSNs and the text parsers of the postgres_wal source (pure logic, no server)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from liberator.connectors.postgres_wal.config import PostgresWalConfig
from liberator.connectors.postgres_wal.position import WalPosition, lsn_text, parse_lsn
from liberator.connectors.postgres_wal.types import (
    InfinityPolicy,
    _money,
    _numeric_typmod,
    array_parser,
    timestamp_parser,
)


def test_lsn_text_round_trip() -> None:
    for lsn in (0, 0x16B3748, 0x1_0000_0000, 0xFFFF_FFFF_FFFF_FFFF):
        assert parse_lsn(lsn_text(lsn)) == lsn
    assert lsn_text(0x1_0000_00AB) == "1/AB"
    with pytest.raises(ValueError, match="not an LSN"):
        parse_lsn("12345")


def test_position_json_round_trip_and_skip_rules() -> None:
    position = WalPosition(100, (("public.a", 100), ("public.b", 250)), snapshot_done=False)
    assert WalPosition.from_json(position.to_json()) == position
    assert position.skip_before() == {"public.b": 250}
    assert position.with_table("public.c", 300).tables[-1] == ("public.c", 300)
    assert WalPosition.from_json({"lsn": "0/10"}) == WalPosition(16)


def test_numeric_typmod_including_negative_scale() -> None:
    assert _numeric_typmod(-1) is None
    assert _numeric_typmod((10 << 16 | 2) + 4) == (10, 2)
    assert _numeric_typmod((2 << 16 | (-3 & 0x7FF)) + 4) == (2, -3)


def test_money_in_the_c_locale() -> None:
    assert _money("-$92,233,720,368,547,758.08") == Decimal("-92233720368547758.08")
    assert _money("$0.10") == Decimal("0.10")


def test_timestamp_infinity_policy() -> None:
    clamp = timestamp_parser(InfinityPolicy("clamp"), aware=True)
    assert clamp("infinity") == dt.datetime.max.replace(tzinfo=dt.UTC)
    assert clamp("-infinity") == dt.datetime.min.replace(tzinfo=dt.UTC)
    assert clamp("2024-02-29 12:00:00.5+00") == dt.datetime(2024, 2, 29, 12, 0, 0, 500000, tzinfo=dt.UTC)
    strict = timestamp_parser(InfinityPolicy("fail"), aware=False)
    with pytest.raises(ValueError, match="infinity: clamp"):
        strict("infinity")
    with pytest.raises(ValueError, match="before year 1"):
        strict("0044-03-15 00:00:00 BC")


def test_array_parser_parses_each_element() -> None:
    assert array_parser(int)("{1,NULL,-3}") == [1, None, -3]
    assert array_parser(None)('{"a b",NULL,"c\\"d"}') == ["a b", None, 'c"d']


def test_config_defaults_and_names() -> None:
    config = PostgresWalConfig(name="w", url="postgresql://u@h/db", tables=["orders"])
    assert config.envelope == "change" and config.snapshot == "initial" and config.slot == "liberator"
    with pytest.raises(ValueError, match="PostgreSQL identifier"):
        PostgresWalConfig(name="w", url="postgresql://u@h/db", tables=["orders"], slot="Bad-Slot")
