"""Snapshots on demand between watermarks (DBLog): the bookkeeping every CDC source shares.

A source reads a chunk of the first backfill's table in key order, between a low and a high watermark of
its own log (postgres_wal: messages it writes into the WAL; mysql_binlog: binlog positions it reads). While
its stream goes from one watermark to the other, every key of that table the stream touches is dropped
from the chunk (`saw`): the stream carries that key, newer than the chunk. When the stream passes the high
watermark, the rows left go out as reads (`close_window`), and the backfill's progress moves after the chunk's
last key. How the watermarks are written and recognised is the source's; the rest is here.

With `snapshot_workers: N` a window holds N chunks read at once (`Span`, `window_spans`, `ParallelReads`):
their end keys come first from one query of the key columns, the reads all start after the low watermark
and the high watermark is taken once every read has ended (docs/snapshots.md says why that is enough).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, TypeVar

from liberator.capture import CapturedTable, ChangeBatch, Op, PoisonRow, RowChange, Txn
from liberator.snapshots import Backfill, SnapshotDesk, SnapshotRequest

INTAKE_INTERVAL = 0.5  # seconds between looks at the desk

Key = tuple[Any, ...]
R = TypeVar("R")


@dataclass(frozen=True)
class Span:
    """One read of a window: the rows after `after` (None: from the start), up to `upto` or `limit` rows."""

    after: Key | None
    upto: Key | None
    limit: int | None


def window_spans(after: Key | None, chunk: int, workers: int, ends: Callable[[], Sequence[Key]]) -> list[Span]:
    """What the next window reads: one chunk after `after`, or with workers, `workers` chunks whose end keys
    `ends()` finds (the keys that end each of the next `workers` chunks of `chunk` rows, fewer near the table's
    end; read before the low watermark: they only split the range, every row is read after it)."""
    if workers == 1:
        return [Span(after, None, chunk)]
    spans: list[Span] = []
    for end in ends():
        spans.append(Span(after, tuple(end), None))
        after = tuple(end)
    if len(spans) < workers:  # the table ends in the next chunk (rows inserted since count too)
        spans.append(Span(after, None, chunk))
    return spans


def window_end(spans: Sequence[Span], counts: Sequence[int], lasts: Sequence[Key | None]) -> tuple[Key | None, bool]:
    """The window's last key (progress after it) and whether more rows may follow, from each span's row count
    and the key of its last row."""
    last: Key | None = None
    full = True
    for span, count, row_last in zip(spans, counts, lasts, strict=True):
        if span.upto is not None:
            last = span.upto
        elif row_last is not None:
            last = row_last
        if span.limit is not None:
            full = count >= span.limit
    return last, full


class ParallelReads:
    """A window's reads, one per span: the only one on the calling thread, several at once on a thread pool."""

    def __init__(self, workers: int, name: str) -> None:
        self.workers = workers
        self.name = name
        self._pool: ThreadPoolExecutor | None = None

    def run(self, spans: Sequence[Span], read: Callable[[int, Span], R]) -> list[R]:
        """`read(i, span)` of each span, in span order. All have ended when this returns, even when one failed
        (its error is raised then): no read is still running when the high watermark is taken."""
        if len(spans) == 1:
            return [read(0, spans[0])]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix=f"{self.name}-snapshot")
        futures = [self._pool.submit(read, i, span) for i, span in enumerate(spans)]
        wait(futures)
        return [future.result() for future in futures]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None


class ChunkWindow:
    """One chunk between its watermarks: its rows by key, until the stream passes the high watermark."""

    def __init__(
        self,
        chunk_id: str,
        stream: str,
        captured: CapturedTable,
        rows: dict[tuple[Any, ...], Any],  # the source's form of each row: values, or what it could not read
        last: tuple[Any, ...] | None,
        full: bool,
    ) -> None:
        self.id = chunk_id  # "<backfill id>:<chunk>"
        self.stream = stream  # the table's qualified name
        self.captured = captured
        self.rows = rows
        self.last = last  # the key of the chunk's last row (None: the chunk was empty)
        self.full = full  # a full chunk: more rows may follow
        self.open = False  # the stream is past the low watermark


class WindowedBackfills:
    """The source's backfills (first one running), the chunk window under way, and the desk they report to."""

    takes_blocking = False  # whether the source reads blocking requests (the others are refused at intake)

    def __init__(
        self,
        desk: SnapshotDesk,
        backfills: tuple[Backfill, ...],
        captured: set[str],
        log: logging.Logger,
    ) -> None:
        self.desk = desk
        self.backfills = backfills
        self.captured = captured
        self.log = log
        self.window: ChunkWindow | None = None
        self.watching: str | None = None  # the table whose streamed keys are dropped from the open window
        self._intake_at = 0.0
        if backfills:
            desk.report_backfills(backfills)  # resumed from the stored position: visible to --status at once

    def accept(self, request: SnapshotRequest) -> tuple[list[Backfill], str | None]:
        """A request's backfills, or why it is refused (the source checks its tables and condition)."""
        raise NotImplementedError

    def intake(self) -> bool:
        """Cancels and new requests from the desk (every INTAKE_INTERVAL); True when the backfills changed."""
        now = time.monotonic()
        if now - self._intake_at < INTAKE_INTERVAL:
            return False
        self._intake_at = now
        backfills, changed = self.desk.intake(
            self.backfills, self.accept, self.captured, self.log, blocking=self.takes_blocking
        )
        if changed:
            self.backfills = backfills
            if self.window is not None and (not backfills or backfills[0].id != self.window.id.split(":")[0]):
                self.window = self.watching = None  # its backfill was cancelled
            self.desk.report_backfills(backfills)
        return changed

    def blocking_request(self) -> list[Backfill]:
        """The tables of the blocking request first among the backfills (read together), or none."""
        if not self.backfills or not self.backfills[0].blocking:
            return []
        first = self.backfills[0].id
        return [b for b in self.backfills if b.blocking and b.id == first]

    def first_is(self, request_id: str) -> bool:
        """Whether the request is still first among the backfills (not cancelled)."""
        return bool(self.backfills) and self.backfills[0].id == request_id

    def drop(self, request_id: str, reason: str | None = None) -> None:
        """The request's backfills leave the position; `reason`: why it failed (one warning, and --status)."""
        if reason is not None:
            self.log.warning("blocking snapshot %s dropped: %s", request_id, reason)
            self.desk.failed(request_id, reason)
        self.backfills = tuple(b for b in self.backfills if b.id != request_id)
        self.desk.report_backfills(self.backfills)

    def open_window(self, window: ChunkWindow, watch_now: bool) -> None:
        self.window = window
        window.open = watch_now
        self.watching = window.stream if watch_now else None

    def saw(self, key: Sequence[Any]) -> None:
        """A streamed change of the watched table between the watermarks: the stream carries this key."""
        assert self.window is not None
        self.window.rows.pop(tuple(key), None)

    def saw_rows(self, key_index: Sequence[int], rows: Sequence[Sequence[Any]]) -> None:
        pop = self.window.rows.pop if self.window is not None else None
        if pop is None:
            return
        for values in rows:
            pop(tuple(values[i] for i in key_index), None)

    def truncated(self, stream: str) -> None:
        """A TRUNCATE of the watched table inside the window: the chunk read rows it removed."""
        if self.window is not None and self.watching == stream:
            self.window.rows.clear()

    def close_window(
        self, position: str | None, read: Callable[[Txn, Any], RowChange | PoisonRow] | None = None
    ) -> list[RowChange | PoisonRow]:
        """The stream passed the high watermark: the chunk's rows left, as reads at that place in the stream
        (`read` makes each: a source whose chunk holds rows it could not read makes poison rows of them)."""
        window = self.window
        assert window is not None
        self.window = self.watching = None
        backfill = self.backfills[0]
        txn = Txn(int(time.time() * 1000), position=position, snapshot=True)
        txn.snapshot_incremental = True
        out: list[RowChange | PoisonRow]
        if read is None:
            out = [RowChange(window.captured, Op.read, txn, after=values) for values in window.rows.values()]
        else:
            out = [read(txn, values) for values in window.rows.values()]
        done = Backfill(
            backfill.id, backfill.stream, backfill.where, window.last or backfill.after, backfill.rows + len(out)
        )
        if window.full:
            self.backfills = (done, *self.backfills[1:])
        else:
            self.backfills = self.backfills[1:]
            self.desk.finished(done, self.log)
        self.desk.report_backfills(self.backfills)
        return out


class BlockingRead:
    """A blocking request's read while the stream waits, what every source shares: the log lines when the stream
    pauses and resumes, the rows read per table for --status, cancels heard between chunks, the request dropped
    at the end. The source makes the snapshot, finds its point, and reads the tables in it (its `read` items)."""

    def __init__(self, backfills: WindowedBackfills, request: Sequence[Backfill], point: str) -> None:
        self.backfills = backfills
        self.request = list(request)
        self.id = self.request[0].id
        self.point = point
        self.rows: dict[str, int] = {b.stream: 0 for b in self.request}
        self.gone = False  # cancelled during the read
        self._started = time.monotonic()

    def paused(self) -> None:
        self._started = time.monotonic()
        self.backfills.log.info(
            "stream paused at %s for blocking snapshot %s of %s", self.point, self.id, ", ".join(self.rows)
        )

    def count(self, batch: ChangeBatch) -> None:
        """A batch the read yields: its rows counted, and reported (for --status and the progress figures)."""
        counts = self.rows
        for item in batch.items:
            name = getattr(getattr(item, "table", None), "name", None)
            if name in counts:
                counts[name] += 1
        backfills = self.backfills
        backfills.backfills = tuple(
            Backfill(b.id, b.stream, b.where, b.after, counts[b.stream], True) if b.id == self.id else b
            for b in backfills.backfills
        )
        backfills.desk.report_backfills(backfills.backfills)

    def cancelled(self) -> bool:
        """Between chunks: whether the request was cancelled (then the read ends there)."""
        backfills = self.backfills
        backfills.intake()
        if not backfills.first_is(self.id):
            self.gone = True
            backfills.log.info("blocking snapshot %s cancelled during its read, after %d rows", self.id, self.total)
        return self.gone

    @property
    def total(self) -> int:
        return sum(self.rows.values())

    def finish(self) -> None:
        """The read ended (or was cancelled): the request leaves the backfills; the stream resumes."""
        backfills = self.backfills
        if not self.gone:
            for backfill in self.request:
                done = Backfill(backfill.id, backfill.stream, None, None, self.rows[backfill.stream], True)
                backfills.desk.finished(done, backfills.log)
        backfills.drop(self.id)
        backfills.log.info(
            "stream resumed after %.1fs paused: blocking snapshot %s read %d rows of %s at %s",
            time.monotonic() - self._started,
            self.id,
            self.total,
            ", ".join(self.rows),
            self.point,
        )
