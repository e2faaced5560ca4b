"""SQL sink throughput into PostgreSQL next to a bare executemany upsert of the same rows, in the same run.

    python bench/sql_sink.py [--rows 200000] [--keys 100000] [--batch 2000]

Starts its own PostgreSQL, Kafka-protocol broker and schema registry (liberator_testbed), produces `--rows`
state records for `--keys` distinct keys (so later records update earlier rows) to a 4-partition topic,
then times: a bare psycopg `executemany` of `INSERT .. ON CONFLICT DO UPDATE` over the same rows in
batches of `--batch`, one transaction each (the 1.00 reference), and the daemon running the SQL sink
until every record is applied (from start, which includes the consumer-group join, and from the first
applied batch). Both tables must end equal. Read the ratio column, not rows/s: the machine is noisy.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import tempfile
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa
from benchkit import ResultTable, servers
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from liberator import sqldb
from liberator.avro import AvroEncoder, DatumConverter, key_schema, namespace_for, value_schema
from liberator.config import load_config
from liberator.registry.client import RegistryClient
from liberator.runtime import Daemon
from liberator.sqltypes import reflect_table

DDL = (
    "CREATE TABLE {name} (id BIGINT PRIMARY KEY, customer VARCHAR(50) NOT NULL, total NUMERIC(10, 2), "
    "qty INTEGER NOT NULL, updated_at TIMESTAMP(6) NOT NULL)"
)
UPSERT = (
    "INSERT INTO orders_bare (id, customer, total, qty, updated_at) VALUES (%s, %s, %s, %s, %s) "
    "ON CONFLICT (id) DO UPDATE SET customer = excluded.customer, total = excluded.total, qty = excluded.qty, "
    "updated_at = excluded.updated_at"
)


def make_rows(count: int, keys: int) -> list[tuple[int, str, Decimal, int, dt.datetime]]:
    start = dt.datetime(2024, 1, 1)
    return [
        (i % keys + 1, f"customer {i % 977}", Decimal(i % 100000) / 100, i, start + dt.timedelta(microseconds=i))
        for i in range(count)
    ]


def produce(url: str, bootstrap: str, registry_url: str, topic: str, rows: list[Any]) -> None:
    engine = sqldb.create_engine(url)
    with engine.connect() as conn:
        table = reflect_table(conn, "public", "orders")
    engine.dispose()
    namespace = namespace_for("bench", "legacy", "public", "orders")
    registry = RegistryClient(registry_url)
    keys = AvroEncoder(key_schema(table, namespace), registry.register(f"{topic}-key", key_schema(table, namespace)))
    values = AvroEncoder(
        value_schema(table, namespace), registry.register(f"{topic}-value", value_schema(table, namespace))
    )
    convert, convert_key = DatumConverter(table), DatumConverter.for_key(table)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, 4, 1)]).values():
        future.result(30)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "queue.buffering.max.messages": 500000})
    for row in rows:
        producer.produce(
            topic,
            key=keys.encode(convert_key.convert_values(row[:1])),
            value=values.encode(convert.convert_values(row)),
        )
        producer.poll(0)
    if producer.flush(120):
        raise SystemExit("the broker did not acknowledge every record")


def bare_upsert(pg_dsn: str, rows: list[Any], batch: int) -> float:
    with psycopg.connect(pg_dsn) as conn:
        t0 = time.perf_counter()
        for start in range(0, len(rows), batch):
            with conn.transaction(), conn.cursor() as cursor:
                cursor.executemany(UPSERT, rows[start : start + batch])
        return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=200_000, help="records produced and applied")
    parser.add_argument("--keys", type=int, default=100_000, help="distinct keys (rows - keys records are updates)")
    parser.add_argument("--batch", type=int, default=2000, help="rows per transaction (sink batch size too)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    table = ResultTable()
    with servers("postgresql") as (db, bootstrap, registry), tempfile.TemporaryDirectory() as tmp:
        db.create_database("bench")
        url = db.url("bench")
        engine = sqldb.create_engine(url)
        with engine.begin() as conn:
            for name in ("orders", "orders_bare", "orders_sink"):
                conn.execute(sa.text(DDL.format(name=name)))
        rows = make_rows(args.rows, args.keys)
        print(f"producing {len(rows)} records for {args.keys} keys...", flush=True)
        produce(url, bootstrap, registry, "bench.orders", rows)

        reference = f"bare executemany upsert, psycopg ({args.batch}/tx)"
        dsn = sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        table.add(reference, len(rows), bare_upsert(dsn, rows, args.batch))

        config = Path(tmp) / "sink.yaml"
        config.write_text(
            f"name: bench\nkafka:\n  bootstrap_servers: {bootstrap}\nschema_registry:\n  url: {registry}\n"
            f"offsets:\n  store: file\n  path: {tmp}/offsets.json\nsinks:\n  - name: sink\n    type: sql\n"
            f"    url: {url}\n    topics: [bench.orders]\n    table: orders_sink\n"
            f"    batch: {{size: {args.batch}, time: 200ms}}\n"
            "    consumer: {settings: {session.timeout.ms: 6000, fetch.wait.max.ms: 10}}\n"
        )
        daemon = Daemon(load_config(config))
        thread = threading.Thread(target=daemon.run, name="daemon", daemon=True)
        t0 = time.perf_counter()
        thread.start()
        first = None
        try:
            while True:
                status = daemon.metrics.sinks.get("sink")
                if status is not None and status.batches and first is None:
                    first = time.perf_counter()
                if status is not None and status.records_applied >= len(rows):
                    break
                if (status is not None and status.state == "failed") or not thread.is_alive():
                    raise SystemExit(f"the sink failed: {status.error if status else 'not started'}")
                time.sleep(0.005)  # a poll interval
            end = time.perf_counter()
        finally:
            daemon.stop.set()
            thread.join(60)
        table.add("SQL sink daemon, start -> all applied (incl. group join)", len(rows), end - t0)
        assert first is not None
        table.add("SQL sink daemon, first batch -> all applied", len(rows), end - first)
        with engine.connect() as conn:
            same = conn.execute(
                sa.text(
                    "SELECT count(*) FROM orders_bare b FULL JOIN orders_sink s USING (id) WHERE b IS DISTINCT FROM s"
                )
            ).scalar_one()
        engine.dispose()
        print(f"  tables equal: {'yes' if same == 0 else f'NO ({same} rows differ)'}")
    table.print(reference)


if __name__ == "__main__":
    main()
