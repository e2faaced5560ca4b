"""Query source throughput next to a bare keyset SELECT of the same table, in the same run.

    python bench/query_source.py [--rows 200000] [--updates 50000] [--batch 5000] [--db postgresql|mariadb]
                                 [--workers 1,2]

Starts its own database, Kafka-protocol broker and schema registry (liberator_testbed), loads an
`orders` table, then times: a bare keyset SELECT (SQLAlchemy Core, the 1.00 reference; raw driver for
comparison), the query source alone (no Kafka), the whole daemon snapshot until Kafka acknowledged every
row, and an incremental burst of updated rows. `--workers 1,2` measures the source alone and the daemon
snapshot once per `snapshot_workers` value (the incremental burst with the last one). The machine is noisy:
read the ratio column, not rows/s.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import datetime as dt
import json
import logging
import pstats
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from benchkit import ResultTable, count_events, servers

from liberator import runtime
from liberator.config import load_config
from liberator.connectors.query import QuerySource
from liberator.connectors.query.config import QuerySourceConfig
from liberator.runtime import Daemon
from liberator.source import SourceContext
from liberator.sqldb import MYSQL_CONVERSIONS

COLUMNS = ("id", "customer", "total", "qty", "note", "updated_at")
POLL = 0.1  # poll_interval and safety_delay of the measured source, seconds
SOURCE = "bench"
EPOCH_2024 = dt.datetime(2024, 1, 1)


# -- the table ------------------------------------------------------------------------------------


def load(kind: str, server: Any, rows: int) -> None:
    ts = "TIMESTAMP(6)" if kind == "postgresql" else "DATETIME(6)"
    server.execute(
        f"""CREATE TABLE orders (id BIGINT NOT NULL PRIMARY KEY, customer VARCHAR(50) NOT NULL,
               total NUMERIC(10, 2), qty INTEGER NOT NULL, note TEXT, updated_at {ts} NOT NULL)""",
        database="bench",
    )
    server.execute("CREATE INDEX orders_cursor ON orders (updated_at, id)", database="bench")
    # Pairs of rows share a timestamp, so the id tie-breaker is exercised; all well before now().
    if kind == "postgresql":
        server.execute(
            f"""INSERT INTO orders SELECT i, 'customer-' || (i % 1000), (i % 100000) / 100.0,
            i % 50 + 1, CASE WHEN i % 10 = 0 THEN NULL ELSE 'note ' || i END,
            TIMESTAMP '2024-01-01' + (i / 2) * INTERVAL '1 millisecond'
            FROM generate_series(1, {rows}) AS i""",
            database="bench",
        )
        server.execute("VACUUM ANALYZE orders", database="bench")
        return
    conn = server.connect("bench")
    try:
        with conn.cursor() as cur:
            sql = "INSERT INTO orders VALUES (%s, %s, %s, %s, %s, %s)"  # PyMySQL sends many rows per statement
            for start in range(1, rows + 1, 10_000):
                cur.executemany(sql, [_mysql_row(i) for i in range(start, min(start + 10_000, rows + 1))])
            cur.execute("ANALYZE TABLE orders")
    finally:
        conn.close()


def _mysql_row(i: int) -> tuple[object, ...]:
    """The same values as the PostgreSQL generate_series above."""
    note, stamp = f"note {i}" if i % 10 else None, EPOCH_2024 + dt.timedelta(milliseconds=i // 2)
    return i, f"customer-{i % 1000}", f"{(i % 100000) / 100:.2f}", i % 50 + 1, note, stamp


def update(kind: str, server: Any, count: int) -> None:
    now = "LOCALTIMESTAMP" if kind == "postgresql" else "NOW(6)"
    server.execute(f"UPDATE orders SET updated_at = {now} WHERE id <= {count}", database="bench")


# -- phases ---------------------------------------------------------------------------------------


def after_condition(cursor: tuple[Any, Any], values: tuple[Any, Any], form: str) -> Any:
    """`(updated_at, id) > (...)`: as a row value, or spelled out with a leading range (what MariaDB reads as
    one range of the index; PostgreSQL reads the row value as one)."""
    at, ident = (sa.literal(v) for v in values)
    if form == "row":
        return sa.tuple_(*cursor) > sa.tuple_(at, ident)
    return sa.and_(cursor[0] >= at, sa.or_(cursor[0] > at, sa.and_(cursor[0] == at, cursor[1] > ident)))


def best_form(kind: str) -> str:
    return "row" if kind == "postgresql" else "spelled out"


def keyset_query(batch: int, after: tuple[Any, Any] | None, form: str) -> Any:
    orders = sa.table("orders", *(sa.column(c) for c in COLUMNS))
    cursor = (orders.c.updated_at, orders.c.id)
    query = sa.select(*orders.c).order_by(*cursor).limit(batch)
    return query if after is None else query.where(after_condition(cursor, after, form))


def engine_for(url: str, kind: str, fast: bool = True) -> sa.Engine:
    """The reference reads with the driver conversions the daemon uses (liberator.sqldb), so the ratio is the
    daemon's own cost; `fast=False`: PyMySQL's own DATETIME decoder, for comparison."""
    if kind == "postgresql" or not fast:
        return sa.create_engine(url)
    return sa.create_engine(url, connect_args={"conv": MYSQL_CONVERSIONS})


def keyset_sqlalchemy(url: str, kind: str, batch: int, form: str, fast: bool = True) -> int:
    engine = engine_for(url, kind, fast)
    count, after = 0, None
    try:
        with engine.connect() as conn:
            while True:
                rows = conn.execute(keyset_query(batch, after, form)).all()
                count += len(rows)
                if len(rows) < batch:
                    return count
                after = (rows[-1].updated_at, rows[-1].id)
    finally:
        engine.dispose()


def explain(url: str, kind: str, batch: int, rows: int) -> None:
    """Print the plan of a page in the middle of the table, for each form of the condition."""
    engine = sa.create_engine(url)
    middle = (EPOCH_2024 + dt.timedelta(milliseconds=rows // 4), rows // 2)
    try:
        with engine.connect() as conn:
            for form in ("row", "spelled out"):
                compiled = keyset_query(batch, middle, form).compile(dialect=conn.dialect)
                params = compiled.construct_params()
                args: Any = tuple(params[n] for n in compiled.positiontup or ()) if compiled.positional else params
                plan = conn.exec_driver_sql(f"EXPLAIN {compiled}", args).all()
                lines = [row[0] for row in plan] if kind == "postgresql" else [" | ".join(map(str, r)) for r in plan]
                print(f"  EXPLAIN, {form} condition:", *(f"    {line}" for line in lines[:4]), sep="\n", flush=True)
    finally:
        engine.dispose()


def keyset_driver(url: str, kind: str, batch: int) -> int:
    """The same pages through the DB-API driver (psycopg / PyMySQL), no SQLAlchemy in the loop."""
    engine = engine_for(url, kind)
    if best_form(kind) == "row":
        condition, repeat = " WHERE (updated_at, id) > (%s, %s)", 1
    else:
        condition, repeat = " WHERE updated_at >= %s AND (updated_at > %s OR updated_at = %s AND id > %s)", 3
    conn = engine.raw_connection()
    select = f"SELECT {', '.join(COLUMNS)} FROM orders"
    order = f" ORDER BY updated_at, id LIMIT {batch}"
    count = 0
    try:
        cur = conn.cursor()
        cur.execute(select + order)
        while True:
            rows = cur.fetchall()
            count += len(rows)
            if len(rows) < batch:
                return count
            cur.execute(select + condition + order, (*[rows[-1][5]] * repeat, rows[-1][0]))
    finally:
        conn.close()
        engine.dispose()


def source_alone(url: str, batch: int, rows: int, workers: int = 1) -> int:
    """Iterate QuerySource.read until every row came out as a ChangeEvent: no Avro, no Kafka."""
    stop = threading.Event()
    config = QuerySourceConfig.model_validate(
        {"name": SOURCE, "type": "query", "url": url, "tables": ["orders"], "cursor": ["updated_at", "id"],
         "batch_size": batch, "poll_interval": POLL, "safety_delay": POLL, "snapshot_workers": workers}
    )  # fmt: skip
    source = QuerySource(config, SourceContext("bench", stop, logging.getLogger("bench")))
    return count_events(source, None, rows, stop)


def write_config(workdir: Path, url: str, bootstrap: str, registry: str, batch: int, workers: int = 1) -> Path:
    q = json.dumps  # JSON strings are YAML strings
    path = workdir / "liberator.yaml"
    path.write_text(
        f"name: bench\nkafka:\n  bootstrap_servers: {q(bootstrap)}\nschema_registry:\n  url: {q(registry)}\n"
        f"offsets:\n  store: file\n  path: {q(str(workdir / 'offsets.json'))}\n  flush_interval: 200ms\n"
        f"sources:\n  - name: {SOURCE}\n    type: query\n    url: {q(url)}\n    tables: [orders]\n"
        f"    cursor: [updated_at, id]\n    batch_size: {batch}\n    snapshot_workers: {workers}\n"
        f"    poll_interval: {int(POLL * 1000)}ms\n    safety_delay: {int(POLL * 1000)}ms\n"
    )
    return path


def wait_acked(daemon: Daemon, target: int, timeout: float = 600) -> tuple[float, float]:
    """Sample the acked counter until it reaches `target`: (first time it moved, time it got there)."""
    status = daemon.metrics.sources[SOURCE]
    start_count, first, in_flight = status.events_acked, 0.0, 0
    deadline = time.perf_counter() + timeout
    while status.events_acked < target:
        now = time.perf_counter()
        in_flight = max(in_flight, status.events_published - status.events_acked)
        if not first and status.events_acked > start_count:
            first = now
        if status.state == "failed" or now > deadline:
            raise SystemExit(f"daemon stuck at {status.events_acked}/{target} acked: {status.state} {status.error}")
        time.sleep(0.002)  # a poll interval
    end = time.perf_counter()
    print(f"  (at most {in_flight} events published but not yet acknowledged)", flush=True)
    return first or end, end


def profiled_source_thread(profile: cProfile.Profile) -> Callable[[], None]:
    """Run the daemon's source thread under `profile` (bench-only patch; the runtime is not changed)."""
    original = runtime.SourceRunner._run

    def run(self: runtime.SourceRunner) -> None:
        profile.runcall(original, self)

    runtime.SourceRunner._run = run  # type: ignore[method-assign]
    return lambda: setattr(runtime.SourceRunner, "_run", original)


def timed(fn: Callable[[], int], repeat: int) -> tuple[int, float]:
    """Best of `repeat` runs: (rows, seconds)."""
    best = (0, float("inf"))
    for _ in range(repeat):
        t0 = time.perf_counter()
        rows = fn()
        best = min(best, (rows, time.perf_counter() - t0), key=lambda run: run[1])
    return best


def show(profile: cProfile.Profile, title: str) -> None:
    print(f"\n== profile: {title} (top by own time) ==")
    pstats.Stats(profile).strip_dirs().sort_stats("tottime").print_stats(15)


def daemon_phases(
    db: Any, kind: str, config: Path, table: ResultTable, n: int, m: int, workers: int, incremental: bool
) -> None:
    """The whole daemon: its snapshot of `n` rows until Kafka acknowledged them all, then (if `incremental`)
    the burst of `m` updated rows."""
    daemon = Daemon(load_config(config))
    thread = threading.Thread(target=daemon.run, name="daemon", daemon=True)
    t0 = time.perf_counter()
    thread.start()
    while SOURCE not in daemon.metrics.sources and thread.is_alive():
        time.sleep(0.001)  # a poll interval
    if SOURCE not in daemon.metrics.sources:
        raise SystemExit("the daemon stopped before its source started; see the log above")
    try:
        first, end = wait_acked(daemon, n)
        print(f"  (first acknowledgement {first - t0:.2f}s after start)", flush=True)
        table.add(f"daemon snapshot, start -> all acked by Kafka, workers {workers}", n, end - t0)
        if not incremental:
            return
        time.sleep(3 * POLL)  # a few idle polls before the measured update: setup, not a wait on a result
        t0 = time.perf_counter()
        update(kind, db, m)
        committed = time.perf_counter()
        print(f"  UPDATE of {m} rows took {committed - t0:.2f}s", flush=True)
        first, end = wait_acked(daemon, n + m)
        table.add(f"incremental, commit -> all acked (poll {POLL * 1000:.0f}ms)", m, end - committed)
        table.add("incremental, first ack -> last ack", m, end - first)
    finally:
        daemon.stop.set()
        thread.join(60)


# -- main -----------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=200_000, help="rows loaded and snapshotted")
    parser.add_argument("--updates", type=int, default=50_000, help="rows updated for the incremental phase")
    parser.add_argument("--batch", type=int, default=5000, help="page size (source batch_size and baseline)")
    parser.add_argument("--db", choices=["postgresql", "mariadb"], default="postgresql")
    parser.add_argument("--repeat", type=int, default=2, help="runs of the non-daemon phases (best counts)")
    parser.add_argument("--profile", action="store_true", help="cProfile the source (then ignore the table)")
    parser.add_argument("--workers", default="1", help="snapshot_workers values to measure, comma-separated")
    args = parser.parse_args()
    try:
        workers = [int(w) for w in args.workers.split(",")]
    except ValueError:
        parser.error(f"--workers {args.workers!r}: give numbers separated by commas, as 1,2")
    if not 0 < args.updates <= args.rows:
        parser.error("--updates must be between 1 and --rows")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    n, m, batch = args.rows, args.updates, args.batch
    table = ResultTable()
    with servers(args.db) as (db, bootstrap, registry), tempfile.TemporaryDirectory() as tmp:
        db.create_database("bench")
        url = db.url("bench")
        print(f"{args.db}: loading {n} rows...", flush=True)
        t0 = time.perf_counter()
        load(args.db, db, n)
        print(f"  loaded in {time.perf_counter() - t0:.1f}s", flush=True)

        explain(url, args.db, batch, n)
        form = best_form(args.db)
        reference = f"bare keyset SELECT, SQLAlchemy Core ({batch}/page, {form} condition)"
        table.add(reference, *timed(lambda: keyset_sqlalchemy(url, args.db, batch, form), args.repeat))
        if form != "row":
            table.add(
                "bare keyset SELECT, row-value condition",
                *timed(lambda: keyset_sqlalchemy(url, args.db, batch, "row"), args.repeat),
            )
            table.add(
                "bare keyset SELECT, PyMySQL's own DATETIME decoder",
                *timed(lambda: keyset_sqlalchemy(url, args.db, batch, form, fast=False), args.repeat),
            )
        table.add(
            "bare keyset SELECT, raw DB-API driver", *timed(lambda: keyset_driver(url, args.db, batch), args.repeat)
        )
        profile = cProfile.Profile() if args.profile else None
        for w in workers:
            with profile or contextlib.nullcontext():
                rows, secs = timed(lambda w=w: source_alone(url, batch, n, w), 1 if profile else args.repeat)
            table.add(f"source alone (QuerySource.read, no Kafka), workers {w}", rows, secs)
        if profile is not None:
            show(profile, "source alone")
            profile = cProfile.Profile()
            restore = profiled_source_thread(profile)

        for index, w in enumerate(workers):
            workdir = Path(tmp) / f"workers-{w}-{index}"
            workdir.mkdir()
            last = index == len(workers) - 1
            daemon_phases(db, args.db, write_config(workdir, url, bootstrap, registry, batch, w), table, n, m, w, last)
        if profile is not None:
            restore()
            show(profile, "daemon source thread (read + Avro + produce)")
    table.print(reference)


if __name__ == "__main__":
    main()
