"""`snapshot_workers` on the query source, against real PostgreSQL and MariaDB: pages read at once hand over
exactly what one reader reads: the same rows, in the same order, in the same batches, with the same positions."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path
from typing import Any, cast

import pytest
import sqlalchemy as sa

from liberator.capture import ChangeBatch, RowChange
from liberator.config import load_config
from liberator.connectors.query import QuerySource
from liberator.connectors.query.position import QueryPosition
from liberator.events import Checkpoint
from liberator.runtime import build_source
from liberator.snapshots import SnapshotRequest
from tests.integration.legacy_db import LegacyDb
from tests.integration.test_query_source import _plan
from tests.support import DaemonThread, app_config, read_topic

EPOCH = dt.datetime(2024, 1, 1)


@pytest.fixture(params=["postgresql", "mariadb"])
def legacy(request: pytest.FixtureRequest) -> LegacyDb:
    url = request.getfixturevalue("pg_url" if request.param == "postgresql" else "mysql_url")
    return LegacyDb(url, request.param)


def _fill(legacy: LegacyDb, table: str, ids: range, tie: int) -> None:
    """Rows stamped long before now(); `tie` rows in a row share a timestamp, so the id tie-breaker decides."""
    legacy.create_orders(table)
    with legacy.engine.begin() as conn:
        conn.execute(
            sa.text(f"INSERT INTO {table} (id, customer, total, qty, updated_at) VALUES (:id, :c, :t, :q, :at)"),
            [
                {"id": i, "c": f"c{i}", "t": f"{i}.25", "q": i % 7, "at": EPOCH + dt.timedelta(seconds=i // tie)}
                for i in ids
            ],
        )


def _batches(
    legacy: LegacyDb,
    tmp_path: Path,
    workers: int,
    tables: str = "[orders, refunds]",
    backfill: SnapshotRequest | None = None,
) -> tuple[list[Any], int]:
    """Every batch of the first cycle as (rows as (table, values), position), and the pages read on workers.

    With `backfill`: that snapshot on demand is asked for first, and the batches run until it is done."""
    extra = f"    batch_size: 20\n    snapshot_workers: {workers}\n"
    source_yaml = (
        f"  - name: legacy\n    type: query\n    url: {legacy.url}\n    tables: {tables}\n"
        f"    cursor: [updated_at, id]\n    poll_interval: 100ms\n    safety_delay: 500ms\n{extra}"
    )
    config = app_config(tmp_path / f"w{workers}", "127.0.0.1:1", "http://127.0.0.1:1", source_yaml)
    stop = threading.Event()
    source = build_source(load_config(config).sources[0], "test", stop)
    assert isinstance(source, QuerySource)
    if backfill is not None:
        source.context.snapshots.submit(backfill)
    out: list[Any] = []
    started = False
    try:
        for item in source.read(None):
            if isinstance(item, Checkpoint):
                backfills = cast(QueryPosition, item.position).backfills
                started = started or bool(backfills)
                if backfill is not None and (not started or backfills):
                    continue
                # The first poll is done (every row stamped before now() - safety_delay was read), or the backfill.
                break
            assert isinstance(item, ChangeBatch)
            changes = [c for c in item.items if isinstance(c, RowChange)]
            rows = [(c.table.name, tuple(c.after or ()), c.txn.timestamp_ms) for c in changes]
            assert item.position is not None
            out.append((rows, item.position.to_json()))
        windows = source.parallel.pages if source.parallel is not None else 0
    finally:
        source.close()
    return out, windows


def test_workers_publish_what_one_reader_publishes(legacy: LegacyDb, tmp_path: Path) -> None:
    (tmp_path / "w1").mkdir()
    (tmp_path / "w3").mkdir()
    # Pages of 20 rows; triples of rows share a timestamp, so ties straddle page ends. Two tables merged by
    # time, one denser than the other; 407 + 113 rows: the last window of each is not full.
    _fill(legacy, "orders", range(1, 408), tie=3)
    _fill(legacy, "refunds", range(10_001, 10_114), tie=1)
    one, none = _batches(legacy, tmp_path, 1)
    three, windows = _batches(legacy, tmp_path, 3)
    assert none == 0
    assert windows > 5  # the pages were read a window at a time, not one by one
    assert sum(len(rows) for rows, _ in one) == 520
    assert three == one  # rows, order, record times, batch cuts and positions


def test_a_single_table_with_ties_reads_the_same_pages(legacy: LegacyDb, tmp_path: Path) -> None:
    """One table takes the unmerged path: its pages are batches of their own, each with the position after it."""
    _fill(legacy, "orders", range(1, 301), tie=4)
    (tmp_path / "w1").mkdir()
    (tmp_path / "w2").mkdir()
    one, _ = _batches(legacy, tmp_path, 1, "[orders]")
    two, windows = _batches(legacy, tmp_path, 2, "[orders]")
    assert windows >= 7
    assert [len(rows) for rows, _ in two] == [20] * 15
    assert two[-1][0][-1][1][0] == 300
    assert two == one


def test_a_span_and_the_page_ends_are_index_range_reads(legacy: LegacyDb, tmp_path: Path) -> None:
    """A page read by a worker is bounded on both sides and has no LIMIT: it must still be one range of the
    (updated_at, id) index, as must the query of page ends, not a scan of the table."""
    _fill(legacy, "orders", range(1, 20_001), tie=2)
    with legacy.engine.begin() as conn:
        conn.execute(sa.text("ANALYZE orders" if legacy.kind == "postgresql" else "ANALYZE TABLE orders"))
    source_yaml = (
        f"  - name: legacy\n    type: query\n    url: {legacy.url}\n    tables: [orders]\n"
        "    cursor: [updated_at, id]\n    snapshot_workers: 2\n"
    )
    config = app_config(tmp_path, "127.0.0.1:1", "http://127.0.0.1:1", source_yaml)
    source = build_source(load_config(config).sources[0], "test", threading.Event())
    assert isinstance(source, QuerySource)
    conn, (reader,) = source._connect()
    try:
        start = (EPOCH + dt.timedelta(seconds=5000), 10_000)
        ends = reader.page_ends(conn, start, None, 500, 2)
        assert ends == [(EPOCH + dt.timedelta(seconds=5250), 10_500), (EPOCH + dt.timedelta(seconds=5500), 11_000)]
        span = reader.span(ends[0], ends[1], None)
        assert [row[0] for row in conn.execute(span)] == list(range(10_501, 11_001))
        plan = _plan(conn, span)
        if legacy.kind == "postgresql":
            text = "\n".join(row[0] for row in plan)
            assert "Index Scan using orders_cursor" in text and "Index Cond: ((ROW(updated_at, id) >" in text, text
        else:
            (row,) = plan
            assert (row[3], row[5]) == ("range", "orders_cursor"), row  # type, key
    finally:
        conn.close()
        source.close()


def test_a_snapshot_on_demand_with_workers_reads_what_one_reader_reads(legacy: LegacyDb, tmp_path: Path) -> None:
    """A backfill reads a window of key pages per step with workers: the same rows, batches and positions."""
    _fill(legacy, "orders", range(1, 251), tie=5)
    (tmp_path / "w1").mkdir()
    (tmp_path / "w2").mkdir()
    request = SnapshotRequest(("orders",), "qty <> 3", id="again")
    one, _ = _batches(legacy, tmp_path, 1, "[orders]", request)
    two, pages = _batches(legacy, tmp_path, 2, "[orders]", request)
    matching = len([i for i in range(1, 251) if i % 7 != 3])  # qty is id % 7
    assert sum(len(rows) for rows, _ in one) == 250 + matching  # the first poll, then the backfill
    assert pages > 12 + 5  # the first poll's pages, then the backfill's
    assert two == one


def test_workers_whose_connections_died_are_reconnected_and_nothing_is_lost(
    pg_url: str, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    legacy = LegacyDb(pg_url, "postgresql")
    _fill(legacy, "orders", range(1, 31), tie=1)
    source_yaml = (
        f'  - name: legacy\n    topic: "{legacy.prefix}.{{table}}"\n    type: query\n    url: {legacy.url}\n'
        "    tables: [orders]\n    cursor: [updated_at, id]\n    poll_interval: 100ms\n    safety_delay: 500ms\n"
        "    batch_size: 5\n    snapshot_workers: 2\n"
    )
    config = app_config(tmp_path, kafka_bootstrap, registry_url, source_yaml)
    topic = f"{legacy.prefix}.orders"
    with DaemonThread(config) as daemon:
        assert len(read_topic(kafka_bootstrap, registry_url, topic, expect=30)) == 30
        status = daemon.status("legacy")
        # A database restart as the source sees it: every session dies, the workers' idle ones too.
        legacy.run(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :db AND pid <> pg_backend_pid()",
            db=sa.make_url(pg_url).database,
        )
        with legacy.engine.begin() as conn:  # more than a window of full pages: the workers are used again
            conn.execute(
                sa.text("INSERT INTO orders (id, customer, total, qty, updated_at) VALUES (:id, 'c', 1, 1, :at)"),
                [{"id": i, "at": EPOCH + dt.timedelta(seconds=i)} for i in range(31, 81)],
            )
        records = read_topic(kafka_bootstrap, registry_url, topic, expect=80, timeout=45)
        assert status.retries >= 1
    assert sorted({r["key"]["id"] for r in records}) == list(range(1, 81))
