"""Snapshot progress: counting reads per table, the figures, the log lines, and bars only on a terminal."""

from __future__ import annotations

import io
import logging
from typing import Any

import pytest

from liberator.capture.changes import RowChange, Txn
from liberator.envelope import Op
from liberator.metrics import Metrics
from liberator.progress import Bars, LogLines, SnapshotProgress, TableProgress, display_for, wants_bars
from liberator.snapshots import Backfill, SnapshotDesk


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Table:
    """The parts of a CapturedTable progress reads."""

    def __init__(self, schema: str, name: str) -> None:
        self.schema_name, self.table_name, self.name = schema, name, f"{schema}.{name}"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def reads(table: Table, n: int, op: Op = Op.read) -> list[Any]:
    txn = Txn(0, snapshot=True)
    return [RowChange(table, op, txn, after=(i,)) for i in range(n)]  # type: ignore[arg-type]


def test_bars_only_on_a_terminal_with_text_logs() -> None:
    assert wants_bars(Terminal(), "text")
    assert not wants_bars(Terminal(), "json")  # logs for machines: lines, not bars
    assert not wants_bars(io.StringIO(), "text")  # a pipe, a file, journald
    assert isinstance(display_for(io.StringIO(), "text", 10), LogLines)
    assert isinstance(display_for(Terminal(), "text", 10), Bars)


def test_reads_are_counted_per_table_with_the_estimate_rate_and_eta() -> None:
    clock = Clock()
    estimates = {("public", "orders"): 1000}
    lines = LogLines(10)
    progress = SnapshotProgress("pg", logging.getLogger("t"), lines, lambda s, t: estimates.get((s, t)), clock)
    orders, notes = Table("public", "orders"), Table("public", "notes")
    progress.count(reads(orders, 200) + reads(notes, 5) + reads(orders, 3, Op.update))
    wait_for_estimate(progress, "public.orders")
    clock.now += 2
    figures = progress.figures()
    assert figures["public.orders"] == {
        "rows": 200,
        "estimate": 1000,
        "percent": 20.0,
        "rows_per_second": 100.0,
        "eta_seconds": 8.0,
        "done": False,
        "run": None,
    }
    assert figures["public.notes"]["estimate"] is None and figures["public.notes"]["eta_seconds"] is None
    progress.tick(snapshotting=False)  # the phase moved on: every table is done
    assert progress.figures()["public.orders"]["done"] is True


def test_snapshots_on_demand_show_the_sources_own_counts_and_end_when_it_says_so() -> None:
    clock = Clock()
    estimates = {("public", "orders"): 1000}
    progress = SnapshotProgress("pg", logging.getLogger("t"), LogLines(10), lambda s, t: estimates.get((s, t)), clock)
    desk = SnapshotDesk()
    desk.figures = progress.figures
    orders = Table("public", "orders")
    progress.count(reads(orders, 30))  # the initial snapshot
    progress.tick(snapshotting=False)
    # A request resumed after a restart: 100 rows were published before this process started.
    desk.report_backfills([Backfill("req1", "public.orders", after=(100,), rows=100)])
    progress.track_backfills(desk.backfill_progress())
    wait_for_estimate(progress, "public.orders")
    clock.now += 2
    desk.report_backfills([Backfill("req1", "public.orders", after=(300,), rows=300)])
    progress.track_backfills(desk.backfill_progress())
    progress.tick(snapshotting=False)  # streaming: a snapshot on demand is not done until the source says so
    assert progress.figures()["public.orders"] == {
        "rows": 300,
        "estimate": 1000,
        "percent": 30.0,
        "rows_per_second": 100.0,  # 200 rows in 2 s: the rows before the restart are not this run's rate
        "eta_seconds": 7.0,
        "done": False,
        "run": "req1",
    }
    (running,) = desk.status()["running"]
    assert running["estimate"] == 1000 and running["eta_seconds"] == 7.0
    desk.finished(Backfill("req1", "public.orders", after=(320,), rows=320), logging.getLogger("t"))
    desk.report_backfills([])
    progress.track_backfills(desk.backfill_progress())
    assert progress.figures()["public.orders"]["rows"] == 320  # the last chunk counts
    assert progress.figures()["public.orders"]["done"] is True
    desk.report_backfills([Backfill("req2", "public.orders")])  # a newer request shows instead
    progress.track_backfills(desk.backfill_progress())
    assert progress.figures()["public.orders"]["run"] == "req2"
    assert progress.figures()["public.orders"]["rows"] == 0


def test_snapshot_progress_is_in_the_prometheus_metrics() -> None:
    metrics = Metrics("app")
    status = metrics.source("pg", "postgres_wal")
    status.snapshot = {"public.orders": {**TableProgress("public.orders", 0.0, rows=5, estimate=9).figures(1.0)}}
    text = metrics.prometheus()
    labels = 'app="app",source="pg",type="postgres_wal",table="public.orders"'
    assert f"liberator_snapshot_rows{{{labels}}} 5" in text
    assert f"liberator_snapshot_rows_estimate{{{labels}}} 9" in text
    assert f"liberator_snapshot_done{{{labels}}} 0" in text


def wait_for_estimate(progress: SnapshotProgress, table: str) -> None:
    from tests.support import wait_for

    wait_for(lambda: progress.tables[table].estimate is not None, timeout=5, what="the estimate lookup")


def test_one_log_line_per_table_each_interval_and_one_when_done(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    progress = SnapshotProgress("pg", logging.getLogger("liberator.source.pg"), LogLines(10), None, clock)
    orders = Table("public", "orders")
    caplog.set_level(logging.INFO)
    progress.count(reads(orders, 50))
    for _second in range(25):
        clock.now += 1
        progress.count(reads(orders, 50))
        progress.tick(snapshotting=True)
    assert [r.getMessage() for r in caplog.records] == [
        "snapshot progress public.orders: 600 rows, 55 rows/s",
        "snapshot progress public.orders: 1,100 rows, 52 rows/s",
    ]
    caplog.clear()
    progress.tick(snapshotting=False)
    progress.tick(snapshotting=False)
    assert [r.getMessage() for r in caplog.records] == ["snapshot public.orders: done, 1,300 rows in 25s, 52 rows/s"]


def test_a_line_says_the_estimate_percent_and_eta_and_never_past_100_percent() -> None:
    table = TableProgress("public.orders", started=0.0, rows=12_345, estimate=50_000)
    assert table.line(4.0) == "public.orders: 12,345 of ~50,000 rows (24.7%), 3,086 rows/s, ETA 12s"
    table.rows = 60_000  # the statistics lag behind the table
    assert table.line(4.0) == "public.orders: 60,000 of ~50,000 rows (100.0%), 15,000 rows/s"


def test_bars_draw_each_table_and_stop_once_all_are_done() -> None:
    out = Terminal()
    bars = Bars(out, force_terminal=True)
    tables = [TableProgress("public.orders", 0.0, rows=500, estimate=1000), TableProgress("public.notes", 0.0)]
    bars.show("pg", logging.getLogger("t"), tables, 1.0)
    for table in tables:
        table.done, table.finished = True, 2.0
    bars.show("pg", logging.getLogger("t"), tables, 2.0)
    text = out.getvalue()
    assert "pg public.orders" in text and "pg public.notes" in text and "500/500" in text
    assert not bars._started  # the terminal belongs to the log again
