from __future__ import annotations

import datetime as dt
import decimal
import json
import uuid

import pytest

from liberator.connectors.query.position import QueryPosition, StreamCursor
from liberator.positions import decode_scalar, encode_scalar
from liberator.snapshots import Backfill


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        7,
        "x",
        1.5,
        decimal.Decimal("12.340"),
        dt.datetime(2026, 1, 2, 3, 4, 5, 678901),
        dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
        dt.date(2026, 1, 2),
        dt.time(23, 59, 59, 999999),
        uuid.UUID(int=5),
        b"\x00\xff",
    ],
)
def test_scalars_round_trip_through_json(value: object) -> None:
    decoded = decode_scalar(json.loads(json.dumps(encode_scalar(value))))
    assert decoded == value
    assert type(decoded) is type(value)


def test_query_position_round_trips_and_is_immutable() -> None:
    position = QueryPosition().with_cursor("public.orders", StreamCursor((dt.datetime(2026, 1, 1), 5), None, True))
    position = position.with_cursor("public.customers", StreamCursor(None, (3,), False))
    again = QueryPosition.from_json(json.loads(json.dumps(position.to_json())))
    assert again == position
    assert again.get("public.orders").cursor == (dt.datetime(2026, 1, 1), 5)
    assert again.get("unknown") == StreamCursor()
    with pytest.raises(AttributeError):
        position.streams = ()  # type: ignore[misc]


def test_bad_stored_position_is_a_value_error() -> None:
    with pytest.raises((ValueError, KeyError)):
        QueryPosition.from_json({"streams": {"t": {"cursor": [{"nonsense": 1}]}}})


def test_query_positions_carry_snapshots_on_demand_and_read_the_older_form() -> None:
    plain = QueryPosition().with_cursor("orders", StreamCursor((3,), None, True))
    assert "backfills" not in plain.to_json(), "a position without backfills is stored as before"
    backfill = Backfill("ab12", "orders", "id > 2", (dt.date(2026, 1, 2), 7), 41)
    position = plain.with_backfills((backfill,)).with_cursor("orders", StreamCursor((4,), None, True))
    assert position.backfills == (backfill,), "moving a cursor keeps the backfills"
    again = QueryPosition.from_json(json.loads(json.dumps(position.to_json())))
    assert again == position
    assert QueryPosition.from_json(plain.to_json()).backfills == ()


def test_query_positions_keep_the_signals_taken_through_every_change() -> None:
    plain = QueryPosition().with_cursor("orders", StreamCursor((3,), None, True))
    assert "signals" not in plain.to_json(), "a position without signals is stored as before"
    position = plain.with_signals(("s1", "s2")).with_backfills((Backfill("s2", "orders"),))
    position = position.with_cursor("orders", StreamCursor((4,), None, True)).with_cursor("other", StreamCursor())
    assert position.signals == ("s1", "s2"), "moving cursors and backfills keeps the signals"
    assert QueryPosition.from_json(json.loads(json.dumps(position.to_json()))) == position
