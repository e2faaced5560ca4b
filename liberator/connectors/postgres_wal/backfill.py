"""Snapshots on demand for the WAL source: chunks read between watermarks in the stream (DBLog).

For each chunk, on its own connection: a low watermark goes into the WAL (`pg_logical_emit_message`, not
transactional, so it is decoded at its own place in the stream), the chunk's rows are read in primary-key
order after the last key done (autocommit: a short transaction of its own, no snapshot held), and a high
watermark follows. The stream goes on meanwhile. Between the two watermarks the decoder drops from the chunk
every row whose key a streamed change touches; at the high watermark the rows left go out as reads (op `r`,
`source.snapshot`) at that place in the stream.

Why per-key order holds: a transaction that committed before the low watermark is streamed before it, and
the chunk, read after it, holds its effect or a newer one. One that committed between the watermarks is
streamed between them: its keys are dropped from the chunk, the stream carries them. One that committed
after the high watermark is streamed after the chunk's rows, and the chunk (read before it) holds an older
state. So no key's older version follows a newer one.

The backfill's progress (the last key of the last chunk that went out) is part of the position, so a
restart resumes after it; a chunk whose high watermark had not come back is read again.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.string import TextLoader

from liberator.capture import Op, RowChange, Txn
from liberator.connectors.postgres_wal.config import PostgresWalConfig
from liberator.connectors.postgres_wal.connection import classify, connect
from liberator.connectors.postgres_wal.position import lsn_text
from liberator.connectors.postgres_wal.rows import parse_values
from liberator.connectors.postgres_wal.tables import TableCatalog, TableState, split_name
from liberator.snapshots import Backfill, SnapshotDesk, SnapshotRequest

WATERMARK_PREFIX = "liberator.watermark"
INTAKE_INTERVAL = 0.5  # seconds between looks at the desk


class Window:
    """One chunk between its watermarks: its rows by key, until the high watermark comes back."""

    def __init__(
        self,
        chunk_id: str,
        state: TableState,
        rows: dict[tuple[Any, ...], list[Any]],
        last: tuple[Any, ...] | None,
        full: bool,
    ) -> None:
        self.id = chunk_id
        self.state = state
        self.rows = rows
        self.last = last  # the key of the chunk's last row (None: the chunk was empty)
        self.full = full  # a full chunk: more rows may follow
        self.open = False  # the low watermark came back through the stream


class WalBackfill:
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
        self.config = config
        self.catalog = catalog
        self.captured = captured
        self.desk = desk
        self.backfills = backfills
        self.what = what
        self.log = log
        self.chunk = config.snapshot_chunk
        self.window: Window | None = None
        self.watching: str | None = None  # the table whose streamed keys are dropped from the open window
        self._conn: psycopg.Connection[Any] | None = None
        self._intake_at = 0.0

    # -- between transactions, on the reading thread ----------------------------------------------------

    def intake(self) -> bool:
        """Cancels and new requests from the desk (every INTAKE_INTERVAL); True when the backfills changed."""
        now = time.monotonic()
        if now - self._intake_at < INTAKE_INTERVAL:
            return False
        self._intake_at = now
        backfills, changed = self.desk.intake(self.backfills, self._accept, self.captured, self.log, blocking=True)
        if changed:
            self.backfills = backfills
            if self.window is not None and (not backfills or backfills[0].id != self.window.id.split(":")[0]):
                self.window = self.watching = None  # its backfill was cancelled
            self.desk.report_backfills(backfills)
        return changed

    def next_chunk(self) -> None:
        """Read the next chunk of the first backfill between two watermarks, unless one is under way."""
        if self.window is not None or not self.backfills or self.backfills[0].blocking:
            return  # a blocking snapshot first: liberator.connectors.postgres_wal.blocking reads it
        backfill = self.backfills[0]
        state = self.catalog.from_catalog(backfill.stream)
        chunk_id = f"{backfill.id}:{uuid.uuid4().hex[:8]}"
        conn = self._connection()
        try:
            conn.execute("SELECT pg_logical_emit_message(false, %s, %s)", (WATERMARK_PREFIX, f"low {chunk_id}"))
            rows = conn.execute(self._query(state, backfill), self._after(state, backfill)).fetchall()
            conn.execute("SELECT pg_logical_emit_message(false, %s, %s)", (WATERMARK_PREFIX, f"high {chunk_id}"))
        except psycopg.Error as exc:
            self.close()
            raise classify(
                exc, self.config.url, f"{self.what}: snapshot {backfill.id} of {backfill.stream}", self.config
            ) from None
        key_index = state.captured.key_index
        parsed = [parse_values(state, row) for row in rows]
        by_key = {tuple(values[i] for i in key_index): values for values in parsed}
        last = tuple(rows[-1][i] for i in key_index) if rows else None  # the server's text: cast back as is
        self.window = Window(chunk_id, state, by_key, last, len(rows) >= self.chunk)

    # -- in the stream ------------------------------------------------------------------------------------

    def saw(self, key: Sequence[Any]) -> None:
        """A streamed change of the watched table between the watermarks: the stream carries this key."""
        assert self.window is not None
        self.window.rows.pop(tuple(key), None)

    def watermark(self, content: bytes, lsn: int) -> list[RowChange]:
        """A watermark came back: the low one opens the window, the high one closes it with its rows."""
        kind, _, chunk_id = content.decode().partition(" ")
        window = self.window
        if window is None or chunk_id != window.id:
            return []  # a watermark of a chunk abandoned (a restart, a cancel)
        if kind == "low":
            window.open = True
            self.watching = window.state.name
            return []
        self.window = self.watching = None
        backfill = self.backfills[0]
        txn = Txn(int(time.time() * 1000), position=lsn_text(lsn), snapshot=True)
        txn.snapshot_incremental = True
        captured = window.state.captured
        out = [RowChange(captured, Op.read, txn, after=values) for values in window.rows.values()]
        done = Backfill(
            backfill.id, backfill.stream, backfill.where, window.last or backfill.after, backfill.rows + len(out)
        )
        if window.full:
            self.backfills = (done, *self.backfills[1:])
        else:
            self.backfills = self.backfills[1:]
            self.log.info("snapshot %s of %s done: %d rows", done.id, done.stream, done.rows)
        self.desk.report_backfills(self.backfills)
        return out

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- helpers ------------------------------------------------------------------------------------------

    def _accept(self, request: SnapshotRequest) -> tuple[list[Backfill], str | None]:
        found: list[Backfill] = []
        if request.blocking and request.where is not None:
            return [], "a blocking snapshot reads whole tables: ask without the condition, or not blocking"
        for name in request.tables:
            qualified = name if "." in name else f"public.{name}"
            if qualified not in self.captured:
                known = ", ".join(sorted(self.captured))
                return [], f"no captured table {name!r} (this source captures {known})"
            try:
                state = self.catalog.from_catalog(qualified)
                self._connection().execute(
                    self._query(state, Backfill(request.id, qualified, request.where), 0)
                ).fetchall()
            except psycopg.Error as exc:
                reason = str(exc).splitlines()[0]
                return [], f"the condition {request.where!r} does not run on {qualified}: {reason}"
            found.append(Backfill(request.id, qualified, request.where, blocking=request.blocking))
        return found, None

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = connect(self.config.url, self.config, what=f"{self.what}: snapshots on demand")
        return self._conn

    def _query(self, state: TableState, backfill: Backfill, limit: int | None = None) -> sql.Composed:
        table = state.table
        conn = self._connection()
        for oid in self._oids(conn, state):
            conn.adapters.register_loader(oid, TextLoader)  # rows as the server's text, parsed like the stream's
        columns = sql.SQL(", ").join(sql.Identifier(c.name) for c in table.columns)
        keys = sql.SQL(", ").join(sql.Identifier(k) for k in table.key)
        conditions: list[sql.Composable] = []
        if backfill.after is not None:
            casts = sql.SQL(", ").join(sql.SQL("%s::" + table.column(k).db_type) for k in table.key)
            conditions.append(sql.SQL("({}) > ({})").format(keys, casts))
        if backfill.where is not None:
            # With the key's placeholders psycopg reads %s, so a literal % is written %%; without them it reads none.
            where_sql = backfill.where.replace("%", "%%") if backfill.after is not None else backfill.where
            conditions.append(sql.SQL("(" + where_sql + ")"))
        where = sql.SQL(" WHERE ") + sql.SQL(" AND ").join(conditions) if conditions else sql.SQL("")
        return sql.SQL("SELECT {} FROM {}{} ORDER BY {} LIMIT {}").format(
            columns,
            sql.Identifier(*split_name(state.name)),
            where,
            keys,
            sql.Literal(self.chunk if limit is None else limit),
        )

    @staticmethod
    def _after(state: TableState, backfill: Backfill) -> list[Any] | None:
        return None if backfill.after is None else list(backfill.after)

    @staticmethod
    def _oids(conn: psycopg.Connection[Any], state: TableState) -> list[int]:
        schema, name = split_name(state.name)
        rows = conn.execute(
            "SELECT atttypid FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
            (sql.Identifier(schema, name).as_string(None),),
        ).fetchall()
        return [int(r[0]) for r in rows]
