"""The cost of `deletes: reconcile` on the query source, next to a bare key scan of the same table.

    python bench/query_deletes.py [--rows 1000000] [--batch 5000] [--db postgresql|mariadb]

Starts its own database, Kafka-protocol broker and schema registry (liberator_testbed), loads an `orders`
table, publishes it with the daemon (its snapshot), deletes one row in a thousand, then times: a bare keyset
scan of the primary key (SQLAlchemy Core, the 1.00 reference), a reconciliation right after a start (the
topic read from its beginning, the key scan, the tombstones made), a later one (the topic tailed, nothing
new), and the topic read alone. The machine is noisy: read the ratio column, not keys/s.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import logging
import pstats
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from benchkit import ResultTable, daemon_until_acked, servers
from query_source import engine_for, load

from liberator.connectors.query import QuerySource
from liberator.connectors.query.config import QuerySourceConfig
from liberator.connectors.query.position import QueryPosition
from liberator.connectors.query.reconcile import DeleteReconciler
from liberator.source import SourceContext
from liberator.topickeys import TopicKeys

SOURCE = "bench"


def bare_key_scan(url: str, kind: str, batch: int) -> int:
    engine = engine_for(url, kind)
    orders = sa.table("orders", sa.column("id"))
    seen, after = 0, None
    try:
        with engine.connect() as conn:
            while True:
                query = sa.select(orders.c.id).order_by(orders.c.id).limit(batch)
                if after is not None:
                    query = query.where(orders.c.id > after)
                rows = conn.execute(query).all()
                seen += len(rows)
                if len(rows) < batch:
                    return seen
                after = rows[-1][0]
    finally:
        engine.dispose()


def reconcile(source: QuerySource, reconciler: DeleteReconciler) -> int:
    conn, readers = source._connect()
    try:
        batches = reconciler.run(conn, readers, QueryPosition(), threading.Event())
        return sum(len(batch.items) for batch in batches)
    finally:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--db", choices=("postgresql", "mariadb"), default="postgresql")
    parser.add_argument("--profile", action="store_true", help="cProfile the later reconciliation (top 25)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with servers(args.db) as (db, bootstrap, registry), tempfile.TemporaryDirectory() as tmp:
        db.create_database("bench")
        url = db.url("bench")
        print(f"loading {args.rows} rows into {args.db} ...", flush=True)
        load(args.db, db, args.rows)
        topic = "bench.orders"
        source_yaml = (
            f"  - name: {SOURCE}\n    type: query\n    url: {url}\n    tables: [orders]\n"
            f'    topic: "{topic}"\n    cursor: [updated_at, id]\n    batch_size: {args.batch}\n'
            "    poll_interval: 100ms\n    safety_delay: 0s\n"
        )
        config = Path(tmp) / "bench.yaml"
        config.write_text(
            f"name: bench\nkafka:\n  bootstrap_servers: {bootstrap}\nschema_registry:\n  url: {registry}\n"
            f"offsets:\n  store: file\n  path: {tmp}/offsets.json\nsources:\n{source_yaml}"
        )
        print("publishing the table with the daemon ...", flush=True)
        daemon_until_acked(config, args.rows, SOURCE)
        db.execute("DELETE FROM orders WHERE id % 1000 = 0", database="bench")
        deleted = args.rows // 1000

        settings: dict[str, Any] = {"bootstrap.servers": bootstrap}
        stop = threading.Event()
        context = SourceContext(app_name="bench", stop=stop, log=logging.getLogger("bench"))
        qconfig = QuerySourceConfig.model_validate(
            {"name": SOURCE, "type": "query", "url": url, "tables": ["orders"], "topic": topic,
             "cursor": ["updated_at", "id"], "batch_size": args.batch}
        )  # fmt: skip
        source = QuerySource(qconfig, context)
        reconciler = DeleteReconciler(
            functools.partial(TopicKeys, settings), 0, args.batch, 1000, logging.getLogger("bench")
        )
        table = ResultTable("keys", extra="tombstones")
        keys = args.rows - deleted

        t0 = time.perf_counter()
        n = bare_key_scan(url, args.db, args.batch)
        table.add("bare key scan (reference)", n, time.perf_counter() - t0)
        t0 = time.perf_counter()
        made = reconcile(source, reconciler)
        table.add("reconcile, first after a start", keys, time.perf_counter() - t0, str(made))
        profile = cProfile.Profile() if args.profile else None
        t0 = time.perf_counter()
        if profile is not None:
            profile.enable()
        again = reconcile(source, reconciler)
        if profile is not None:
            profile.disable()
        table.add("reconcile, later (topic tailed)", keys, time.perf_counter() - t0, str(again))
        if profile is not None:
            pstats.Stats(profile).sort_stats("tottime").print_stats(25)
        t0 = time.perf_counter()
        live = TopicKeys(settings, topic).refresh(stop)
        table.add("topic read alone, from the start", len(live), time.perf_counter() - t0)
        source.close()
        table.print(
            "bare key scan (reference)",
            f"{args.db}, {args.rows} rows, {deleted} deleted before the first reconciliation (expected "
            f"{deleted} tombstones, then 0); pages of {args.batch}",
        )
        if made != deleted or again != 0:
            raise SystemExit(f"wrong tombstone counts: {made} then {again}, expected {deleted} then 0")


if __name__ == "__main__":
    main()
