"""Snapshots on demand for the query source: a table's rows read again, in key order, while polling goes on.

The reading thread takes requests from its `SnapshotDesk` between polls; each table of a request becomes a
`Backfill` in the position, stored durably before its first page, so a restart resumes it from the last
page published. One page of the first backfill is read after every poll, so polling never waits longer than
a page. Rows go out as reads (op `r`) of the row as it is now. Per key order holds as it does for polling: a
row changed after its page was read is published again by a later poll, with its newer state.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from liberator.capture import BatchItem, ChangeBatch, Op
from liberator.connectors.query.parallel import ParallelPages
from liberator.connectors.query.position import QueryPosition
from liberator.connectors.query.reader import TableReader, fetch
from liberator.events import Checkpoint
from liberator.snapshots import Backfill, SnapshotDesk, SnapshotRequest

BackfillItem = ChangeBatch | Checkpoint
Changes = Callable[[TableReader, Sequence[Sequence[Any]], Op, int], list[BatchItem]]


class Backfiller:
    def __init__(
        self,
        desk: SnapshotDesk,
        page: int,
        batch: int,
        changes: Changes,
        log: logging.Logger,
        parallel: ParallelPages | None = None,
    ) -> None:
        self.desk = desk
        self._page = page
        self._parallel = parallel  # with snapshot_workers: a step reads a window of pages at once
        self._batch = batch
        self._changes = changes
        self._log = log

    def step(
        self, conn: sa.Connection, readers: Sequence[TableReader], position: QueryPosition
    ) -> Iterator[BackfillItem]:
        """Take new requests and cancels, then read one page of the first backfill; the last item carries the
        position after it all (a Checkpoint when nothing was read)."""
        by_name = {r.name: r for r in readers}
        before = position
        position = yield from self.take(conn, readers, position)
        changed, backfills = position is not before, position.backfills
        if backfills:
            position = yield from self._page_of(conn, by_name[backfills[0].stream], position)
        elif not changed:
            yield Checkpoint(position)
        self.desk.report_backfills(position.backfills)

    def take(
        self, conn: sa.Connection, readers: Sequence[TableReader], position: QueryPosition
    ) -> Generator[Checkpoint, None, QueryPosition]:
        """Take new requests and cancels into the position, stored at once (a durable Checkpoint) when they
        change it; also before the first poll of a read, so a table moved to a new topic is re-read."""
        backfills, changed = self.desk.intake(
            position.backfills,
            lambda request: self._accept(conn, request, readers),
            {r.name for r in readers},
            self._log,
        )
        if changed:
            position = position.with_backfills(backfills)
            yield Checkpoint(position, durable=True)  # a request survives a crash from here on
        return position

    def _accept(
        self, conn: sa.Connection, request: SnapshotRequest, readers: Sequence[TableReader]
    ) -> tuple[list[Backfill], str | None]:
        found: list[Backfill] = []
        for name in request.tables:
            # By the entry's name or table, or the captured table's qualified name (a move's re-read asks so).
            matches = [r for r in readers if name in (r.name, r.table_name, r.table.name if r.table else None)]
            if not matches:
                known = ", ".join(sorted(r.name for r in readers))
                return [], f"no captured table {name!r} (this source captures {known})"
            for reader in matches:
                try:  # a condition the database cannot run is refused now, not when the backfill reaches it
                    reader.backfill_page(conn, None, request.where, 0)
                except SQLAlchemyError as exc:
                    reason = str(getattr(exc, "orig", exc)).splitlines()[0]
                    return [], f"the condition {request.where!r} does not run on {reader.name}: {reason}"
                found.append(Backfill(request.id, reader.name, request.where))
        return found, None

    def _page_of(
        self, conn: sa.Connection, reader: TableReader, position: QueryPosition
    ) -> Generator[BackfillItem, None, QueryPosition]:
        backfill = position.backfills[0]
        pages, finished = self._pages(conn, reader, backfill)
        read_ms = int(time.time() * 1000)
        for rows in pages:  # cut page by page, as one reader's pages are
            for start in range(0, len(rows), self._batch):
                chunk = rows[start : start + self._batch]
                backfill = Backfill(
                    backfill.id, backfill.stream, backfill.where, reader.key_of(chunk[-1]), backfill.rows + len(chunk)
                )
                position = position.with_backfills((backfill, *position.backfills[1:]))
                yield ChangeBatch(self._changes(reader, chunk, Op.read, read_ms), position)
        if finished:
            position = position.with_backfills(position.backfills[1:])
            self.desk.finished(backfill, self._log)
            yield Checkpoint(position)
        return position

    def _pages(
        self, conn: sa.Connection, reader: TableReader, backfill: Backfill
    ) -> tuple[list[Sequence[Sequence[Any]]], bool]:
        """The next page of the backfill, or with workers its next window of pages read at once; and whether
        the backfill is done (its last page, one with a LIMIT, was not full)."""
        after, where, limit = backfill.after, backfill.where, self._page
        if self._parallel is None:
            rows = reader.backfill_page(conn, after, where, limit)
            return [rows], len(rows) < limit
        ends = reader.backfill_ends(conn, after, where, limit, self._parallel.workers)
        starts = [after, *ends][:-1]  # each page starts where the one before it ends
        spans = (reader.backfill_span(start, end, where) for start, end in zip(starts, ends, strict=True))
        pages = list(self._parallel.read(spans, fetch, conn))
        if len(ends) == self._parallel.workers:
            return pages, False
        # Less than a window was left: what follows the last full page is read as one page.
        tail = reader.backfill_page(conn, ends[-1] if ends else after, where, limit)
        return [*pages, tail], len(tail) < limit
