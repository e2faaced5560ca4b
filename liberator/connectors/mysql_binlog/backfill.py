"""Snapshots on demand for the binlog source: read-only chunks between binlog-position watermarks (DBLog).

Nothing is written to the source database. For each chunk, on the source's own connection: the low
watermark is the binlog point of a new consistent-snapshot transaction (MariaDB reports that exact point,
`binlog_snapshot_file/position`; MySQL's is the binlog end read just before the transaction starts), the
chunk's rows are read in primary-key order after the last key done, the transaction ends, and the high
watermark is the binlog end read right after. The stream goes on in between. A rows event of the chunk's
table that ends after the low watermark and not after the high one drops its keys from the chunk (old and new
key of an update); when the stream stands at or past the high watermark between transactions, the rows left
go out as reads (op `r`, `source.snapshot: incremental`) at that place in the stream.

Why per-key order holds: a transaction that ends at or before the low watermark is in the chunk's read and is
streamed before the chunk. One that ends between the watermarks is streamed before the chunk too, and its
keys are gone from it. One that ends after the high watermark is streamed after the chunk, which holds an
older state. Both watermarks are transaction boundaries, so a rows event is inside the window exactly when its
transaction is.

A quiet database needs no write to close the window: the stream's own position, between transactions, is the
end of the last event the server sent (its heartbeats carry it when nothing else comes), and it reaches the
high watermark as soon as the server has sent everything written before it.

With `snapshot_workers: N` a window holds N chunks: their end keys come first from one query of the key
columns (liberator.watermarks.window_spans), then the N chunks are read at once, each on its own connection
in its own consistent snapshot at its own point; the low watermark is the earliest of those points and the
high watermark the binlog end read once every read has ended. Each read then holds every transaction that
ends at or before the low watermark, and none that ends after the high one; a transaction between the two
drops its keys from the window, whichever read holds them (docs/snapshots.md).

The table's definition is read from information_schema once per backfill, and again after a DDL statement
naming it goes through the stream (`ddl`), which also abandons a window open on it: it is read again in the
new shape.

The backfill's progress (the last key of the last chunk that went out) is part of the position, so a
restart resumes after it; a chunk whose window had not closed is read again.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from typing import Any

import pymysql  # type: ignore[import-untyped]

from liberator.connectors.mysql_binlog.checks import binlog_status, connect
from liberator.connectors.mysql_binlog.chunks import ChunkSql
from liberator.connectors.mysql_binlog.config import MySQLBinlogConfig
from liberator.connectors.mysql_binlog.history import TableDef
from liberator.connectors.mysql_binlog.position import Coord
from liberator.connectors.mysql_binlog.tables import BinlogTable, TableCatalog, read_table_def
from liberator.errors import TransientSourceError
from liberator.snapshots import Backfill, SnapshotDesk, SnapshotRequest
from liberator.watermarks import ChunkWindow, Key, ParallelReads, Span, WindowedBackfills, window_end, window_spans

_CHANGED = frozenset({1054, 1146})  # unknown column, no such table: the shape changed since it was read


class BinlogBackfill(WindowedBackfills):
    takes_blocking = True  # read by liberator.connectors.mysql_binlog.blocking, not in chunks

    def __init__(
        self,
        config: MySQLBinlogConfig,
        tables: TableCatalog,
        conn: Any,
        mysql: bool,
        captured: set[str],
        desk: SnapshotDesk,
        backfills: tuple[Backfill, ...],
        log: logging.Logger,
    ) -> None:
        super().__init__(desk, backfills, captured, log)
        self.config = config
        self.tables = tables
        self.conn = conn  # the source's own connection (information_schema, chunks, the high watermark)
        self.mysql = mysql
        self.chunk = config.snapshot_chunk
        self.workers = config.snapshot_workers
        self.low: Coord | None = None  # the open window's watermarks
        self.high: Coord | None = None
        self._definitions: dict[str, TableDef | None] = {}  # table -> its shape, read once (again after DDL)
        self._readers: list[Any] = []  # with workers: a connection of its own for each read of a window
        self._reads = ParallelReads(self.workers, config.name)

    # -- between transactions ----------------------------------------------------------------------------

    def next_chunk(self) -> None:
        """Read the next window of the first backfill between two watermarks, unless one is under way."""
        if self.window is not None or not self.backfills or self.backfills[0].blocking:
            return  # a blocking snapshot first: liberator.connectors.mysql_binlog.blocking reads it
        backfill = self.backfills[0]
        fresh = backfill.stream not in self._definitions  # its shape read just now, not kept from before
        table = self._table(backfill.stream)
        if table is None:  # dropped since the request: nothing more to read
            self.log.warning("snapshot %s: table %s no longer exists; dropped", backfill.id, backfill.stream)
            self._definitions.pop(backfill.stream, None)
            self.backfills = self.backfills[1:]
            self.desk.report_backfills(self.backfills)
            return
        sql = ChunkSql(table.table, table.published, backfill.where)
        try:
            spans = window_spans(backfill.after, self.chunk, self.workers, lambda: self._ends(table, sql, backfill))
            readers = [self._reader(index) for index in range(len(spans))]  # connected here, before the reads
            reads = self._reads.run(spans, lambda index, span: self._read(readers[index], sql, span))
            with self.conn.cursor() as cur:
                status = binlog_status(cur)  # after every read ended
                high = Coord(str(status[0]), int(status[1]))
        except pymysql.MySQLError as exc:
            if exc.args and exc.args[0] in _CHANGED and not fresh:
                # A DDL the stream has not reached yet: read the shape again; the next loop reads the window again.
                self.log.info("snapshot %s: the shape of %s changed; reading it again", backfill.id, backfill.stream)
                self._definitions.pop(backfill.stream, None)
                return
            self.close()
            raise TransientSourceError(
                f"source {self.config.name}: snapshot {backfill.id} of {backfill.stream}: {exc}"
            ) from None
        key_index = table.captured.key_index
        by_key: dict[Key, list[Any]] = {}
        lasts: list[Key | None] = []
        for _low, rows in reads:
            images = [table.normalise(list(row)) for row in rows]
            by_key.update((tuple(values[i] for i in key_index), values) for values in images)
            lasts.append(tuple(images[-1][i] for i in key_index) if images else None)
        last, full = window_end(spans, [len(rows) for _low, rows in reads], lasts)
        chunk_id = f"{backfill.id}:{uuid.uuid4().hex[:8]}"
        # The earliest snapshot point: every read holds what ends at or before it; what ends after it and not
        # after `high` is streamed inside the window and drops its keys, whichever read holds them.
        self.low, self.high = min(low for low, _rows in reads), high
        window = ChunkWindow(chunk_id, backfill.stream, table.captured, by_key, last, full)
        self.open_window(window, watch_now=True)  # rows events at or before `low` are let through (`inside`)

    def reached(self, coord: Coord | None) -> bool:
        """Whether the stream, between transactions at `coord`, has passed the open window's high watermark."""
        return self.window is not None and coord is not None and self.high is not None and self.high <= coord

    def inside(self, coord: Coord) -> bool:
        """Whether a rows event ending at `coord` belongs to a transaction between the watermarks."""
        return self.low is not None and self.low < coord

    def ddl(self, lowered: str) -> None:
        """A DDL statement in the stream (lower case): the tables it may name are read again before their next
        chunk, and a window open on one of them is abandoned (read again in the new shape)."""
        named = {*self._definitions, *(() if self.window is None else (self.window.stream,))}
        for qualified in named:
            if qualified.split(".", 1)[1].lower() in lowered:
                self._definitions.pop(qualified, None)
                if self.window is not None and self.window.stream == qualified:
                    self.log.info("snapshot: a DDL statement names %s; its chunk is read again", qualified)
                    self.window = self.watching = None

    def close(self) -> None:
        """The workers' connections and threads (the source's own connection is the source's to close)."""
        for conn in self._readers:
            with contextlib.suppress(Exception):  # a broken connection must not hide the real error
                conn.close()
        self._readers = []
        self._reads.close()

    # -- helpers ------------------------------------------------------------------------------------------

    def _ends(self, table: BinlogTable, sql: ChunkSql, backfill: Backfill) -> list[Key]:
        """The keys ending the window's chunks, in the form a chunk's last key has (the normalised values)."""
        with self.conn.cursor() as cur:
            cur.execute(*sql.boundaries(backfill.after, self.chunk, self.workers))
            ends = cur.fetchall()
        key_index = table.captured.key_index
        normalised: list[Key] = []
        for end in ends:
            values: list[Any] = [None] * len(table.published)
            for place, value in zip(key_index, end, strict=True):
                values[place] = value
            table.normalise(values)
            normalised.append(tuple(values[i] for i in key_index))
        return normalised

    def _read(self, conn: Any, sql: ChunkSql, span: Span) -> tuple[Coord, list[Any]]:
        """One span's rows in their own consistent snapshot, and the binlog point of that snapshot."""
        query, args = sql.rows(span)
        with conn.cursor() as cur:
            low = self._begin(cur)
            try:
                cur.execute(query, args)
                rows = list(cur.fetchall())
            except BaseException:
                with contextlib.suppress(pymysql.MySQLError):
                    conn.rollback()
                raise
            conn.commit()
        return low, rows

    def _reader(self, index: int) -> Any:
        """The connection of a window's `index`-th read: the source's own with one worker, else one of its own."""
        if self.workers == 1:
            return self.conn
        while len(self._readers) <= index:
            self._readers.append(connect(self.config))
        return self._readers[index]

    def _begin(self, cur: Any) -> Coord:
        """Start the chunk's read transaction; its low watermark."""
        cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        if self.mysql:
            # MySQL reports no snapshot point: the binlog end just before the read view is made. Every
            # transaction before it is in the binlog; see docs/snapshots.md for what that leaves open.
            status = binlog_status(cur)
            cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
            return Coord(str(status[0]), int(status[1]))
        cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
        cur.execute("SHOW STATUS LIKE 'binlog_snapshot_%'")
        status = {str(k).lower(): str(v) for k, v in cur.fetchall()}
        return Coord(status["binlog_snapshot_file"], int(status["binlog_snapshot_position"]))

    def _table(self, qualified: str) -> BinlogTable | None:
        """The table's published version, its shape read from information_schema once (again after DDL)."""
        if qualified not in self._definitions:
            database, name = qualified.split(".", 1)
            self._definitions[qualified] = read_table_def(self.conn, database, name, self.mysql)
        definition = self._definitions[qualified]
        return None if definition is None else self.tables.table(definition)

    def accept(self, request: SnapshotRequest) -> tuple[list[Backfill], str | None]:
        found: list[Backfill] = []
        if request.blocking and request.where is not None:
            return [], "a blocking snapshot reads whole tables: ask without the condition, or not blocking"
        for name in request.tables:
            if name not in self.captured:
                known = ", ".join(sorted(self.captured))
                return [], f"no captured table {name!r} (this source captures {known}; name it database.table)"
            backfill = Backfill(request.id, name, request.where, blocking=request.blocking)
            self._definitions.pop(name, None)  # a new request reads the shape as it is now
            table = self._table(name)
            if table is None:
                return [], f"table {name} does not exist"
            try:
                with self.conn.cursor() as cur:
                    cur.execute(*ChunkSql(table.table, table.published, request.where).rows(Span(None, None, 0)))
                    cur.fetchall()
            except pymysql.MySQLError as exc:
                return [], f"the condition {request.where!r} does not run on {name}: {exc.args[-1]}"
            finally:
                self.conn.commit()
            found.append(backfill)
        return found, None
