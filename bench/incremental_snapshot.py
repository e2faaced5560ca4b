"""An incremental snapshot on demand (postgres_wal) while a writer streams changes, next to a bare keyset
SELECT of the same table in the same run.

    python bench/incremental_snapshot.py [--rows 1000000] [--chunk 10000] [--writes 1000] [--workers N]
        [--initial consistent] [--initial incremental]

Starts its own PostgreSQL 15, Kafka-protocol broker and schema registry (liberator_testbed), loads `items`,
starts the daemon (its initial snapshot of the table, timed too: once per `--initial` mode, each on its own
slot and topics, one daemon after the other), then with the last daemon a writer updating random rows at
`--writes` per second, asks for a snapshot of the table through the admin endpoint and times it until the
source reports it done and Kafka acknowledged its rows. `--workers` is the source's `snapshot_workers`.
The reference is a bare keyset SELECT of the whole table in chunks of the same size (psycopg, text rows).
Read the ratio column, not rows/s.

Two ceiling phases show how far any design that publishes one Kafka record per row can go here: producing
pre-encoded records alone (no read, no encoding, one delivery callback per record as the daemon has), and
the bare keyset SELECT producing one such record per row it reads (reading and producing, still no
encoding). `--no-ceiling` leaves them out.
"""

from __future__ import annotations

import argparse
import logging
import random
import tempfile
import threading
import time
from pathlib import Path

import psycopg
from benchkit import ResultTable, servers
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from liberator.config import KafkaConfig, load_config
from liberator.publisher import producer_settings
from liberator.runtime import Daemon

# About the size of one row's change event in the daemon (key and value framed, the source block included).
CEILING_VALUE = b"\x00\x00\x00\x00\x02" + bytes(75)


def bare_keyset(dsn: str, chunk: int) -> int:
    seen, after = 0, 0
    with psycopg.connect(dsn, autocommit=True) as conn:
        while True:
            rows = conn.execute(
                "SELECT id, version, note, amount FROM items WHERE id > %s ORDER BY id LIMIT %s", (after, chunk)
            ).fetchall()
            seen += len(rows)
            if len(rows) < chunk:
                return seen
            after = rows[-1][0]


def produce_ceiling(bootstrap: str, topic: str, rows: int, dsn: str | None, chunk: int) -> tuple[int, float]:
    """(records, seconds until Kafka acknowledged them all): pre-encoded records produced as the daemon produces
    them (its producer settings, a delivery callback each, a poll per chunk); one per row read with `dsn`."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result()
    producer = Producer(producer_settings("bench", KafkaConfig(bootstrap_servers=bootstrap)))
    acked = [0]

    def on_delivery(error: object, _message: object) -> None:
        if error is not None:
            raise SystemExit(f"delivery failed: {error}")
        acked[0] += 1

    def produce(key: bytes, now_ms: int) -> None:
        while True:
            try:
                producer.produce(topic, CEILING_VALUE, key, timestamp=now_ms, on_delivery=on_delivery)
                return
            except BufferError:
                producer.poll(0.01)

    produced = 0
    started = time.perf_counter()
    if dsn is None:
        for start in range(0, rows, chunk):
            now_ms = int(time.time() * 1000)
            for i in range(start, min(rows, start + chunk)):
                produce(i.to_bytes(8, "big"), now_ms)
            producer.poll(0)
        produced = rows
    else:
        after = 0
        with psycopg.connect(dsn, autocommit=True) as conn:
            while True:
                page = conn.execute(
                    "SELECT id, version, note, amount FROM items WHERE id > %s ORDER BY id LIMIT %s", (after, chunk)
                ).fetchall()
                now_ms = int(time.time() * 1000)
                for row in page:
                    produce(row[0].to_bytes(8, "big"), now_ms)
                producer.poll(0)
                produced += len(page)
                if len(page) < chunk:
                    break
                after = page[-1][0]
    producer.flush()
    assert acked[0] == produced, (acked[0], produced)
    return produced, time.perf_counter() - started


def writer(dsn: str, rows: int, per_second: int, stop: threading.Event, done: list[int]) -> None:
    rng = random.Random(1)
    with psycopg.connect(dsn, autocommit=True) as conn:
        start = time.monotonic()
        while not stop.is_set():
            due = int((time.monotonic() - start) * per_second)
            while done[0] < due and not stop.is_set():
                conn.execute("UPDATE items SET version = version + 1 WHERE id = %s", (rng.randint(1, rows),))
                done[0] += 1
            time.sleep(0.005)


def initial_snapshot(
    tmp: Path, source: str, mode: str, args: argparse.Namespace, dsn: str, bootstrap: str, registry: str
) -> tuple[Daemon, threading.Thread, float]:
    """A daemon with a source of its own (slot, topics, offsets) started; seconds until its snapshot is acked."""
    config = tmp / f"{source}.yaml"
    config.write_text(
        f"name: {source}\nkafka:\n  bootstrap_servers: {bootstrap}\nschema_registry:\n  url: {registry}\n"
        f"offsets:\n  store: file\n  path: {tmp}/{source}.json\nsources:\n"
        f"  - name: {source}\n    type: postgres_wal\n    url: {dsn}\n    tables: [items]\n"
        f"    slot: {source}\n    publication: bench\n    snapshot_chunk: {args.chunk}\n"
        f"    snapshot_mode: {mode}\n    snapshot_workers: {args.workers}\n"
    )
    daemon = Daemon(load_config(config))
    thread = threading.Thread(target=daemon.run, name="daemon", daemon=True)
    t0 = time.perf_counter()
    thread.start()
    while source not in daemon.metrics.sources:
        time.sleep(0.01)
    status = daemon.metrics.sources[source]
    while status.events_acked < args.rows:
        if status.state == "failed":
            raise SystemExit(f"the source failed: {status.error}")
        time.sleep(0.01)
    return daemon, thread, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=10_000)
    parser.add_argument("--writes", type=int, default=1000, help="updates per second during the snapshot")
    parser.add_argument("--workers", type=int, default=1, help="snapshot_workers: chunks read at once per window")
    parser.add_argument(
        "--initial",
        action="append",
        choices=["consistent", "incremental"],
        help="snapshot_mode of the initial snapshot; repeat to time both (default: consistent)",
    )
    parser.add_argument("--no-ceiling", action="store_true", help="leave out the two produce-ceiling phases")
    args = parser.parse_args()
    args.initial = args.initial or ["consistent"]
    logging.basicConfig(level=logging.WARNING)
    with servers("postgresql") as (db, bootstrap, registry), tempfile.TemporaryDirectory() as tmp:
        db.create_database("bench")
        dsn = db.url("bench").replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                "CREATE TABLE items (id int PRIMARY KEY, version int NOT NULL, note text, amount numeric(12,2))"
            )
            print(f"loading {args.rows} rows ...", flush=True)
            conn.execute(
                f"INSERT INTO items SELECT i, 1, 'note ' || i, i / 100.0 FROM generate_series(1, {args.rows}) AS i"
            )
            conn.execute("VACUUM ANALYZE items")
        table = ResultTable("rows")
        t0 = time.perf_counter()
        n = bare_keyset(dsn, args.chunk)
        table.add("bare keyset SELECT (reference)", n, time.perf_counter() - t0)
        if not args.no_ceiling:
            count, seconds = produce_ceiling(bootstrap, "ceiling.produce", args.rows, None, args.chunk)
            table.add("ceiling: produce pre-encoded records alone", count, seconds)
            count, seconds = produce_ceiling(bootstrap, "ceiling.read", args.rows, dsn, args.chunk)
            table.add("ceiling: bare keyset SELECT + produce per row", count, seconds)

        running: tuple[Daemon, threading.Thread] | None = None
        for mode in args.initial:
            if running is not None:  # one daemon at a time: each initial snapshot has the machine to itself
                running[0].stop.set()
                running[1].join(60)
            source = f"bench_{mode}"
            daemon, thread, seconds = initial_snapshot(Path(tmp), source, mode, args, dsn, bootstrap, registry)
            table.add(f"initial snapshot, {mode}, daemon", args.rows, seconds)
            running = daemon, thread
        status = daemon.metrics.sources[source]

        stop, writes = threading.Event(), [0]
        load_thread = threading.Thread(target=writer, args=(dsn, args.rows, args.writes, stop, writes), daemon=True)
        load_thread.start()
        try:
            before = status.events_acked
            t0 = time.perf_counter()
            code, answer = daemon.admin.act(source, "snapshot", {"tables": ["items"]})
            assert code == 202, answer
            desk = daemon.admin.desks[source]
            while desk.status()["queued"] or desk.status()["running"]:
                if status.state == "failed":
                    raise SystemExit(f"the source failed: {status.error}")
                time.sleep(0.01)
            while status.events_acked - before < args.rows - writes[0]:  # at least its rows, acknowledged
                time.sleep(0.01)
            seconds = time.perf_counter() - t0
            snapshot_rows = status.events_acked - before - writes[0]
        finally:
            stop.set()
            load_thread.join()
            daemon.stop.set()
            thread.join(60)
        table.add(f"incremental snapshot under {args.writes} writes/s", snapshot_rows, seconds)
        table.print(
            "bare keyset SELECT (reference)",
            f"{args.rows} rows, chunks of {args.chunk}, snapshot_workers {args.workers}; the writer did {writes[0]} "
            "updates during the incremental snapshot (its rows = events acknowledged meanwhile minus those "
            "updates; rows a window dropped are carried by the stream instead)",
        )


if __name__ == "__main__":
    main()
