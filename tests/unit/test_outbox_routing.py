"""Pure outbox logic: JSON against Avro schemas, column values, routing config, DDL, positions."""

from __future__ import annotations

import datetime as dt
import decimal
import io
import uuid

import fastavro
import pytest
from pydantic import ValidationError

from liberator.avro import frame
from liberator.capture import PoisonRow
from liberator.connectors.outbox.config import OutboxSourceConfig
from liberator.connectors.outbox.ddl import outbox_ddl
from liberator.connectors.outbox.position import OutboxPosition
from liberator.errors import ConfigError, FatalSourceError
from liberator.outbox import OutboxRouter, OutboxRouting
from liberator.outbox.jsonavro import JsonToAvro, PayloadMismatch
from liberator.outbox.values import InvalidRow, epoch_ms, header_pairs, text_of

SCHEMA = {
    "type": "record",
    "name": "Event",
    "namespace": "shop",
    "fields": [
        {"name": "id", "type": "long"},
        {"name": "price", "type": {"type": "bytes", "logicalType": "decimal", "precision": 6, "scale": 2}},
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {"name": "day", "type": ["null", {"type": "int", "logicalType": "date"}], "default": None},
        {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["A", "B"]}},
        {"name": "tags", "type": {"type": "array", "items": "string"}, "default": []},
        {"name": "again", "type": ["null", "Kind"], "default": None},
        {"name": "ref", "type": ["null", {"type": "string", "logicalType": "uuid"}], "default": None},
    ],
}


def roundtrip(datum: object) -> object:
    buffer = io.BytesIO()
    parsed = fastavro.parse_schema(SCHEMA)
    fastavro.schemaless_writer(buffer, parsed, datum)
    buffer.seek(0)
    return fastavro.schemaless_reader(buffer, parsed, None)


def test_json_converts_to_a_datum_fastavro_writes() -> None:
    ref = str(uuid.uuid4())
    datum = JsonToAvro(SCHEMA).convert(
        {
            "id": 1,
            "price": "12.5",
            "at": "2024-01-02T03:04:05Z",
            "day": "2024-01-02",
            "kind": "B",
            "again": "A",
            "ref": ref,
        }
    )
    assert roundtrip(datum) == {
        "id": 1,
        "price": decimal.Decimal("12.50"),
        "at": dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
        "day": dt.date(2024, 1, 2),
        "kind": "B",
        "tags": [],
        "again": "A",
        "ref": uuid.UUID(ref),
    }


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"price": "1", "at": 0, "kind": "A"}, "payload.id: required field of record Event is missing"),
        ({"id": True, "price": "1", "at": 0, "kind": "A"}, "payload.id: expected an integer (long), got True"),
        ({"id": 1, "price": "1.234", "at": 0, "kind": "A"}, "payload.price: 1.234 has more than 2 decimal places"),
        ({"id": 1, "price": "12345.6", "at": 0, "kind": "A"}, "payload.price: 12345.6 has more than 6 digits"),
        ({"id": 1, "price": "1", "at": "yesterday", "kind": "A"}, "payload.at: 'yesterday' is not an ISO-8601"),
        ({"id": 1, "price": "1", "at": 0, "kind": "C"}, "payload.kind: expected one of ['A', 'B'], got 'C'"),
        ({"id": 1, "price": "1", "at": 0, "kind": "A", "tags": [1]}, "payload.tags[0]: expected a string, got 1"),
        ({"id": 1, "price": "1", "at": 0, "kind": "A", "oops": 1}, "payload.oops: record Event has no such field"),
        ({"id": 1, "price": "1", "at": 0, "kind": "A", "ref": "x"}, "payload.ref: 'x' is not a UUID"),
        ([1], "payload: expected an object for record Event, got [1]"),
    ],
)
def test_json_that_does_not_fit_names_the_path(document: object, message: str) -> None:
    with pytest.raises(PayloadMismatch) as caught:
        JsonToAvro(SCHEMA).convert(document)
    assert message in str(caught.value)


def test_column_values() -> None:
    assert epoch_ms(dt.datetime(2024, 1, 1), "t") == 1704067200000  # naive = UTC
    assert epoch_ms(dt.datetime(2024, 1, 1, 0, 0, 0, 999_999), "t") == 1704067200999  # floored, not rounded
    assert epoch_ms(dt.datetime(1969, 12, 31, 23, 59, 59, 999_500), "t") == -1  # floored before 1970 too
    assert epoch_ms(dt.datetime(2024, 1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=1))), "t") == 1704067200000
    assert epoch_ms("2024-01-01 00:00:00.250", "t") == 1704067200250  # SQLite text
    assert epoch_ms(1704067200, "t") == epoch_ms(1704067200000, "t") == epoch_ms(1704067200000000, "t")
    with pytest.raises(InvalidRow, match="t is NULL"):
        epoch_ms(None, "t")
    assert text_of(uuid.UUID(int=1), "k") == "00000000-0000-0000-0000-000000000001"
    assert text_of(memoryview(b"\x01\xff"), "k") == "01ff"
    assert header_pairs('{"trace": "x", "n": 2, "skip": null}', "h") == [("trace", b"x"), ("n", b"2")]
    with pytest.raises(InvalidRow, match="not a JSON object"):
        header_pairs("[1]", "h")


def row(**overrides: object) -> dict[str, object]:
    return {
        "id": 7,
        "aggregate_type": "order",
        "aggregate_id": 42,
        "event_type": "Placed",
        "payload": frame(5, b"\x02"),
        "occurred_at": dt.datetime(2024, 1, 1),
        **overrides,
    }


def test_router_routes_avro_rows_without_a_registry_by_framing_only() -> None:
    router = OutboxRouter(OutboxRouting(payload="avro", topic="x.{aggregate_type}.{event_type}"), "src", None)
    (event,) = router.route(row(payload=memoryview(frame(5, b"\x02"))), None)
    assert event.stream.topic == "x.order.Placed" and event.stream.value_schema is None
    assert event.key == "42" and event.value == frame(5, b"\x02")
    assert dict(event.headers) == {"id": b"7", "event_type": b"Placed", "aggregate_type": b"order"}
    assert event.timestamp_ms == 1704067200000


def test_router_stops_or_diverts_an_invalid_row() -> None:
    bad = row(aggregate_type="my order")  # a space: not a topic name
    with pytest.raises(FatalSourceError) as caught:
        OutboxRouter(OutboxRouting(payload="avro"), "src", None).route(bad, None)
    assert "outbox row id=7 (my order/42)" in str(caught.value) and "is not a valid Kafka topic name" in str(
        caught.value
    )
    # The source's on_error decides; the outbox's older on_invalid / dead_letter_topic win where given.
    (poison,) = OutboxRouter(OutboxRouting(payload="avro"), "src", None, on_error="skip", table="app.outbox").route(
        bad, None
    )
    assert isinstance(poison, PoisonRow) and poison.on_error == "skip" and poison.topic is None
    assert poison.table == "app.outbox" and poison.after is not None and poison.after["aggregate_type"] == "my order"
    assert poison.key == {"id": 7} and "is not a valid Kafka topic name" in poison.reason
    routing = OutboxRouting(payload="avro", on_invalid="dead_letter", dead_letter_topic="dead.{source}")
    (dead,) = OutboxRouter(routing, "src", None, on_error="stop").route(bad, None)
    assert isinstance(dead, PoisonRow) and dead.on_error == "dead_letter" and dead.topic == "dead.src"
    assert '"payload":"base64:' in dead.value_json()


def test_json_payloads_need_a_registry() -> None:
    with pytest.raises(ConfigError, match="payload: json needs the schema registry"):
        OutboxRouter(OutboxRouting(), "src", None)


def test_config_validation() -> None:
    with pytest.raises(ValidationError, match=r"uses \{table\}"):
        OutboxRouting(topic="outbox.{table}")
    with pytest.raises(ValidationError, match=r"avro_framing: raw needs columns\.schema_id"):
        OutboxRouting(payload="avro", avro_framing="raw")
    with pytest.raises(ValidationError, match="notify_channel works only with PostgreSQL"):
        OutboxSourceConfig(name="o", url="sqlite:///x.db", notify_channel="wake")
    config = OutboxSourceConfig(name="o", url="postgresql://h/db", columns={"payload": "body"}, table="app.outbox")
    assert config.columns.payload == "body" and config.topic == "outbox.event.{aggregate_type}"


def test_ddl_per_dialect() -> None:
    assert "JSONB NOT NULL" in outbox_ddl("postgresql")
    assert "LONGBLOB NOT NULL" in outbox_ddl("mysql", payload="avro")
    assert "INDEX outbox_pending (published_at, occurred_at, id)" in outbox_ddl("mysql", cleanup="mark")
    assert "WHERE published_at IS NULL" in outbox_ddl("sqlite", cleanup="mark")
    assert "AUTOINCREMENT" in outbox_ddl("sqlite")
    assert "pg_notify('wake', '')" in outbox_ddl("postgresql", notify_channel="wake")
    with pytest.raises(ValueError, match="--notify needs PostgreSQL"):
        outbox_ddl("sqlite", notify_channel="wake")


def test_position_round_trips_and_orders_within_a_run() -> None:
    position = OutboxPosition("run1", 3, uuid.UUID(int=5))
    assert OutboxPosition.from_json(position.to_json()) == position
    assert position.covers(OutboxPosition("run1", 2)) and not position.covers(OutboxPosition("run1", 4))
    assert not position.covers(OutboxPosition("run2", 1))


def test_outbox_ddl_command_prints_a_table_sqlite_accepts(capsys: pytest.CaptureFixture[str]) -> None:
    import sqlite3

    from liberator.cli import main

    assert main(["outbox", "ddl", "--dialect", "sqlite", "--cleanup", "mark"]) == 0
    printed = capsys.readouterr().out
    db = sqlite3.connect(":memory:")
    db.executescript(printed)
    plan = db.execute(
        "EXPLAIN QUERY PLAN SELECT id FROM outbox WHERE published_at IS NULL ORDER BY occurred_at, id LIMIT 10"
    ).fetchall()
    assert "USING COVERING INDEX outbox_pending" in str(plan) or "USING INDEX outbox_pending" in str(plan)
    assert main(["outbox", "ddl", "--dialect", "mysql", "--notify", "x"]) == 1
    assert "--notify needs PostgreSQL" in capsys.readouterr().err
