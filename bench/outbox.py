"""Outbox source throughput end to end, next to a bare claim-and-delete loop on the same table, and the
load it adds to the database (statements per published event).

    python bench/outbox.py [--rows 20000] [--batch 500] [--db postgresql|mariadb|sqlite] [--flush 1s]

Starts its own database (not for SQLite), Kafka-protocol broker and schema registry (liberator_testbed),
fills the default outbox table (`liberator outbox ddl`) with JSON events, then times: a bare drain
(`SELECT ... ORDER BY occurred_at, id LIMIT batch [FOR UPDATE SKIP LOCKED]`, `DELETE ... WHERE id IN`,
commit; the 1.00 reference: the least database work a queue reader can do) and the whole daemon from
start until every event is acknowledged by Kafka and its row deleted. Every statement the source sends
is counted through SQLAlchemy's cursor events. The machine is noisy: read the ratio column.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import benchkit
import sqlalchemy as sa
from benchkit import ResultTable

from liberator.config import load_config
from liberator.connectors.outbox.ddl import outbox_ddl
from liberator.registry.client import RegistryClient
from liberator.runtime import Daemon

SCHEMA = {
    "type": "record",
    "name": "OrderPlaced",
    "namespace": "bench",
    "fields": [
        {"name": "order_id", "type": "long"},
        {"name": "customer", "type": "string"},
        {"name": "total", "type": {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}},
    ],
}


class Counter:
    """Statements (and executemany parameter sets) sent by every engine but the observer's."""

    def __init__(self) -> None:
        self.statements = 0
        self.param_sets = 0
        self.ignore: set[int] = set()
        sa.event.listen(sa.engine.Engine, "before_cursor_execute", self._count)

    def _count(self, conn: Any, _cursor: Any, _sql: str, params: Any, _context: Any, executemany: bool) -> None:
        if id(conn.engine) in self.ignore:
            return
        self.statements += 1
        self.param_sets += len(params) if executemany else 1

    def reset(self) -> tuple[int, int]:
        counts = (self.statements, self.param_sets)
        self.statements = self.param_sets = 0
        return counts


def create(url: str, dialect: str) -> sa.Engine:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for statement in outbox_ddl(dialect).split(";\n\n"):  # type: ignore[arg-type]
            conn.execute(sa.text(statement.strip().rstrip(";")))
    return engine


def fill(engine: sa.Engine, rows: int) -> float:
    insert = sa.text(
        "INSERT INTO outbox (aggregate_type, aggregate_id, event_type, payload) VALUES ('order', :a, 'OrderPlaced', :p)"
    )
    started = time.perf_counter()
    with engine.begin() as conn:
        for start in range(0, rows, 5000):
            conn.execute(
                insert,
                [
                    {"a": str(i % 1000), "p": json.dumps({"order_id": i, "customer": f"c{i}", "total": "12.50"})}
                    for i in range(start, min(rows, start + 5000))
                ],
            )
    return time.perf_counter() - started


def bare_drain(url: str, batch: int, skip_locked: bool) -> int:
    engine = sa.create_engine(url)
    claim = "SELECT id, aggregate_type, aggregate_id, event_type, payload, occurred_at FROM outbox "
    claim += f"ORDER BY occurred_at, id LIMIT {batch}" + (" FOR UPDATE SKIP LOCKED" if skip_locked else "")
    delete = sa.text("DELETE FROM outbox WHERE id IN :ids").bindparams(sa.bindparam("ids", expanding=True))
    drained = 0
    with engine.connect() as conn:
        while True:
            ids = [row[0] for row in conn.execute(sa.text(claim))]
            if not ids:
                conn.commit()
                break
            conn.execute(delete, {"ids": ids})
            conn.commit()
            drained += len(ids)
    engine.dispose()
    return drained


def run_daemon(
    workdir: Path, url: str, bootstrap: str, registry: str, args: argparse.Namespace, rows: int, observer: sa.Engine
) -> float:
    config = workdir / "outbox.yaml"
    config.write_text(
        f"name: bench\nkafka:\n  bootstrap_servers: {bootstrap}\nschema_registry:\n  url: {registry}\n"
        f"offsets:\n  store: file\n  path: {workdir}/offsets.json\n  flush_interval: {args.flush}\n"
        f"sources:\n  - name: ob\n    type: outbox\n    url: {url}\n    topic: bench.{{aggregate_type}}\n"
        f"    batch_size: {args.batch}\n    poll_interval: 100ms\n"
    )
    daemon = Daemon(load_config(config))
    thread = threading.Thread(target=daemon.run, name="daemon", daemon=True)
    started = time.perf_counter()
    first = 0.0
    thread.start()
    try:
        while True:
            status = daemon.metrics.sources.get("ob")
            if not first and status is not None and status.events_acked:
                first = time.perf_counter()
                print(f"  (first acknowledgement {first - started:.2f}s after start)", flush=True)
            if (status is not None and status.state == "failed") or not thread.is_alive():
                raise SystemExit(f"the source failed: {status.error if status else 'not started'}")
            if status is not None and status.events_acked >= rows and remaining(observer) == 0:
                break
            time.sleep(0.01)  # a poll interval
        return time.perf_counter() - started
    finally:
        daemon.stop.set()
        thread.join(60)


def remaining(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT COUNT(*) FROM outbox")).scalar_one())


@contextlib.contextmanager
def servers(kind: str, workdir: Path) -> Iterator[tuple[str, str, str]]:
    """(database url, broker bootstrap, registry url); everything stopped on the way out."""
    with benchkit.servers(None if kind == "sqlite" else kind) as (db, bootstrap, registry):
        if db is None:
            url = f"sqlite:///{workdir}/app.db"
        else:
            db.create_database("bench")
            url = db.url("bench")
        yield url, bootstrap, registry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=20_000, help="outbox rows published")
    parser.add_argument("--batch", type=int, default=500, help="the source's batch_size and the baseline's")
    parser.add_argument("--db", choices=["postgresql", "mariadb", "sqlite"], default="postgresql")
    parser.add_argument("--repeat", type=int, default=3, help="runs of the bare drain and the daemon, best of each")
    parser.add_argument("--flush", default="1s", help="offsets.flush_interval (the cleanup no longer waits for it)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    dialect = {"postgresql": "postgresql", "mariadb": "mysql", "sqlite": "sqlite"}[args.db]
    table = ResultTable("events", extra="queries/event")
    counter = Counter()
    with tempfile.TemporaryDirectory() as tmp, servers(args.db, Path(tmp)) as (url, bootstrap, registry):
        engine = create(url, dialect)
        counter.ignore.add(id(engine))
        with RegistryClient(registry) as client:
            client.register("bench.order-value", SCHEMA)
        print(f"{args.db}: {args.rows} outbox rows, batch {args.batch}", flush=True)
        table.add("application INSERTs (executemany, one transaction)", args.rows, fill(engine, args.rows))
        # The bare drain and the daemon take turns, best of --repeat each: one run of either swings by
        # half on this shared machine.
        bare_best = daemon_best = float("inf")
        drained, bare_queries, daemon_queries, left = 0, "", "", 0
        for run in range(args.repeat):
            if run:
                fill(engine, args.rows)
            counter.reset()
            started = time.perf_counter()
            drained = bare_drain(url, args.batch, skip_locked=args.db != "sqlite")
            bare_seconds = time.perf_counter() - started
            statements, _ = counter.reset()
            print(f"  run {run + 1}: bare drain {drained} events in {bare_seconds:.2f}s", flush=True)
            if bare_seconds < bare_best:
                bare_best, bare_queries = bare_seconds, f"{statements / drained:.4f}"
            fill(engine, args.rows)
            counter.reset()
            workdir = Path(tmp) / f"run{run}"
            workdir.mkdir()
            seconds = run_daemon(workdir, url, bootstrap, registry, args, args.rows, engine)
            statements, param_sets = counter.reset()
            left += remaining(engine)
            if seconds < daemon_best:
                daemon_best = seconds
                daemon_queries = f"{statements / args.rows:.4f} ({param_sets / args.rows:.3f})"
        reference = f"bare drain: claim {args.batch}, DELETE IN, commit"
        table.add(reference, drained, bare_best, bare_queries)
        table.add(f"daemon: start -> all acked by Kafka (flush {args.flush})", args.rows, daemon_best, daemon_queries)
        print(f"  rows left in the outbox after the daemon stopped: {left}")
        engine.dispose()
    table.print(
        reference,
        "queries/event = statements sent per event (executemany parameter sets in brackets: round trips where "
        "the driver loops)",
    )


if __name__ == "__main__":
    main()
