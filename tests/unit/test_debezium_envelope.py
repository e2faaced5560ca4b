"""`envelope: debezium` and the transaction topic in the capture core, with datums (no servers)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import fastavro
import pytest
from pydantic import ValidationError

from liberator.avro import AvroDecoder, AvroEncoder
from liberator.capture import CaptureSettings, Catalogue, ChangeBatch, Op, RowChange, Txn, datum_events
from liberator.capture.debezium import mark_snapshot_end
from liberator.connectors.mysql_binlog.debezium import MYSQL
from liberator.connectors.postgres_wal.config import PostgresWalConfig
from liberator.connectors.postgres_wal.debezium import postgres_dialect
from liberator.connectors.postgres_wal.position import WalPosition
from liberator.envelope import Envelope
from liberator.events import ChangeEvent, Checkpoint
from liberator.schema import Column, IntType, StringType, TableSchema

SAMPLES = Path(__file__).parent.parent / "debezium"


def customers(schema: str) -> TableSchema:
    return TableSchema(
        schema,
        "customers",
        (
            Column("id", IntType(32), False, "integer"),
            Column("name", StringType(), True, "text"),
            Column("email", StringType(255), False, "varchar(255)"),
        ),
        ("id",),
    )


def catalogue(transactions: str | None = "{source}.transaction", envelope: Envelope = Envelope.debezium) -> Catalogue:
    settings = CaptureSettings(
        source="dbserver1",
        connector="postgres_wal",
        app="app",
        envelope=envelope,
        debezium=postgres_dialect("inventory"),
        transactions=transactions,
    )
    return Catalogue(settings)


def ours(schema: Any) -> Any:
    """A schema without liberator's own properties (`liberator.db_type`, ...: consumers ignore them)."""
    if isinstance(schema, dict):
        return {k: ours(v) for k, v in schema.items() if not k.startswith("liberator.")}
    if isinstance(schema, list):
        return [ours(v) for v in schema]
    return schema


def test_postgres_schemas_are_debeziums_field_for_field() -> None:
    sample = json.loads((SAMPLES / "postgresql_customers.json").read_text())
    table = catalogue().table(customers("public"))
    assert ours(table.stream.value_schema) == sample["value"]  # names, types, defaults, Connect properties
    assert ours(table.stream.key_schema) == sample["key"]


def test_mysql_schemas_are_debeziums_field_for_field() -> None:
    sample = json.loads((SAMPLES / "mysql_customers.json").read_text())
    settings = CaptureSettings(
        source="dbserver1", connector="mysql_binlog", app="app", envelope=Envelope.debezium, debezium=MYSQL
    )
    table = Catalogue(settings).table(customers("inventory"))
    assert ours(table.stream.value_schema) == sample["value"]
    assert ours(table.stream.key_schema) == sample["key"]


def events(items: list[Any]) -> list[ChangeEvent]:
    return [e for e in datum_events(items, Envelope.debezium) if isinstance(e, ChangeEvent)]


def test_one_transaction_over_two_tables_numbers_its_events_and_ends_after_them() -> None:
    cat = catalogue()
    a = cat.table(customers("public"))
    b = cat.table(TableSchema("public", "orders", (Column("id", IntType(32), False, "integer"),), ("id",)))
    txn = Txn(1000, id="731", position="0/16B3748", commit_ms=1000)
    changes: list[RowChange | ChangeEvent] = [
        RowChange(a, Op.create, txn, after=[1, "Ann", "a@x"]),
        RowChange(b, Op.create, txn, after=[10]),
        RowChange(a, Op.update, txn, before=[1, "Ann", "a@x"], after=[1, "Anne", "a@x"]),
        RowChange(a, Op.delete, txn, before=[1, "Anne", "a@x"]),
    ]
    # The transaction spans two batches; its commit comes with the second.
    out = events([ChangeBatch(changes[:2], None), ChangeBatch(changes[2:], None, [txn])])
    topics = [e.stream.topic for e in out]
    assert topics == [
        "dbserver1.transaction",
        "dbserver1.public.customers",
        "dbserver1.public.orders",
        "dbserver1.public.customers",
        "dbserver1.public.customers",
        "dbserver1.public.customers",  # the delete's tombstone
        "dbserver1.transaction",
    ]
    begin, end = out[0].value, out[-1].value
    tx_id = f"731:{0x16B3748}"
    assert begin == {"status": "BEGIN", "id": tx_id, "event_count": None, "data_collections": None, "ts_ms": 1000}
    assert out[0].key == {"id": tx_id}
    assert end == {
        "status": "END",
        "id": tx_id,
        "event_count": 4,
        "data_collections": [
            {"data_collection": "public.customers", "event_count": 3},
            {"data_collection": "public.orders", "event_count": 1},
        ],
        "ts_ms": 1000,
    }
    values = [e.value for e in out[1:5]]
    assert [v["op"] for v in values] == ["c", "c", "u", "d"]  # type: ignore[index]
    blocks = [v["transaction"] for v in values]  # type: ignore[index]
    assert [(t["total_order"], t["data_collection_order"]) for t in blocks] == [(1, 1), (2, 1), (3, 2), (4, 3)]
    assert {t["id"] for t in blocks} == {tx_id}
    assert out[5].value is None
    source = values[0]["source"]  # type: ignore[index]
    assert source["connector"] == "postgresql" and source["name"] == "dbserver1" and source["db"] == "inventory"
    assert (source["schema"], source["table"], source["txId"], source["lsn"]) == ("public", "customers", 731, 0x16B3748)
    assert (source["snapshot"], source["ts_ms"], source["ts_us"]) == ("false", 1000, 1_000_000)
    assert values[2]["before"] == {"id": 1, "name": "Ann", "email": "a@x"}  # type: ignore[index]
    assert values[3]["after"] is None  # type: ignore[index]


def test_the_records_encode_under_their_schemas() -> None:
    cat = catalogue()
    table = cat.table(customers("public"))
    txn = Txn(5, id="9", position="0/10", commit_ms=5)
    for event in events([ChangeBatch([RowChange(table, Op.create, txn, after=[1, None, "e"])], None, [txn])]):
        assert event.stream.value_schema is not None and isinstance(event.value, dict)
        schema = event.stream.value_schema
        assert AvroDecoder(schema).decode(AvroEncoder(schema, 1).encode(event.value)) == event.value
        fastavro.parse_schema(event.stream.key_schema)


def test_without_a_transaction_topic_the_envelope_is_still_numbered() -> None:
    table = catalogue(transactions=None).table(customers("public"))
    txn = Txn(5, id="9", position="0/10", commit_ms=5)
    out = events([ChangeBatch([RowChange(table, Op.create, txn, after=[1, None, "e"])] * 2, None, [txn])])
    assert [e.stream.topic for e in out] == ["dbserver1.public.customers"] * 2
    assert [e.value["transaction"]["total_order"] for e in out] == [1, 2]  # type: ignore[index]


def test_the_change_envelope_gets_begin_and_end_with_its_own_transaction_ids() -> None:
    table = catalogue(envelope=Envelope.change).table(customers("public"))
    txn = Txn(5, id="9", position="0/10", commit_ms=5)
    batch = ChangeBatch([RowChange(table, Op.create, txn, after=[1, None, "e"])], None, [txn])
    out = [e for e in datum_events([batch], Envelope.change) if isinstance(e, ChangeEvent)]
    assert [e.value["status"] for e in (out[0], out[2])] == ["BEGIN", "END"]  # type: ignore[index]
    assert out[1].value["transaction"] == {"id": "9", "order": 1}  # type: ignore[index]
    assert out[2].key == {"id": "9"}


def test_a_transaction_whose_commit_went_unreported_ends_before_the_next_begins() -> None:
    table = catalogue().table(customers("public"))
    first, second = Txn(1, id="1", position="0/1", commit_ms=1), Txn(2, id="2", position="0/2", commit_ms=2)
    out = events(
        [
            ChangeBatch([RowChange(table, Op.create, first, after=[1, None, "e"])]),
            ChangeBatch([RowChange(table, Op.create, second, after=[2, None, "e"])], None, [second]),
        ]
    )
    statuses = [(e.value["status"], e.value["id"]) for e in out if e.stream.topic.endswith("transaction")]  # type: ignore[index]
    assert statuses == [("BEGIN", "1:1"), ("END", "1:1"), ("BEGIN", "2:2"), ("END", "2:2")]


def test_snapshot_reads_have_no_transaction_and_the_last_is_marked() -> None:
    table = catalogue().table(customers("public"))
    chunk1, chunk2 = Txn(1, position="0/5", snapshot=True), Txn(2, position="0/5", snapshot=True)
    done = Checkpoint(WalPosition(5, ()))
    items = [
        ChangeBatch([RowChange(table, Op.read, chunk1, after=[i, None, "e"]) for i in (1, 2)]),
        done,
        ChangeBatch([RowChange(table, Op.read, chunk2, after=[i, None, "e"]) for i in (3, 4)]),
        done,
    ]
    marked = list(mark_snapshot_end(iter(items), lambda: False))
    assert [type(i).__name__ for i in marked] == ["ChangeBatch", "Checkpoint", "ChangeBatch", "Checkpoint"]
    out = events(marked)
    assert [e.value["source"]["snapshot"] for e in out] == ["true", "true", "true", "last"]  # type: ignore[index]
    assert {e.value["op"] for e in out} == {"r"}  # type: ignore[index]
    assert all(e.value["transaction"] is None for e in out)  # type: ignore[index]
    assert all(e.value["source"]["txId"] is None and e.value["source"]["lsn"] == 5 for e in out)  # type: ignore[index]
    # A snapshot that stopped early has no last row.
    again = [ChangeBatch([RowChange(table, Op.read, Txn(1, position="0/5", snapshot=True), after=[1, None, "e"])])]
    stopped = events(list(mark_snapshot_end(iter(again), lambda: True)))
    assert stopped[0].value["source"]["snapshot"] == "true"  # type: ignore[index]


def test_transactions_need_an_envelope_with_events() -> None:
    with pytest.raises(ValidationError, match="transactions needs envelope: change or debezium"):
        PostgresWalConfig(
            name="pg",
            url="postgresql://x/y",
            tables=["public.t"],
            envelope=Envelope.state,
            transactions={"topic": "t"},  # type: ignore[arg-type]
        )
    config = PostgresWalConfig(name="pg", url="postgresql://x/y", tables=["public.t"], transactions={})  # type: ignore[arg-type]
    assert config.transaction_topic() == "{source}.transaction"


def test_reads_of_a_snapshot_on_demand_say_incremental() -> None:
    from liberator.capture import Txn
    from liberator.capture.debezium import snapshot_value

    txn = Txn(0, snapshot=True)
    assert snapshot_value(txn) == "true"
    txn.snapshot_incremental = True
    assert snapshot_value(txn) == "incremental"
    assert snapshot_value(Txn(0)) == "false"
