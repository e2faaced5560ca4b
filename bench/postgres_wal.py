"""WAL source throughput next to a bare pgoutput stream read of the same changes, in the same run.

    python bench/postgres_wal.py [--rows 200000] [--tx-rows 1000] [--transforms]

Starts its own PostgreSQL 15, Kafka-protocol broker and schema registry (liberator_testbed), makes three
slots on one publication, writes `--rows` inserts into `orders` in transactions of `--tx-rows`, then
reads the same changes three ways: a bare START_REPLICATION read that only counts Insert messages (the
1.00 reference), the source alone (pgoutput -> events, no Avro, no Kafka), and the whole daemon until
Kafka acknowledged every event (WAL -> Avro -> Kafka). The machine is noisy: read the ratio column.
"""

from __future__ import annotations

import argparse
import json
import logging
import select
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
from benchkit import ResultTable, count_events, daemon_until_acked, servers

from liberator.connectors.postgres_wal import PostgresWalSource
from liberator.connectors.postgres_wal.config import PostgresWalConfig
from liberator.connectors.postgres_wal.position import WalPosition, parse_lsn
from liberator.connectors.postgres_wal.stream import status_update
from liberator.offsets.base import StoredOffset
from liberator.offsets.file import FileOffsetStore
from liberator.source import SourceContext

SOURCE = "bench"
PUBLICATION = "bench"


def load(dsn: str, rows: int, tx_rows: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for start in range(1, rows + 1, tx_rows):
            end = min(start + tx_rows - 1, rows)
            conn.execute(
                "INSERT INTO orders SELECT i, 'customer-' || (i %% 1000), (i %% 100000) / 100.0, i %% 50 + 1,"
                " CASE WHEN i %% 10 = 0 THEN NULL ELSE 'note ' || i END,"
                " TIMESTAMP '2024-01-01' + i * INTERVAL '1 millisecond'"
                " FROM generate_series(%s::bigint, %s::bigint) AS i",
                (start, end),
            )


def bare_stream(dsn: str, slot: str, rows: int) -> int:
    """START_REPLICATION and count Insert messages: the cost of the wire and libpq alone."""
    conn = psycopg.connect(dsn, replication="database", autocommit=True)
    try:
        conn.execute(
            f"START_REPLICATION SLOT {slot} LOGICAL 0/0 (proto_version '1', publication_names '{PUBLICATION}')"
        )
        pgconn = conn.pgconn
        count = 0
        deadline = time.monotonic() + 600
        while count < rows:
            if time.monotonic() > deadline:
                raise SystemExit(f"the bare stream delivered {count} of {rows} inserts in 10 minutes")
            nbytes, data = pgconn.get_copy_data(1)
            if nbytes == 0:
                select.select([pgconn.socket], [], [], 1.0)
                pgconn.consume_input()
                continue
            if nbytes < 0:
                raise SystemExit("the bare stream ended early")
            frame = bytes(data)
            if frame[0] == 0x77 and frame[25] == 0x49:  # XLogData carrying an Insert
                count += 1
            elif frame[0] == 0x6B and frame[17]:
                pgconn.put_copy_data(status_update(0))
                pgconn.flush()
        return count
    finally:
        conn.close()


def source_alone(dsn: str, slot: str, rows: int) -> int:
    stop = threading.Event()
    config = PostgresWalConfig(
        name=SOURCE, url=dsn, tables=["orders"], slot=slot, publication=PUBLICATION, snapshot="never"
    )
    source = PostgresWalSource(config, SourceContext("bench", stop, logging.getLogger("bench")))
    # With no position at all, an existing slot means a lost offsets store, which the source refuses.
    return count_events(source, slot_position(dsn, slot), rows, stop)


def slot_position(dsn: str, slot: str) -> WalPosition:
    """Where a slot made before the inserts stands, as the position a daemon that made it stored."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = %s", (slot,)
        ).fetchone()
    assert row is not None, f"no slot {slot}"
    return WalPosition(parse_lsn(str(row[0])))


def best(run: Callable[[int], int], repeat: int) -> tuple[int, float]:
    """(count, seconds) of the fastest of `repeat` runs (run(i) returns its count)."""
    results = []
    for i in range(repeat):
        t0 = time.perf_counter()
        count = run(i)
        results.append((count, time.perf_counter() - t0))
    return min(results, key=lambda r: r[1] / max(r[0], 1))


# The transforms bench: a mask, a rename and a filter that every row passes (so the counts match).
TRANSFORMS = (
    "    mask: {public.orders: {note: {truncate: 8}, customer: hash}}\n    mask_salt: bench-salt\n"
    "    rename: {public.orders: {qty: quantity}}\n"
    '    filter: {public.orders: "qty >= 0"}\n'
    '    topic: "bench.transformed.{table}"\n'  # its own subjects: the transformed shape is another schema
)


def write_config(workdir: Path, dsn: str, slot: str, bootstrap: str, registry: str, extra: str = "") -> Path:
    q = json.dumps
    workdir.mkdir(exist_ok=True)
    path = workdir / "liberator.yaml"
    offsets = workdir / "offsets.json"
    start = slot_position(dsn, slot).to_json()
    FileOffsetStore(offsets, "bench").save(StoredOffset.now(SOURCE, "postgres_wal", start))
    path.write_text(
        f"name: bench\nkafka:\n  bootstrap_servers: {q(bootstrap)}\nschema_registry:\n  url: {q(registry)}\n"
        f"offsets:\n  store: file\n  path: {q(str(workdir / 'offsets.json'))}\n  flush_interval: 200ms\n"
        f"sources:\n  - name: {SOURCE}\n    type: postgres_wal\n    url: {q(dsn)}\n    tables: [orders]\n"
        f"    slot: {slot}\n    publication: {PUBLICATION}\n    snapshot: never\n{extra}"
    )
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--rows", type=int, default=200_000, help="inserted rows (= change events)")
    parser.add_argument("--tx-rows", type=int, default=1000, help="rows per transaction")
    parser.add_argument(
        "--repeat", type=int, default=2, help="runs of the bare read and the source alone (best counts)"
    )
    parser.add_argument(
        "--transforms",
        action="store_true",
        help="also run the daemon with a mask, a rename and a filter on the table (the transforms' cost)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    table = ResultTable()
    with servers("postgresql") as (db, bootstrap, registry), tempfile.TemporaryDirectory() as tmp:
        db.create_database("bench")
        dsn = db.dsn("bench")
        db.execute(
            "CREATE TABLE orders (id BIGINT PRIMARY KEY, customer VARCHAR(50) NOT NULL, total NUMERIC(10, 2),"
            " qty INTEGER NOT NULL, note TEXT, updated_at TIMESTAMP(6) NOT NULL)",
            database="bench",
        )
        db.execute(f"CREATE PUBLICATION {PUBLICATION} FOR TABLE orders", database="bench")
        slots = [f"bare{i}" for i in range(args.repeat)] + [f"alone{i}" for i in range(args.repeat)] + ["daemon"]
        slots += ["transformed"] if args.transforms else []
        for slot in slots:
            db.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,), database="bench")
        print(f"writing {args.rows} rows in transactions of {args.tx_rows}...", flush=True)
        t0 = time.perf_counter()
        load(dsn, args.rows, args.tx_rows)
        print(f"  written in {time.perf_counter() - t0:.1f}s", flush=True)

        reference = "bare pgoutput stream read (count Insert messages)"
        # The first read of fresh WAL pays for the disk and cold caches: the best of --repeat reads counts.
        table.add(reference, *best(lambda i: bare_stream(dsn, f"bare{i}", args.rows), args.repeat))
        table.add(
            "source alone (pgoutput -> events, no Avro/Kafka)",
            *best(lambda i: source_alone(dsn, f"alone{i}", args.rows), args.repeat),
        )
        seconds = daemon_until_acked(write_config(Path(tmp), dsn, "daemon", bootstrap, registry), args.rows)
        table.add("daemon, start -> all acked by Kafka (WAL->Avro->Kafka)", args.rows, seconds)
        if args.transforms:
            config = write_config(Path(tmp) / "t", dsn, "transformed", bootstrap, registry, TRANSFORMS)
            seconds = daemon_until_acked(config, args.rows)
            table.add("daemon with mask + rename + filter on the table", args.rows, seconds)
    table.print(reference)


if __name__ == "__main__":
    main()
