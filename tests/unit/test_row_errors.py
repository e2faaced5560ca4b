"""The on_error policy of the capture core: what becomes of a row whose values cannot become an event."""

from __future__ import annotations

import json
import logging
from decimal import Decimal
from typing import Any, cast

import pytest

from liberator.capture import CaptureSettings, Catalogue, DatumCodec, Eventifier, Op, PoisonRow, RowChange, Txn
from liberator.capture.rowerrors import (
    HEADER_ERROR,
    HEADER_OP,
    HEADER_POSITION,
    HEADER_SOURCE,
    HEADER_TABLE,
    RowErrors,
    check_dead_letter_template,
)
from liberator.capture.tables import CapturedTable
from liberator.connectors.postgres_wal.debezium import postgres_dialect
from liberator.envelope import Envelope
from liberator.errors import FatalSourceError
from liberator.metrics import Metrics
from liberator.schema import Column, DecimalType, IntType, StringType, TableSchema

SHAPE = TableSchema(
    "public",
    "orders",
    (Column("id", IntType(64), nullable=False), Column("total", DecimalType(10, 2), nullable=False)),
    ("id",),
)


def _setup(on_error: str, **tables: str) -> tuple[Eventifier, CapturedTable, list[PoisonRow], list[str]]:
    settings = CaptureSettings(
        source="shop",
        connector="postgres_wal",
        app="app",
        on_error=cast(Any, on_error),
        on_error_tables=cast(Any, tables),
    )
    table = Catalogue(settings).table(SHAPE)
    counted: list[PoisonRow] = []
    ensured: list[str] = []
    errors = RowErrors(
        "shop",
        "app",
        "{source}.dlq",
        log=logging.getLogger("test"),
        ensure_topic=ensured.append,
        counted=counted.append,
    )
    eventifier = Eventifier(Envelope.change, DatumCodec, lambda e: (e.key, e.value), errors)
    return eventifier, table, counted, ensured


def _rows(table: CapturedTable, txn: Txn) -> list[RowChange]:
    return [
        RowChange(table, Op.create, txn, after=[1, Decimal("1.50")]),
        RowChange(table, Op.create, txn, after=[2, Decimal("NaN")]),  # numeric accepts NaN; Avro decimal cannot
        RowChange(table, Op.create, txn, after=[3, Decimal("3.00")]),
    ]


def test_dead_letter_sends_the_raw_row_with_headers_and_the_stream_goes_on() -> None:
    eventifier, table, counted, ensured = _setup("dead_letter")
    txn = Txn(1_700_000_000_000, id="77", position="0/16B3748")
    records = eventifier.records(_rows(table, txn))
    topics = [r[0] for r in records]
    assert topics == ["shop.public.orders", "shop.dlq", "shop.public.orders"]
    _topic, key, value, timestamp, headers = records[1]
    assert json.loads(value) == {"op": "c", "before": None, "after": {"id": 2, "total": "NaN"}}
    assert json.loads(key) == {"id": 2} and timestamp == 1_700_000_000_000
    named = dict(headers or [])
    assert named[HEADER_SOURCE] == b"shop" and named[HEADER_TABLE] == b"public.orders"
    assert named[HEADER_POSITION] == b"0/16B3748" and named[HEADER_OP] == b"c"
    assert named[HEADER_ERROR].startswith(
        b"table public.orders column total: value Decimal('NaN') (Decimal) cannot be held"
    )
    assert ensured == ["shop.dlq"] and len(counted) == 1
    # The transaction's order has no gap where the poison row was.
    assert [r[2]["transaction"]["order"] for r in (records[0], records[2])] == [1, 2]


def test_skip_counts_and_logs_the_row(caplog: pytest.LogCaptureFixture) -> None:
    eventifier, table, counted, ensured = _setup("skip")
    with caplog.at_level(logging.WARNING):
        records = eventifier.records(_rows(table, Txn(1, position="0/1")))
    assert [r[2]["after"]["id"] for r in records] == [1, 3]
    assert [(p.table, p.kind, p.on_error) for p in counted] == [("public.orders", "conversion", "skip")]
    assert ensured == []
    (line,) = [r.getMessage() for r in caplog.records]
    assert "on_error: skip: a row of public.orders at 0/1 skipped" in line and "NaN" in line


def test_stop_is_the_default_and_names_the_reason_and_the_fix() -> None:
    eventifier, table, _counted, _ensured = _setup("stop")
    with pytest.raises(FatalSourceError) as caught:
        eventifier.records(_rows(table, Txn(1, position="0/1")))
    message = str(caught.value)
    assert message.startswith("table public.orders column total: value Decimal('NaN')")
    assert "set on_error: dead_letter or skip" in message and "\n" not in message


def test_a_table_policy_overrides_the_source_policy() -> None:
    eventifier, table, counted, _ensured = _setup("stop", **{"public.orders": "skip"})
    assert table.on_error == "skip"
    assert len(eventifier.records(_rows(table, Txn(1)))) == 2 and len(counted) == 1


def test_a_poison_update_keeps_none_of_its_records() -> None:
    """An update that changes the key is a delete plus a create: when the create fails, the delete goes too."""
    eventifier, table, _counted, _ensured = _setup("dead_letter")
    txn = Txn(1)
    change = RowChange(table, Op.update, txn, before=[1, Decimal("1.00")], after=[9, Decimal("Infinity")])
    (record,) = eventifier.records([change])
    assert record[0] == "shop.dlq"
    assert json.loads(record[2])["before"] == {"id": 1, "total": "1.00"} and txn.order == 0


@pytest.mark.parametrize("envelope", [Envelope.debezium, Envelope.change])
@pytest.mark.parametrize("poison", [0, 1, 2])  # first, middle, last of the transaction
def test_a_poison_row_leaves_the_transaction_topic_whole(envelope: Envelope, poison: int) -> None:
    """BEGIN before the first event published, END counting only the events published, wherever the poison
    row is; with the previous transaction's END (its commit unreported) kept when the poison row came first."""
    settings = CaptureSettings(
        source="shop",
        connector="postgres_wal",
        app="app",
        envelope=envelope,
        debezium=postgres_dialect("shop") if envelope is Envelope.debezium else None,
        transactions="{source}.transaction",
        on_error="skip",
    )
    table = Catalogue(settings).table(SHAPE)
    errors = RowErrors(
        "shop", "app", "{source}.dlq", log=logging.getLogger("t"), ensure_topic=lambda t: None, counted=lambda r: None
    )
    eventifier = Eventifier(envelope, DatumCodec, lambda e: (e.key, e.value), errors)
    earlier, txn = Txn(1, id="7", position="0/7", commit_ms=1), Txn(2, id="8", position="0/8", commit_ms=2)
    records = eventifier.records([RowChange(table, Op.create, earlier, after=[100, Decimal("1.00")])])
    rows = [RowChange(table, Op.create, txn, after=[i, Decimal("1.00")]) for i in range(3)]
    rows[poison] = RowChange(table, Op.create, txn, after=[poison, Decimal("NaN")])
    records += eventifier.records(rows, [txn])
    marks = [(r[2]["status"], r[2]["id"], r[2]["event_count"]) for r in records if r[0] == "shop.transaction"]
    ids = ["7:7", "8:8"] if envelope is Envelope.debezium else ["7", "8"]
    assert marks == [("BEGIN", ids[0], None), ("END", ids[0], 1), ("BEGIN", ids[1], None), ("END", ids[1], 2)]
    rows_out = [r for r in records if r[0] != "shop.transaction"]
    assert [r[1]["id"] for r in rows_out] == [100, *(i for i in range(3) if i != poison)]
    assert records[-1][2]["data_collections"] == [{"data_collection": "public.orders", "event_count": 2}]
    if envelope is Envelope.debezium:
        assert [r[2]["transaction"]["total_order"] for r in rows_out[1:]] == [1, 2]


def test_a_connectors_poison_row_follows_its_own_policy_and_topic() -> None:
    eventifier, _table, counted, ensured = _setup("stop")
    poison = PoisonRow("app.outbox", "bad payload", on_error="dead_letter", after={"id": 5, "p": b"\x00"}, topic="x")
    (record,) = eventifier.records([poison])
    assert record[0] == "x" and json.loads(record[2])["after"] == {"id": 5, "p": "base64:AA=="}
    assert ensured == ["x"] and len(counted) == 1


def test_without_a_policy_handler_every_poison_row_stops() -> None:
    table = Catalogue(CaptureSettings(source="s", connector="query", app="a", on_error="skip")).table(SHAPE)
    eventifier = Eventifier(Envelope.state, DatumCodec, lambda e: (e.key, e.value))
    with pytest.raises(FatalSourceError, match="cannot be held"):
        eventifier.records(_rows(table, Txn(1)))


def test_dead_letter_template_placeholders() -> None:
    assert check_dead_letter_template("{app}.{source}.dlq") == "{app}.{source}.dlq"
    with pytest.raises(ValueError, match=r"uses \{table\}; allowed: \{source\}, \{app\}"):
        check_dead_letter_template("{table}.dlq")


def test_a_dead_letter_keeps_masked_columns_masked() -> None:
    shape = TableSchema("public", "users", (*SHAPE.columns, Column("email", StringType())), ("id",))
    masks: Any = {"public.users": {"email": "redact"}}
    settings = CaptureSettings(source="shop", connector="query", app="app", mask=masks, on_error="dead_letter")
    table = Catalogue(settings).table(shape)
    errors = RowErrors("shop", "app", "{source}.dlq", log=logging.getLogger("test"))
    eventifier = Eventifier(Envelope.state, DatumCodec, lambda e: (e.key, e.value), errors)
    poison = RowChange(table, Op.read, Txn(1), after=[1, Decimal("NaN"), "someone@example.com"])
    (record,) = eventifier.records([poison])
    after = json.loads(record[2])["after"]
    assert after["total"] == "NaN" and "someone" not in json.dumps(after)


def test_skipped_and_dead_lettered_rows_in_metrics_and_health() -> None:
    metrics = Metrics("app")
    status = metrics.source("pg", "postgres_wal")
    for policy in ("skip", "skip", "dead_letter"):
        status.count_poison_row(PoisonRow('public."odd"', "r", on_error=policy, kind="conversion"))  # type: ignore[arg-type]
    text = metrics.prometheus()
    labels = 'app="app",source="pg",type="postgres_wal"'
    assert f'liberator_source_skipped_rows_total{{{labels},table="public.\\"odd\\"",reason="conversion"}} 2' in text
    assert f"liberator_source_dead_lettered_rows_total{{{labels}}} 1" in text
    shown = metrics.health()["sources"]["pg"]
    assert shown["rows_skipped"] == 2 and shown["rows_dead_lettered"] == 1
