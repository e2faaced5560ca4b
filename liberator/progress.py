"""Snapshot progress per table: rows read of the database's estimate, rows/s and ETA, for every source kind.

The source runner sees every snapshot batch, so it counts the `read` rows per table here (`SnapshotProgress`,
on the reading thread) and the daemon's main loop ticks it each second: the figures go into /health, and a
display shows them: bars on a terminal (rich), else one log line per table every `progress.interval`.
The estimate is the database's own statistics (PostgreSQL `pg_class.reltuples`, MySQL/MariaDB
`information_schema.TABLES.TABLE_ROWS`), looked up once per table in the background: never a count(*)
scan of a big table. SQLite keeps no such statistics, and a query (`query:`) has none: rows and rate only.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, Protocol

import sqlalchemy as sa

from liberator.capture.changes import RowChange
from liberator.envelope import Op
from liberator.snapshots import Backfill

Clock = Callable[[], float]
Estimator = Callable[[str, str], "int | None"]  # (schema, table) -> rows the statistics estimate

_PG_ESTIMATE = sa.text(
    "SELECT c.reltuples FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname = coalesce(nullif(:schema, ''), current_schema()) AND c.relname = :table "
    "AND c.relkind IN ('r', 'p', 'm')"
)
_MYSQL_ESTIMATE = sa.text(
    "SELECT TABLE_ROWS FROM information_schema.TABLES "
    "WHERE TABLE_SCHEMA = coalesce(nullif(:schema, ''), DATABASE()) AND TABLE_NAME = :table "
    "AND TABLE_TYPE = 'BASE TABLE'"
)


def estimate_rows(conn: sa.Connection, schema: str, table: str) -> int | None:
    """The table's row count as the database's statistics have it (no scan); None where there are none."""
    dialect = conn.dialect.name
    if dialect == "postgresql":
        found = conn.execute(_PG_ESTIMATE, {"schema": schema, "table": table}).scalar()
    elif dialect in ("mysql", "mariadb"):
        found = conn.execute(_MYSQL_ESTIMATE, {"schema": schema, "table": table}).scalar()
    else:
        return None
    # PostgreSQL says -1 for a table never vacuumed or analyzed: unknown, not empty.
    return int(found) if found is not None and found >= 0 else None


def url_estimator(url: str, timeouts: Any, log: logging.Logger) -> Estimator:
    """Estimates from the database at `url` (any URL liberator.sqldb takes), one short connection each."""
    from liberator import sqldb

    def estimate(schema: str, table: str) -> int | None:
        try:
            engine = sqldb.create_engine(url, timeouts, poolclass=sa.pool.NullPool)
            try:
                with engine.connect() as conn:
                    return estimate_rows(conn, schema, table)
            finally:
                engine.dispose()
        except Exception as exc:  # progress is a nicety: the snapshot goes on without an estimate
            log.debug("no row estimate for %s.%s: %s", schema, table, exc)
            return None

    return estimate


@dataclass
class TableProgress:
    table: str
    started: float
    rows: int = 0
    estimate: int | None = None
    done: bool = False
    finished: float | None = None
    run: str | None = None  # the snapshot on demand reading it (liberator.snapshots); None: the initial snapshot
    rows_before: int = 0  # rows read before `started` (a snapshot on demand resumed after a restart)

    def rate(self, now: float) -> float:
        elapsed = (self.finished or now) - self.started
        return (self.rows - self.rows_before) / elapsed if elapsed > 0 else 0.0

    def eta(self, now: float) -> float | None:
        """Seconds left at the current rate; None without an estimate, a rate, or once the estimate is reached."""
        rate = self.rate(now)
        if self.done or self.estimate is None or rate <= 0 or self.rows >= self.estimate:
            return None
        return (self.estimate - self.rows) / rate

    def figures(self, now: float) -> dict[str, Any]:
        """What /health shows for the table."""
        eta = self.eta(now)
        return {
            "rows": self.rows,
            "estimate": self.estimate,
            "percent": None if not self.estimate else round(min(100.0, 100 * self.rows / self.estimate), 1),
            "rows_per_second": round(self.rate(now), 1),
            "eta_seconds": None if eta is None else round(eta, 1),
            "done": self.done,
            "run": self.run,
        }

    def line(self, now: float) -> str:
        """One log line's worth: `public.orders: 12,345 of ~50,000 rows (24.7%), 3,400 rows/s, ETA 11s`."""
        of = "" if self.estimate is None else f" of ~{self.estimate:,}"
        percent = "" if not self.estimate else f" ({min(100.0, 100 * self.rows / self.estimate):.1f}%)"
        eta = self.eta(now)
        if self.done:
            took = (self.finished or now) - self.started
            return f"{self.table}: done, {self.rows:,} rows in {took:.0f}s, {self.rate(now):,.0f} rows/s"
        return f"{self.table}: {self.rows:,}{of} rows{percent}, {self.rate(now):,.0f} rows/s" + (
            "" if eta is None else f", ETA {eta:.0f}s"
        )


class ProgressDisplay(Protocol):
    """Where progress shows: bars on a terminal, log lines elsewhere."""

    def show(self, source: str, log: logging.Logger, tables: Sequence[TableProgress], now: float) -> None: ...

    def close(self) -> None: ...


class SnapshotProgress:
    """One source's snapshot, per table. `count` runs on the reading thread, `tick` on the daemon's."""

    def __init__(
        self,
        source: str,
        log: logging.Logger,
        display: ProgressDisplay,
        estimator: Estimator | None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.source = source
        self.log = log
        self.display = display
        self.estimator = estimator
        self.clock = clock
        self.tables: dict[str, TableProgress] = {}

    def count(self, items: Sequence[object]) -> None:
        """Count the snapshot reads of a batch (called for batches while the source's phase is snapshot)."""
        tables = self.tables
        read = Op.read
        last: object = None  # a batch's rows are mostly of one table: one look-up per run of them
        progress: TableProgress | None = None
        counted = 0
        for item in items:
            if item.__class__ is not RowChange:
                continue
            change: RowChange = item  # narrowed by the class check (no isinstance or cast per row)
            if change.op is not read:
                continue
            table = change.table
            if table is not last:
                if progress is not None:
                    progress.rows += counted
                counted = 0
                last = table
                progress = tables.get(table.name)
                if progress is None:
                    progress = tables[table.name] = TableProgress(table.name, self.clock())
                    self._look_up(progress, table.schema_name, table.table_name)
            counted += 1
        if progress is not None:
            progress.rows += counted

    def _look_up(self, progress: TableProgress, schema: str, table: str) -> None:
        estimator = self.estimator
        if estimator is None:
            return

        def look_up() -> None:
            progress.estimate = estimator(schema, table)

        threading.Thread(target=look_up, name=f"estimate-{table}", daemon=True).start()

    def track_backfills(self, backfills: Sequence[tuple[Backfill, bool]]) -> None:
        """Each second, the snapshots on demand as the source reported them (oldest first, and whether each
        still runs): a table's newest one replaces what the table showed before. Their rows are the source's
        own count per chunk, so no batch is counted for them on the reading thread."""
        newest = {backfill.stream: (backfill, running) for backfill, running in backfills}
        now = self.clock()
        for stream, (backfill, running) in newest.items():
            progress = self.tables.get(stream)
            if progress is None or progress.run != backfill.id:
                progress = TableProgress(stream, now, rows=backfill.rows, run=backfill.id, rows_before=backfill.rows)
                self.tables[stream] = progress
                schema, _, table = stream.rpartition(".")
                self._look_up(progress, schema, table)
            progress.rows = backfill.rows
            if not running and not progress.done:
                progress.done, progress.finished = True, now

    def tick(self, snapshotting: bool) -> None:
        """Each second: once the source's phase is no longer snapshot, every table the initial snapshot read
        is done (snapshots on demand end when the source says so: `track_backfills`)."""
        tables = list(self.tables.values())
        if not tables:
            return
        now = self.clock()
        if not snapshotting:
            for table in tables:
                if not table.done and table.run is None:
                    table.done, table.finished = True, now
        self.display.show(self.source, self.log, tables, now)

    def figures(self) -> dict[str, dict[str, Any]]:
        now = self.clock()
        return {table.table: table.figures(now) for table in list(self.tables.values())}


@dataclass
class LogLines:
    """Off a terminal: one line per table in progress every `interval` seconds, and one when it is done."""

    interval: float
    _logged: dict[tuple[str, str], float] = field(default_factory=dict)
    _said_done: set[tuple[str, str]] = field(default_factory=set)

    def show(self, source: str, log: logging.Logger, tables: Sequence[TableProgress], now: float) -> None:
        for table in tables:
            key = (source, table.table)
            if table.done:
                if key not in self._said_done:
                    self._said_done.add(key)
                    log.info("snapshot %s", table.line(now))
                continue
            last = self._logged.setdefault(key, now)  # the first line comes one interval in
            if self.interval > 0 and now - last >= self.interval:
                self._logged[key] = now
                log.info("snapshot progress %s", table.line(now))

    def close(self) -> None:
        pass


class _CurrentStderr:
    """Writes to whatever sys.stderr is now: while the bars show, rich puts its proxy there, which prints
    log lines above the bars instead of through them."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


class Bars:
    """On a terminal: a rich progress bar per table (rows of the estimate, rows/s, ETA)."""

    def __init__(self, stream: IO[str] | None = None, force_terminal: bool | None = None) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskID,
            TextColumn,
            TimeRemainingColumn,
        )

        self._console = Console(file=stream or sys.stderr, force_terminal=force_terminal)
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]} rows/s"),
            TimeRemainingColumn(),
            console=self._console,
            redirect_stderr=stream is None,
            redirect_stdout=False,
        )
        self._tasks: dict[tuple[str, str], TaskID] = {}
        self._shown_done: set[tuple[str, str]] = set()
        self._handlers: list[tuple[logging.StreamHandler[Any], Any]] = []
        self._started = False

    def show(self, source: str, log: logging.Logger, tables: Sequence[TableProgress], now: float) -> None:
        if all(table.done and (source, table.table) in self._shown_done for table in tables):
            return  # drawn finished already: the bars stay as they are, the terminal is the log's again
        if not self._started:
            self._start()
        for table in tables:
            key = (source, table.table)
            if table.done:
                self._shown_done.add(key)
            task = self._tasks.get(key)
            if task is None:
                task = self._tasks[key] = self._progress.add_task(f"{source} {table.table}", total=None, rate="0")
            total = table.rows if table.done else table.estimate
            if total is not None and total < table.rows:
                total = None  # past the estimate (statistics lag): no bar is better than a wrong one
            self._progress.update(task, completed=table.rows, total=total, rate=f"{table.rate(now):,.0f}")
        if all(task.finished for task in self._progress.tasks):
            self.close()  # every snapshot shown is done: the log has the terminal to itself again

    def _start(self) -> None:
        self._started = True
        # The log handler on stderr writes through rich while the bars show (see _CurrentStderr).
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream in (sys.stderr, sys.__stderr__):
                self._handlers.append((handler, handler.setStream(_CurrentStderr())))
        self._progress.start()

    def close(self) -> None:
        if self._started:
            self._progress.stop()
            for handler, stream in self._handlers:
                handler.setStream(stream)
            self._handlers.clear()
            self._started = False


def wants_bars(stream: IO[str], log_format: str) -> bool:
    """Bars only for a person watching: a terminal with text logs (JSON logs are for machines)."""
    isatty = getattr(stream, "isatty", None)
    return log_format == "text" and callable(isatty) and bool(isatty())


def display_for(stream: IO[str], log_format: str, interval: float) -> ProgressDisplay:
    return Bars() if wants_bars(stream, log_format) else LogLines(interval)
