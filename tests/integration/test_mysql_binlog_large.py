"""A one-million-row transaction streams from the binlog with bounded memory and no position until its end."""

from __future__ import annotations

import time

from liberator.connectors.mysql_binlog.position import BinlogPosition
from liberator.events import ChangeEvent, Checkpoint
from liberator_testbed import MySQLInstance
from tests.integration.test_mysql_binlog_helpers import make_source, read_events
from tests.support import rss_mb

ROWS = 1_000_000


def test_a_million_row_transaction_streams_with_bounded_memory(
    mariadb_server: MySQLInstance, mysql_database: str
) -> None:
    db = mysql_database
    mariadb_server.execute(f"CREATE TABLE `{db}`.big (id INT PRIMARY KEY, payload CHAR(32) NOT NULL)")
    source, stop = make_source(mariadb_server, [f"{db}.big"])
    items = read_events(source, None)
    first = next(items)  # the empty snapshot's end: streaming starts from its point
    assert isinstance(first, Checkpoint)
    # One statement, one transaction: a million row images between its GTID and its XID.
    mariadb_server.execute(f"INSERT INTO big SELECT seq, md5(seq) FROM seq_1_to_{ROWS}", database=db)
    baseline = rss_mb()
    peak = baseline
    events = 0
    last_id = 0
    started = time.monotonic()
    try:
        for item in items:
            if isinstance(item, ChangeEvent):
                assert item.position is None, "no resumable position inside a transaction"
                events += 1
                key = item.key["id"]
                assert key == last_id + 1, "rows arrive in binlog order"
                last_id = key
                if events % 50_000 == 0:
                    peak = max(peak, rss_mb())
            elif events:
                assert isinstance(item, Checkpoint) and isinstance(item.position, BinlogPosition)
                break
    finally:
        stop.set()
        source.close()
    elapsed = time.monotonic() - started
    print(f"{ROWS} rows in {elapsed:.1f}s ({ROWS / elapsed:,.0f} rows/s), RSS {baseline:.0f} -> peak {peak:.0f} MB")
    assert events == ROWS
    assert peak - baseline < 100, f"RSS grew by {peak - baseline:.0f} MB: the transaction was buffered"
