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

The backfill's progress (the last key of the last chunk that went out) is part of the position, so a
restart resumes after it; a chunk whose window had not closed is read again.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import pymysql  # type: ignore[import-untyped]

from liberator.connectors.mysql_binlog.checks import binlog_status, quote
from liberator.connectors.mysql_binlog.config import MySQLBinlogConfig
from liberator.connectors.mysql_binlog.position import Coord
from liberator.connectors.mysql_binlog.tables import BinlogTable, TableCatalog, read_table_def
from liberator.errors import TransientSourceError
from liberator.snapshots import Backfill, SnapshotDesk, SnapshotRequest
from liberator.watermarks import ChunkWindow, WindowedBackfills


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
        self.conn = conn  # the source's own connection (information_schema, chunks)
        self.mysql = mysql
        self.chunk = config.snapshot_chunk
        self.low: Coord | None = None  # the open window's watermarks
        self.high: Coord | None = None

    # -- between transactions ----------------------------------------------------------------------------

    def next_chunk(self) -> None:
        """Read the next chunk of the first backfill between two watermarks, unless one is under way."""
        if self.window is not None or not self.backfills or self.backfills[0].blocking:
            return  # a blocking snapshot first: liberator.connectors.mysql_binlog.blocking reads it
        backfill = self.backfills[0]
        table = self._table(backfill.stream)
        if table is None:  # dropped since the request: nothing more to read
            self.log.warning("snapshot %s: table %s no longer exists; dropped", backfill.id, backfill.stream)
            self.backfills = self.backfills[1:]
            self.desk.report_backfills(self.backfills)
            return
        query, args = self._query(table, backfill)
        try:
            with self.conn.cursor() as cur:
                low = self._begin(cur)
                cur.execute(query, args)
                rows = cur.fetchall()
                self.conn.commit()
                status = binlog_status(cur)
                high = Coord(str(status[0]), int(status[1]))
        except pymysql.MySQLError as exc:
            raise TransientSourceError(
                f"source {self.config.name}: snapshot {backfill.id} of {backfill.stream}: {exc}"
            ) from None
        key_index = table.captured.key_index
        images = [table.normalise(list(row)) for row in rows]
        by_key = {tuple(values[i] for i in key_index): values for values in images}
        last = tuple(images[-1][i] for i in key_index) if images else None
        chunk_id = f"{backfill.id}:{uuid.uuid4().hex[:8]}"
        self.low, self.high = low, high
        window = ChunkWindow(chunk_id, backfill.stream, table.captured, by_key, last, len(rows) >= self.chunk)
        self.open_window(window, watch_now=True)  # rows events at or before `low` are let through (`inside`)

    def reached(self, coord: Coord | None) -> bool:
        """Whether the stream, between transactions at `coord`, has passed the open window's high watermark."""
        return self.window is not None and coord is not None and self.high is not None and self.high <= coord

    def inside(self, coord: Coord) -> bool:
        """Whether a rows event ending at `coord` belongs to a transaction between the watermarks."""
        return self.low is not None and self.low < coord

    # -- helpers ------------------------------------------------------------------------------------------

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
        database, name = qualified.split(".", 1)
        definition = read_table_def(self.conn, database, name, self.mysql)
        return None if definition is None else self.tables.table(definition)

    def _query(self, table: BinlogTable, backfill: Backfill, limit: int | None = None) -> tuple[str, Any]:
        definition = table.table
        columns = ", ".join(quote(c) for c in table.published)
        keys = [quote(k) for k in definition.key]
        conditions = []
        args = None
        if backfill.after is not None:
            conditions.append(f"({', '.join(keys)}) > ({', '.join(['%s'] * len(keys))})")
            args = list(backfill.after)
        if backfill.where is not None:
            # With the key's placeholders PyMySQL formats the query, so a literal % is written %%.
            conditions.append("(" + (backfill.where.replace("%", "%%") if args is not None else backfill.where) + ")")
        where = " WHERE " + " AND ".join(conditions) if conditions else ""
        count = self.chunk if limit is None else limit
        query = (
            f"SELECT {columns} FROM {quote(definition.database)}.{quote(definition.table)}{where} "
            f"ORDER BY {', '.join(keys)} LIMIT {int(count)}"
        )
        return query, args

    def accept(self, request: SnapshotRequest) -> tuple[list[Backfill], str | None]:
        found: list[Backfill] = []
        if request.blocking and request.where is not None:
            return [], "a blocking snapshot reads whole tables: ask without the condition, or not blocking"
        for name in request.tables:
            if name not in self.captured:
                known = ", ".join(sorted(self.captured))
                return [], f"no captured table {name!r} (this source captures {known}; name it database.table)"
            backfill = Backfill(request.id, name, request.where, blocking=request.blocking)
            table = self._table(name)
            if table is None:
                return [], f"table {name} does not exist"
            try:
                with self.conn.cursor() as cur:
                    cur.execute(*self._query(table, backfill, 0))
                    cur.fetchall()
            except pymysql.MySQLError as exc:
                return [], f"the condition {request.where!r} does not run on {name}: {exc.args[-1]}"
            finally:
                self.conn.commit()
            found.append(backfill)
        return found, None
