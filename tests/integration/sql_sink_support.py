"""Shared by the SQL sink tests: configs with a query source and a sql sink over the same database."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from liberator import sqldb
from liberator.avro import AvroEncoder, DatumConverter, key_schema, namespace_for, value_schema
from liberator.envelope import Op, SourceInfo, change_schema, change_value
from liberator.registry.client import RegistryClient
from liberator.sqltypes import reflect_table
from tests.integration.legacy_db import LegacyDb


def source_yaml(legacy: LegacyDb, tables: str) -> str:
    return (
        f'  - name: legacy\n    topic: "{legacy.prefix}.{{table}}"\n    type: query\n    url: {legacy.url}\n'
        f"    tables: {tables}\n    cursor: [updated_at, id]\n    poll_interval: 100ms\n    safety_delay: 0s\n"
    )


def sink_yaml(legacy: LegacyDb, topics: str, extra: str = "", name: str = "replica", url: str | None = None) -> str:
    return "sinks:\n" + sink_entry(legacy, topics, extra, name, url)


def sink_entry(
    legacy: LegacyDb,
    topics: str,
    extra: str = "",
    name: str = "replica",
    url: str | None = None,
    table: str = "sink_{table}",
) -> str:
    return (
        f"  - name: {name}\n    type: sql\n    url: {url or legacy.url}\n    topics: {topics}\n"
        f'    table: "{table}"\n    batch: {{size: 500, time: 200ms}}\n'
        f"    consumer: {{group_id: {legacy.prefix}-{name}, "
        "settings: {session.timeout.ms: 6000, fetch.wait.max.ms: 10}}\n"
        f"{extra}"
    )


def table_rows(url: str, table: str, order: str = "id") -> list[tuple[Any, ...]]:
    """Rows as liberator's sources read them (typed through the reflected columns: SQLite text dates parsed)."""
    engine = sqldb.create_engine(url)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table(table):
                return []
            reflected = sa.Table(table, sa.MetaData(), autoload_with=conn)
            return [tuple(r) for r in conn.execute(sa.select(reflected).order_by(reflected.c[order]))]
    finally:
        engine.dispose()


def count(url: str, table: str) -> int:
    engine = sqldb.create_engine(url)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table(table):
                return -1
            return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())
    finally:
        engine.dispose()


class TopicWriter:
    """Produces liberator-shaped records for a table (state values or change envelopes), as a source would."""

    def __init__(
        self, bootstrap: str, registry: str, topic: str, url: str, table: str, envelope: str, partitions: int = 1
    ) -> None:
        self.topic = topic
        self.registry = RegistryClient(registry)
        self.producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
        admin = AdminClient({"bootstrap.servers": bootstrap})
        for future in admin.create_topics([NewTopic(topic, partitions, 1)]).values():
            future.result(30)
        self.url, self.table_name, self.envelope = url, table, envelope
        self.engine = sqldb.create_engine(url)
        self.refresh()

    def refresh(self) -> None:
        """Re-read the table's shape (after an ALTER): later events carry the new schema."""
        with self.engine.connect() as conn:
            schema = None if conn.dialect.name == "sqlite" else sa.inspect(conn).default_schema_name
            self.table = reflect_table(conn, schema, self.table_name)
        namespace = namespace_for("test", "legacy", self.table.schema or "main", self.table.name)
        value = value_schema(self.table, namespace)
        self.value_converter = DatumConverter(self.table)
        self.key_converter = DatumConverter.for_key(self.table)
        written = change_schema(value) if self.envelope == "change" else value
        self.key_encoder = AvroEncoder(
            key_schema(self.table, namespace),
            self.registry.register(f"{self.topic}-key", key_schema(self.table, namespace)),
        )
        self.value_encoder = AvroEncoder(written, self.registry.register(f"{self.topic}-value", written))
        self.info = SourceInfo("test", "legacy", "local", self.table.schema or "main", self.table.name)

    def row(self, key: int) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            found = conn.execute(sa.text(f"SELECT * FROM {self.table_name} WHERE id = :id"), {"id": key}).first()
        return None if found is None else self.value_converter.convert(found._mapping)

    def send(self, op: Op, key: int, before: dict[str, Any] | None = None) -> None:
        """One event for row `key` as it is now in the table (op d: `before` is the deleted image)."""
        key_bytes = self.key_encoder.encode({"id": key})
        after = None if op == Op.delete else self.row(key)
        if self.envelope == "change":
            value = self.value_encoder.encode(change_value(op, before, after, self.info))
            self.producer.produce(self.topic, key=key_bytes, value=value)
            if op == Op.delete:
                self.producer.produce(self.topic, key=key_bytes, value=None)
        else:
            self.producer.produce(
                self.topic, key=key_bytes, value=None if after is None else self.value_encoder.encode(after)
            )

    def send_raw(self, key: bytes | None, value: bytes | None) -> None:
        self.producer.produce(self.topic, key=key, value=value)

    def flush(self) -> None:
        assert self.producer.flush(30) == 0
