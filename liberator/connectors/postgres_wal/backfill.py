"""Snapshots on demand for the WAL source: chunks read between watermarks in the stream (DBLog).

For each chunk, on its own connection: a low watermark goes into the WAL (`pg_logical_emit_message`, not
transactional, so it is decoded at its own place in the stream), the chunk's rows are read in primary-key
order after the last key done (autocommit: a short transaction of its own, no snapshot held), and a high
watermark follows (committed, so the WAL is flushed and the walsender sends it at once; its place in the
stream is its commit, after the read). The stream goes on meanwhile. Between the two watermarks the decoder
drops from the chunk every row whose key a streamed change touches; at the high watermark the rows left go
out as reads (op `r`, `source.snapshot`) at that place in the stream.

Why per-key order holds: a transaction that committed before the low watermark is streamed before it, and
the chunk, read after it, holds its effect or a newer one. One that committed between the watermarks is
streamed between them: its keys are dropped from the chunk, the stream carries them. One that committed
after the high watermark is streamed after the chunk's rows, and the chunk (read before it) holds an older
state. So no key's older version follows a newer one.

With `snapshot_workers: N` a window holds N chunks: their end keys come first from one query of the key
columns, then after the low watermark the N chunks are read at once on N connections, and the high watermark
is written when the last read has ended. Every read starts after the low watermark and ends before the high
one, so the argument above holds for each of them; the window's rows go out in key order, chunk after chunk.

The backfill's progress (the last key of the last window that went out) is part of the position, so a
restart resumes after it; a window whose high watermark had not come back is read again.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from liberator.capture import Op, PoisonRow, RowChange, Txn
from liberator.connectors.postgres_wal.chunks import ChunkQuery, load_as_text
from liberator.connectors.postgres_wal.config import PostgresWalConfig
from liberator.connectors.postgres_wal.connection import classify, connect
from liberator.connectors.postgres_wal.position import lsn_text
from liberator.connectors.postgres_wal.rows import UnreadableValue, parse_values, poison_row
from liberator.connectors.postgres_wal.tables import TableCatalog, TableState
from liberator.snapshots import Backfill, SnapshotDesk, SnapshotRequest
from liberator.watermarks import ChunkWindow, Key, ParallelReads, Span, WindowedBackfills, window_end, window_spans

WATERMARK_PREFIX = "liberator.watermark"


@dataclass(frozen=True)
class Unreadable:
    """A chunk row with a value that cannot be read exactly: it goes out as a poison row (`on_error`)."""

    row: Sequence[Any]
    reason: str


class TextReader:
    """A connection reading chunks as the server's text, its text loaders registered once per table."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        self._loaded: set[str] = set()

    def rows(self, name: str, query: sql.Composed, params: Sequence[Any] | None) -> list[tuple[Any, ...]]:
        if name not in self._loaded:
            load_as_text(self.conn, name)
            self._loaded.add(name)
        return self.conn.execute(query, params).fetchall()


class WalBackfill(WindowedBackfills):
    takes_blocking = True  # read by liberator.connectors.postgres_wal.blocking, not in chunks

    def __init__(
        self,
        config: PostgresWalConfig,
        catalog: TableCatalog,
        captured: set[str],
        desk: SnapshotDesk,
        backfills: tuple[Backfill, ...],
        what: str,
        log: logging.Logger,
    ) -> None:
        super().__init__(desk, backfills, captured, log)
        self.config = config
        self.catalog = catalog
        self.what = what
        self.chunk = config.snapshot_chunk
        self.workers = config.snapshot_workers
        self._state: TableState | None = None  # the open window's table, for its poison rows
        self._readers: list[TextReader] = []  # [0] also writes the watermarks
        self._reads = ParallelReads(self.workers, config.name)
        self._queries: dict[tuple[str, str], ChunkQuery] = {}  # (backfill id, table): its shape, read once

    # -- between transactions, on the reading thread ----------------------------------------------------

    def next_chunk(self) -> None:
        """Read the next window of the first backfill between two watermarks, unless one is under way."""
        if self.window is not None or not self.backfills or self.backfills[0].blocking:
            return  # a blocking snapshot first: liberator.connectors.postgres_wal.blocking reads it
        backfill = self.backfills[0]
        chunk_id = f"{backfill.id}:{uuid.uuid4().hex[:8]}"
        try:
            query = self._query(backfill)
            spans = self._spans(query, backfill)
            conn = self._reader(0).conn
            conn.execute("SELECT pg_logical_emit_message(false, %s, %s)", (WATERMARK_PREFIX, f"low {chunk_id}"))
            chunks = self._read(query, spans)
            with conn.transaction():
                # Transactional, so that its commit flushes the WAL: the walsender sends only flushed WAL, and
                # on a quiet database the window would otherwise wait for the WAL writer (wal_writer_delay).
                conn.execute("SELECT pg_logical_emit_message(true, %s, %s)", (WATERMARK_PREFIX, f"high {chunk_id}"))
        except (psycopg.errors.UndefinedColumn, psycopg.errors.UndefinedObject):
            # The table's shape changed since it was read (a column dropped, a type gone) and no change of it
            # was streamed yet to say so: read the shape again; the next loop reads the window again.
            self.log.info("snapshot %s: the shape of %s changed; reading it again", backfill.id, backfill.stream)
            self.reshaped(backfill.stream)
            return
        except psycopg.Error as exc:
            self.close()
            raise classify(
                exc, self.config.url, f"{self.what}: snapshot {backfill.id} of {backfill.stream}", self.config
            ) from None
        state = query.state
        key_index = state.captured.key_index
        by_key: dict[Key, list[Any] | Unreadable] = {}
        for rows in chunks:
            for row in rows:
                try:
                    values = parse_values(state, row)
                except UnreadableValue as exc:
                    by_key[tuple(row[i] for i in key_index)] = Unreadable(row, str(exc))
                else:
                    by_key[tuple(values[i] for i in key_index)] = values
        # A last row's key is the server's text: cast back as is by the next window's query.
        lasts = [tuple(rows[-1][i] for i in key_index) if rows else None for rows in chunks]
        last, full = window_end(spans, [len(rows) for rows in chunks], lasts)
        self._state = state
        self.open_window(ChunkWindow(chunk_id, state.name, state.captured, by_key, last, full), watch_now=False)

    def reshaped(self, name: str) -> None:
        """The stream carried a new shape of `name`: the next chunks read it afresh from the catalog."""
        self._queries = {k: v for k, v in self._queries.items() if k[1] != name}

    # -- in the stream ------------------------------------------------------------------------------------

    def watermark(self, content: bytes, lsn: int) -> list[RowChange | PoisonRow]:
        """A watermark came back: the low one opens the window, the high one closes it with its rows."""
        kind, _, chunk_id = content.decode().partition(" ")
        window = self.window
        if window is None or chunk_id != window.id:
            return []  # a watermark of a chunk abandoned (a restart, a cancel)
        if kind == "low":
            window.open = True
            self.watching = window.stream
            return []
        state, backfill = self._state, self.backfills[0]
        assert state is not None

        def read(txn: Txn, values: Any) -> RowChange | PoisonRow:
            if isinstance(values, Unreadable):
                return poison_row(state, Op.read, txn, values.reason, new=values.row)
            return RowChange(state.captured, Op.read, txn, after=values)

        if not window.full:
            self._queries.pop((backfill.id, backfill.stream), None)
        return self.close_window(lsn_text(lsn), read)

    def close(self) -> None:
        for reader in self._readers:
            reader.conn.close()
        self._readers = []
        self._queries = {}
        self._reads.close()

    # -- helpers ------------------------------------------------------------------------------------------

    def accept(self, request: SnapshotRequest) -> tuple[list[Backfill], str | None]:
        found: list[Backfill] = []
        if request.blocking and request.where is not None:
            return [], "a blocking snapshot reads whole tables: ask without the condition, or not blocking"
        for name in request.tables:
            qualified = name if "." in name else f"public.{name}"
            if qualified not in self.captured:
                known = ", ".join(sorted(self.captured))
                return [], f"no captured table {name!r} (this source captures {known})"
            try:
                query = ChunkQuery(self.catalog.from_catalog(qualified), request.where)
                self._reader(0).rows(qualified, query.rows(after=False, limit=0), None)
            except psycopg.Error as exc:
                reason = str(exc).splitlines()[0]
                return [], f"the condition {request.where!r} does not run on {qualified}: {reason}"
            found.append(Backfill(request.id, qualified, request.where, blocking=request.blocking))
        return found, None

    def _query(self, backfill: Backfill) -> ChunkQuery:
        """The backfill's table as the catalog has it, read once per backfill (and again after a new shape)."""
        key = (backfill.id, backfill.stream)
        query = self._queries.get(key)
        if query is None:
            query = self._queries[key] = ChunkQuery(self.catalog.from_catalog(backfill.stream), backfill.where)
        return query

    def _spans(self, query: ChunkQuery, backfill: Backfill) -> list[Span]:
        """What the next window reads (liberator.watermarks.window_spans), the end keys from the key columns."""

        def ends() -> list[Key]:
            select = query.boundaries(after=backfill.after is not None, chunk=self.chunk, count=self.workers)
            rows = self._reader(0).rows(
                backfill.stream, select, None if backfill.after is None else list(backfill.after)
            )
            return [tuple(row) for row in rows]

        return window_spans(backfill.after, self.chunk, self.workers, ends)

    def _read(self, query: ChunkQuery, spans: list[Span]) -> list[list[tuple[Any, ...]]]:
        """Each span's rows in key order: one read on the watermark connection, several at once on their own."""
        name = query.state.name

        def read(index: int, span: Span) -> list[tuple[Any, ...]]:
            select = query.rows(after=span.after is not None, upto=span.upto is not None, limit=span.limit)
            params = [*(span.after or ()), *(span.upto or ())]
            return self._reader(index).rows(name, select, params or None)

        for index in range(len(spans)):
            self._reader(index)  # connected here, on this thread, before the reads start
        return self._reads.run(spans, read)

    def _reader(self, index: int) -> TextReader:
        while len(self._readers) <= index:
            conn = connect(self.config.url, self.config, what=f"{self.what}: snapshots on demand")
            self._readers.append(TextReader(conn))
        reader = self._readers[index]
        if reader.conn.closed:
            reader = self._readers[index] = TextReader(
                connect(self.config.url, self.config, what=f"{self.what}: snapshots on demand")
            )
        return reader
