"""A one-million-row transaction streams with bounded memory and no position until its commit."""

from __future__ import annotations

import logging
import threading
import time

from liberator.capture import ChangeBatch
from liberator.connectors.postgres_wal import PostgresWalSource
from liberator.events import Checkpoint
from liberator.source import SourceContext
from tests.integration.postgres_wal_support import WalDb
from tests.support import rss_mb

ROWS = 1_000_000


def test_a_million_row_transaction_streams_with_bounded_memory(pg_url: str) -> None:
    db = WalDb(pg_url)
    db.run("CREATE TABLE big (id int PRIMARY KEY, payload text NOT NULL)")
    stop = threading.Event()
    source = PostgresWalSource(
        db.config(["big"], snapshot="never"), SourceContext("test", stop, logging.getLogger("test.wal"))
    )
    items = source.read(None)
    while source.phase != "streaming":  # the slot is made, streaming starts
        next(items)
    db.run(f"INSERT INTO big SELECT g, md5(g::text) FROM generate_series(1, {ROWS}) g")
    baseline = rss_mb()
    peak = baseline
    events = 0
    started = time.monotonic()
    try:
        for item in items:
            if isinstance(item, ChangeBatch):
                events += len(item.items)
                if events % 50_000 < len(item.items):
                    peak = max(peak, rss_mb())
                assert item.position is None or events == ROWS, "no resumable position inside a transaction"
            if events == ROWS and isinstance(item, ChangeBatch | Checkpoint) and item.position is not None:
                break  # the commit
    finally:
        stop.set()
        source.close()
    elapsed = time.monotonic() - started
    print(f"{ROWS} rows in {elapsed:.1f}s ({ROWS / elapsed:,.0f} rows/s), RSS {baseline:.0f} -> peak {peak:.0f} MB")
    assert events == ROWS
    assert peak - baseline < 100, f"RSS grew by {peak - baseline:.0f} MB: the transaction was buffered"
