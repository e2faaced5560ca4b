"""`envelope: debezium` and `transactions:` against real PostgreSQL and MariaDB, through the daemon.

A stock consumer (confluent-kafka's AvroDeserializer) decodes liberator's records with Debezium's own
schemas (tests/debezium, reconstructed from Debezium 3.6.1's sources) as reader schemas: every field, by
name and type, must be there. One multi-table transaction's BEGIN and END carry the counts of its events.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from liberator.capture import Txn
from liberator.connectors.postgres_wal.debezium import transaction_id as pg_transaction_id
from liberator.registry.client import RegistryClient
from liberator_testbed import MySQLInstance, unique_name
from tests.integration.postgres_wal_support import Run, WalDb
from tests.integration.sql_sink_support import count, table_rows
from tests.integration.test_mysql_binlog_helpers import source_yaml as binlog_yaml
from tests.support import DaemonThread, app_config, cli, read_records, wait_for

SAMPLES = Path(__file__).parent.parent / "debezium"
PREFIX = "dbserver1"  # the samples' topic prefix: the source's name


def _bare(schema: Any) -> Any:
    """Only what says how a record is written and read: names, types, defaults (no properties)."""
    if isinstance(schema, dict):
        return {k: _bare(v) for k, v in schema.items() if not k.startswith(("connect.", "liberator."))}
    if isinstance(schema, list):
        return [_bare(v) for v in schema]
    return schema


class StockConsumer:
    """Decodes a topic with Confluent's AvroDeserializer and Debezium's schemas as the reader schemas."""

    def __init__(self, registry_url: str, sample: Path) -> None:
        self.sample = json.loads(sample.read_text())
        client = SchemaRegistryClient({"url": registry_url})
        self.key = AvroDeserializer(client, json.dumps(self.sample["key"]))
        self.value = AvroDeserializer(client, json.dumps(self.sample["value"]))
        self.registry = RegistryClient(registry_url)

    def read(self, bootstrap: str, topic: str, expect: int) -> list[tuple[Any, Any]]:
        messages = read_records(bootstrap, topic, expect=expect)
        assert len(messages) == expect, f"{topic}: {len(messages)} records, not {expect}"
        out = []
        for message in messages:
            self.same_fields(message.value())
            key = self.key(message.key(), SerializationContext(topic, MessageField.KEY))
            value = self.value(message.value(), SerializationContext(topic, MessageField.VALUE))
            out.append((key, value))
        return out

    def same_fields(self, payload: bytes | None) -> None:
        """The writer schema (what liberator registered) has every field of Debezium's, with its type."""
        if payload is None:
            return  # a tombstone
        writer = self.registry.get_schema(int.from_bytes(payload[1:5], "big"))
        assert _bare(writer) == _bare(self.sample["value"])


def test_postgres_wal_debezium_envelope_and_transaction_topic(
    pg_url: str, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    db = WalDb(pg_url)
    db.run("CREATE TABLE customers (id integer PRIMARY KEY, name text, email varchar(255) NOT NULL)")
    db.run("ALTER TABLE customers REPLICA IDENTITY FULL")
    db.run("CREATE TABLE orders (id integer PRIMARY KEY, customer_id integer NOT NULL)")
    db.run("INSERT INTO customers VALUES (1, 'Ann', 'ann@x'), (2, 'Bob', 'bob@x')")
    source = (
        f"  - name: {PREFIX}\n    type: postgres_wal\n    url: {db.url}\n    tables: [customers, orders]\n"
        f'    slot: {db.tag}\n    publication: {db.tag}\n    topic: "{db.tag}.{{schema}}.{{table}}"\n'
        f'    envelope: debezium\n    transactions: {{topic: "{db.tag}.transaction"}}\n'
    )
    config = app_config(tmp_path, kafka_bootstrap, registry_url, source)
    consumer = StockConsumer(registry_url, SAMPLES / "postgresql_customers.json")
    customers, orders = f"{db.tag}.public.customers", f"{db.tag}.public.orders"
    with DaemonThread(config):
        snapshot = consumer.read(kafka_bootstrap, customers, expect=2)
        with db.conn.transaction():
            db.run("INSERT INTO customers VALUES (3, NULL, 'cy@x')")
            db.run("INSERT INTO orders VALUES (10, 3), (11, 1)")
            db.run("UPDATE customers SET name = 'Anne' WHERE id = 1")
            db.run("DELETE FROM customers WHERE id = 2")
        changes = consumer.read(kafka_bootstrap, customers, expect=2 + 4)[2:]
        order_records = read_records(kafka_bootstrap, orders, expect=2)
        transactions = StockConsumer(registry_url, SAMPLES / "transaction.json").read(
            kafka_bootstrap, f"{db.tag}.transaction", expect=2
        )
    _check_snapshot(snapshot, "postgresql")
    (_, insert), (_, update), (_, delete), (tomb_key, tombstone) = changes
    assert (
        insert["op"] == "c" and insert["before"] is None and insert["after"] == {"id": 3, "name": None, "email": "cy@x"}
    )
    assert update["op"] == "u" and update["before"]["name"] == "Ann" and update["after"]["name"] == "Anne"
    assert delete["op"] == "d" and delete["after"] is None and delete["before"]["id"] == 2
    assert tombstone is None and tomb_key == {"id": 2}
    source_block = insert["source"]
    assert (source_block["connector"], source_block["name"], source_block["snapshot"]) == (
        "postgresql",
        PREFIX,
        "false",
    )
    assert (source_block["schema"], source_block["table"]) == ("public", "customers")
    assert source_block["db"] == db.url.rsplit("/", 1)[-1] and isinstance(source_block["txId"], int)
    assert isinstance(source_block["lsn"], int) and source_block["lsn"] > 0
    tx_id = insert["transaction"]["id"]
    assert tx_id == f"{source_block['txId']}:{source_block['lsn']}"
    assert [(v["transaction"]["total_order"], v["transaction"]["data_collection_order"]) for _, v in changes[:3]] == [
        (1, 1),
        (4, 2),
        (5, 3),
    ]
    assert len(order_records) == 2
    _check_transaction(transactions, tx_id, {"public.customers": 3, "public.orders": 2})


def _check_snapshot(snapshot: list[tuple[Any, Any]], connector: str) -> None:
    values = [value for _key, value in snapshot]
    assert [v["op"] for v in values] == ["r", "r"]
    assert [v["source"]["snapshot"] for v in values] == ["true", "last"]
    assert all(v["transaction"] is None and v["source"]["connector"] == connector for v in values)
    assert sorted(v["after"]["id"] for v in values) == [1, 2]


def _check_transaction(records: list[tuple[Any, Any]], tx_id: str, counts: dict[str, int]) -> None:
    (begin_key, begin), (end_key, end) = records
    assert begin_key == end_key == {"id": tx_id}
    assert (begin["status"], begin["id"], begin["event_count"], begin["data_collections"]) == (
        "BEGIN",
        tx_id,
        None,
        None,
    )
    assert (end["status"], end["id"], end["event_count"]) == ("END", tx_id, sum(counts.values()))
    assert {c["data_collection"]: c["event_count"] for c in end["data_collections"]} == counts
    assert end["ts_ms"] == begin["ts_ms"] > 0


def test_mysql_binlog_debezium_envelope_and_transaction_topic(
    mariadb_server: MySQLInstance, mysql_url: str, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    database = mysql_url.rsplit("/", 1)[-1]
    run = mariadb_server.execute
    run(
        "CREATE TABLE customers (id INT PRIMARY KEY, name VARCHAR(255), email VARCHAR(255) NOT NULL)", database=database
    )
    run("CREATE TABLE orders (id INT PRIMARY KEY, customer_id INT NOT NULL)", database=database)
    run("INSERT INTO customers VALUES (1, 'Ann', 'ann@x'), (2, 'Bob', 'bob@x')", database=database)
    prefix = unique_name("dbz")
    extra = f'    envelope: debezium\n    transactions: {{topic: "{prefix}.transaction"}}\n'
    source = binlog_yaml(mariadb_server, f"[{database}.customers, {database}.orders]", prefix, extra, name=PREFIX)
    config = app_config(tmp_path, kafka_bootstrap, registry_url, source)
    sample = json.loads((SAMPLES / "mysql_customers.json").read_text())
    # The sample's database is `inventory`; the test's has its own name, so the record names follow it.
    renamed = json.dumps(sample).replace("dbserver1.inventory.", f"{PREFIX}.{database}.")
    (tmp_path / "mysql_customers.json").write_text(renamed)
    consumer = StockConsumer(registry_url, tmp_path / "mysql_customers.json")
    customers = f"{prefix}.{database}.customers"
    with DaemonThread(config):
        snapshot = consumer.read(kafka_bootstrap, customers, expect=2)
        conn = mariadb_server.connect(database=database)
        with conn.cursor() as cur:  # one transaction over both tables
            cur.execute("BEGIN")
            cur.execute("INSERT INTO customers VALUES (3, NULL, 'cy@x')")
            cur.execute("INSERT INTO orders VALUES (10, 3), (11, 1)")
            cur.execute("UPDATE customers SET name = 'Anne' WHERE id = 1")
            cur.execute("DELETE FROM customers WHERE id = 2")
            cur.execute("COMMIT")
        conn.close()
        changes = consumer.read(kafka_bootstrap, customers, expect=2 + 4)[2:]
        transactions = StockConsumer(registry_url, SAMPLES / "transaction.json").read(
            kafka_bootstrap, f"{prefix}.transaction", expect=2
        )
    _check_snapshot(snapshot, "mysql")
    (_, insert), (_, update), (_, delete), (tomb_key, tombstone) = changes
    assert insert["op"] == "c" and insert["after"] == {"id": 3, "name": None, "email": "cy@x"}
    assert update["op"] == "u" and update["before"]["name"] == "Ann" and update["after"]["name"] == "Anne"
    assert delete["op"] == "d" and delete["after"] is None and tombstone is None and tomb_key == {"id": 2}
    block = insert["source"]
    assert (block["connector"], block["name"], block["db"], block["table"]) == ("mysql", PREFIX, database, "customers")
    assert block["file"].startswith("binlog") and block["pos"] > 0 and block["server_id"] > 0
    assert block["gtid"] is not None and insert["transaction"]["id"] == block["gtid"]
    tx_id = insert["transaction"]["id"]
    assert [v["transaction"]["total_order"] for _, v in changes[:3]] == [1, 4, 5]
    _check_transaction(transactions, tx_id, {f"{database}.customers": 3, f"{database}.orders": 2})


def test_end_comes_after_every_event_of_a_transaction_spanning_batches(pg_url: str) -> None:
    """A transaction larger than a batch (1,000 changes): its END is the last record made of it."""
    db = WalDb(pg_url)
    db.run("CREATE TABLE a (id integer PRIMARY KEY)")
    db.run("CREATE TABLE b (id integer PRIMARY KEY)")
    config = db.config(
        ["a", "b"], name=PREFIX, envelope="debezium", transactions={"topic": f"{db.tag}.transaction"}, snapshot="never"
    )
    with Run(config) as run:
        run.wait(lambda: run.position is not None, what="the slot")
        with db.conn.transaction():
            db.run("INSERT INTO a SELECT generate_series(1, 1500)")
            db.run("INSERT INTO b SELECT generate_series(1, 700)")
        events = run.wait_events(2200 + 2, timeout=60)
    topics = [e.stream.topic for e in events]
    end = max(i for i, t in enumerate(topics) if t.endswith(".transaction"))
    assert end == len(events) - 1 and topics.count(f"{db.tag}.transaction") == 2
    assert events[0].value["status"] == "BEGIN"  # type: ignore[index]
    value = events[end].value
    assert value["event_count"] == 2200  # type: ignore[index]
    assert {c["data_collection"]: c["event_count"] for c in value["data_collections"]} == {  # type: ignore[index]
        "public.a": 1500,
        "public.b": 700,
    }
    first = events[1].value["source"]  # type: ignore[index]
    assert value["id"] == pg_transaction_id(Txn(0, id=str(first["txId"]), position=_lsn(first["lsn"])))  # type: ignore[index]


def _lsn(value: int) -> str:
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


def test_the_sql_sink_applies_a_debezium_topic(
    pg_url: str, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    """A `debezium` topic replicates into a table as a `change` topic does: after-images, then deletes."""
    db = WalDb(pg_url)
    db.run("CREATE TABLE customers (id integer PRIMARY KEY, name text, email varchar(255) NOT NULL)")
    db.run("INSERT INTO customers VALUES (1, 'Ann', 'ann@x'), (2, 'Bob', 'bob@x')")
    topic = f"{db.tag}.public.customers"
    target = f"sqlite:///{tmp_path}/replica.db"
    config = app_config(
        tmp_path,
        kafka_bootstrap,
        registry_url,
        f"  - name: {PREFIX}\n    type: postgres_wal\n    url: {db.url}\n    tables: [customers]\n"
        f'    slot: {db.tag}\n    publication: {db.tag}\n    topic: "{db.tag}.{{schema}}.{{table}}"\n'
        "    envelope: debezium\nsinks:\n"
        f"  - name: replica\n    type: sql\n    url: {target}\n    topics: [{topic}]\n"
        '    table: "sink_{table}"\n    create: true\n    batch: {size: 500, time: 200ms}\n'
        f"    consumer: {{group_id: {db.tag}-replica, "
        "settings: {session.timeout.ms: 6000, fetch.wait.max.ms: 10}}\n",
    )
    with DaemonThread(config):
        wait_for(lambda: count(target, "sink_customers") == 2, what="the snapshot in the sink")
        db.run("INSERT INTO customers VALUES (3, NULL, 'cy@x')")
        db.run("UPDATE customers SET name = 'Anne' WHERE id = 1")
        db.run("DELETE FROM customers WHERE id = 2")
        expected = [(1, "Anne", "ann@x"), (3, None, "cy@x")]
        wait_for(lambda: table_rows(target, "sink_customers") == expected, what="the sink equal to the source")


def test_check_asks_for_before_images_under_the_debezium_envelope(
    pg_url: str, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    """Debezium's envelope has `before` as the change envelope does: REPLICA IDENTITY DEFAULT is flagged."""
    db = WalDb(pg_url)
    db.run("CREATE TABLE items (id integer PRIMARY KEY, name text)")  # REPLICA IDENTITY DEFAULT
    source = (
        f"  - name: {PREFIX}\n    type: postgres_wal\n    url: {db.url}\n    tables: [items]\n"
        f"    slot: {db.tag}\n    publication: {db.tag}\n    envelope: debezium\n    replica_identity: require_full\n"
    )
    result = cli("check", str(app_config(tmp_path, kafka_bootstrap, registry_url, source)))
    assert result.returncode != 0
    assert "has REPLICA IDENTITY DEFAULT" in result.stdout + result.stderr
