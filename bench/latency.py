"""Commit -> Kafka acknowledgement latency of single-row transactions at a steady rate, and whether it keeps up.

    python bench/latency.py                              # PostgreSQL, 5,000 commits/s for 20 s
    python bench/latency.py --rate 2000 --seconds 10     # a lighter load
    python bench/latency.py --db mariadb --rate 2000     # the binlog source

Starts its own database, Kafka-protocol broker and schema registry (liberator_testbed) and the daemon with
one CDC source (no snapshot). A writer in another process commits one-row inserts at `--rate` per second
(PostgreSQL: pgbench with a rate limit; MariaDB: a paced PyMySQL writer). For every record Kafka acknowledges,
the bench notes the time since the row's commit (the record's timestamp is its commit time): the table shows
percentiles over the steady part of the run, the rate the daemon acknowledged at, and how far behind it was
when the writer stopped (how long the last acknowledgement came after the last commit). A daemon that keeps
up acknowledges at the writer's rate and ends a few milliseconds behind; one that does not falls further
behind every second.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import multiprocessing
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchkit import servers

from liberator.config import load_config
from liberator.inflight import BatchDelivery
from liberator.runtime import Daemon

SOURCE = "bench"


class Latencies:
    """Commit -> acknowledgement times, in ms, from every delivery callback in this process.

    PostgreSQL: a record's timestamp is its commit time (ms). The binlog's event times have whole seconds
    only, so for MariaDB each acknowledgement notes its key, and `join_commit_times` takes the time from the
    row's `at` column afterwards (written by the insert itself, just before its commit: never later).
    """

    def __init__(self, by_key: bool = False) -> None:
        self.samples: list[tuple[float, float]] = []  # (ack wall time s, latency ms)
        self.keyed: list[tuple[float, bytes]] = []  # (ack wall time s, the record's key), when `by_key`
        original = BatchDelivery.on_delivery
        samples, keyed = self.samples, self.keyed

        def on_delivery(delivery: BatchDelivery, error: Any, message: Any) -> None:
            original(delivery, error, message)
            if error is None and message.value() is not None:  # not the tombstones (none here)
                now = time.time()
                if by_key:
                    keyed.append((now, message.key()))
                else:
                    samples.append((now, now * 1000 - message.timestamp()[1]))

        BatchDelivery.on_delivery = on_delivery  # type: ignore[method-assign]

    def join_commit_times(self, written_at: dict[int, float]) -> None:
        """Latencies of the keyed acknowledgements: `written_at` is id -> the row's `at` (epoch seconds)."""
        for acked, key in self.keyed:
            # Confluent framing (5 bytes), then the key record's only field: a zig-zag varint (the BIGINT id)
            value, shift = 0, 0
            for byte in key[5:]:
                value |= (byte & 0x7F) << shift
                shift += 7
                if not byte & 0x80:
                    break
            row_id = (value >> 1) ^ -(value & 1)
            self.samples.append((acked, (acked - written_at[row_id]) * 1000))

    def report(self, start: float, end: float) -> dict[str, float]:
        steady = sorted(ms for at, ms in self.samples if start <= at <= end)
        if not steady:
            raise SystemExit("no acknowledgements in the steady window")

        def pct(p: float) -> float:
            return steady[min(len(steady) - 1, int(p / 100 * len(steady)))]

        return {"p50": pct(50), "p90": pct(90), "p99": pct(99), "max": steady[-1], "count": len(steady)}


def pgbench_writer(bindir: Path, port: int, database: str, rate: int, seconds: int) -> subprocess.Popen[bytes]:
    script = Path(tempfile.mkdtemp(prefix="latency-")) / "insert.sql"
    script.write_text("INSERT INTO events (payload, at) VALUES ('payload ' || random(), clock_timestamp());\n")
    return subprocess.Popen(
        [
            str(bindir / "pgbench"),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-U",
            "postgres",
            "-n",
            "-c",
            "8",
            "-j",
            "2",
            "-R",
            str(rate),
            "-T",
            str(seconds),
            "-f",
            str(script),
            database,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def _mariadb_writer(settings: dict[str, Any], database: str, rate: int, seconds: int) -> None:
    """In its own process: `rate` autocommitted one-row inserts per second, paced, for `seconds`."""
    import pymysql

    conn = pymysql.connect(database=database, autocommit=True, **settings)
    start = time.monotonic()
    sent = 0
    with conn.cursor() as cur:
        while True:
            elapsed = time.monotonic() - start
            if elapsed >= seconds:
                break
            due = int(elapsed * rate)
            while sent < due:
                cur.execute("INSERT INTO events (payload, at) VALUES (%s, UTC_TIMESTAMP(6))", (f"payload {sent}",))
                sent += 1
            time.sleep(0.0005)
    conn.close()


def write_config(workdir: Path, source_yaml: str, bootstrap: str, registry: str) -> Path:
    q = json.dumps
    path = workdir / "liberator.yaml"
    path.write_text(
        f"name: latency\nkafka:\n  bootstrap_servers: {q(bootstrap)}\nschema_registry:\n  url: {q(registry)}\n"
        f"offsets:\n  store: file\n  path: {q(str(workdir / 'offsets.json'))}\n  flush_interval: 1s\n"
        f"sources:\n{source_yaml}"
    )
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--db", choices=["postgresql", "mariadb"], default="postgresql")
    parser.add_argument("--rate", type=int, default=5000, help="single-row commits per second")
    parser.add_argument("--seconds", type=int, default=20, help="how long the writer runs")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    latencies = Latencies(by_key=args.db == "mariadb")
    with servers(args.db) as (db, bootstrap, registry), tempfile.TemporaryDirectory() as tmp:
        db.create_database("bench")
        if args.db == "postgresql":
            db.execute(
                "CREATE TABLE events (id BIGSERIAL PRIMARY KEY, payload TEXT NOT NULL, at TIMESTAMPTZ NOT NULL)",
                database="bench",
            )
            source = (
                f"  - name: {SOURCE}\n    type: postgres_wal\n    url: {json.dumps(db.dsn('bench'))}\n"
                "    tables: [events]\n    slot: bench\n    publication: bench\n    snapshot: never\n"
            )
        else:
            db.execute(
                "CREATE TABLE events (id BIGINT AUTO_INCREMENT PRIMARY KEY, payload VARCHAR(100) NOT NULL,"
                " at DATETIME(6) NOT NULL)",
                database="bench",
            )
            source = (
                f"  - name: {SOURCE}\n    type: mysql_binlog\n    url: {json.dumps(db.url(driver=None))}\n"
                "    tables: [bench.events]\n    server_id: 4242\n    snapshot: never\n"
            )
        daemon = Daemon(load_config(write_config(Path(tmp), source, bootstrap, registry)))
        thread = threading.Thread(target=daemon.run, name="daemon", daemon=True)
        thread.start()
        while SOURCE not in daemon.metrics.sources or daemon.metrics.sources[SOURCE].phase != "streaming":
            time.sleep(0.05)
        status = daemon.metrics.sources[SOURCE]
        print(f"writing {args.rate} single-row commits/s for {args.seconds}s...", flush=True)
        t0 = time.time()
        if args.db == "postgresql":
            writer: Any = pgbench_writer(db.bindir, db.port, "bench", args.rate, args.seconds)
            output = writer.communicate()[0].decode()
            written = next(
                (
                    int(line.split(":")[1].split("/")[0])
                    for line in output.splitlines()
                    if "transactions actually" in line
                ),
                None,
            )
        else:
            process = multiprocessing.Process(
                target=_mariadb_writer, args=(db.connection_settings("root", None), "bench", args.rate, args.seconds)
            )
            process.start()
            process.join()
            written = int(db.execute("SELECT COUNT(*) FROM events", database="bench")[0][0])
            written_at = {
                int(row_id): at.replace(tzinfo=dt.UTC).timestamp()
                for row_id, at in db.execute("SELECT id, at FROM events", database="bench")
            }
        t_end = time.time()
        if written is None:
            raise SystemExit(f"could not read pgbench's count:\n{output}")
        deadline = time.time() + 120
        while status.events_acked < written and time.time() < deadline:
            time.sleep(0.005)
        caught_up = time.time()
        daemon.stop.set()
        thread.join(60)
    if args.db == "mariadb":
        latencies.join_commit_times(written_at)
    # The first seconds warm up (schemas registered, topic made); the steady window is the rest.
    stats = latencies.report(t0 + 3, t_end)
    acked = status.events_acked
    behind = caught_up - t_end
    print(f"\n{'measure':<44} {'value':>12}")
    print("-" * 57)
    rows = [
        ("commits written (writer's count)", f"{written}"),
        ("events acknowledged", f"{acked}"),
        ("writer rate (commits/s)", f"{written / (t_end - t0):.0f}"),
        ("daemon rate over the run (acks/s)", f"{acked / (caught_up - t0):.0f}"),
        ("commit -> ack p50 (ms)", f"{stats['p50']:.1f}"),
        ("commit -> ack p90 (ms)", f"{stats['p90']:.1f}"),
        ("commit -> ack p99 (ms)", f"{stats['p99']:.1f}"),
        ("commit -> ack max (ms)", f"{stats['max']:.1f}"),
        ("behind when the writer stopped (s)", f"{behind:.2f}"),
        ("keeps up (p99 < 100 ms, all acked within 1 s)", "yes" if stats["p99"] < 100 and behind < 1 else "NO"),
    ]
    for name, value in rows:
        print(f"{name:<44} {value:>12}")
    if acked < written:
        print(f"only {acked} of {written} events were acknowledged within 120 s of the writer's end")


if __name__ == "__main__":
    main()
