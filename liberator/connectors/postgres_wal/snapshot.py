"""The initial snapshot: tables read in primary-key chunks inside a snapshot consistent with a slot.

`CREATE_REPLICATION_SLOT ... EXPORT_SNAPSHOT` returns the slot's consistent point and the name of a
snapshot that sees exactly the transactions committed before it; a normal connection imports it with
`SET TRANSACTION SNAPSHOT` and reads every table, chunk by chunk, in one REPEATABLE READ transaction.
Streaming then starts at that point, so every change after the read is streamed and none before it.
Values are read as text, parsed by the same parsers as streamed values (identical output settings).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
from psycopg import sql

from liberator.capture import ChangeBatch, Op, PoisonRow, RowChange, Txn
from liberator.capture.debezium import mark_snapshot_end
from liberator.connectors.postgres_wal.chunks import ChunkQuery, load_as_text
from liberator.connectors.postgres_wal.config import PostgresWalConfig
from liberator.connectors.postgres_wal.connection import classify, connect
from liberator.connectors.postgres_wal.position import WalPosition, lsn_text, parse_lsn
from liberator.connectors.postgres_wal.rows import UnreadableValue, parse_values, poison_row
from liberator.connectors.postgres_wal.tables import TableCatalog, TableState
from liberator.envelope import Envelope
from liberator.events import Checkpoint, SourceItem


def create_slot(
    conn: psycopg.Connection[Any], slot: str, *, export: bool, temporary: bool = False
) -> tuple[int, str | None]:
    """Create a pgoutput slot on a replication connection: (consistent point, exported snapshot name)."""
    command = sql.SQL("CREATE_REPLICATION_SLOT {} {}LOGICAL pgoutput {}").format(
        sql.Identifier(slot),
        sql.SQL("TEMPORARY " if temporary else ""),
        sql.SQL("EXPORT_SNAPSHOT" if export else "NOEXPORT_SNAPSHOT"),
    )
    row = conn.execute(command).fetchone()
    assert row is not None
    return parse_lsn(str(row[1])), (None if row[2] is None else str(row[2]))


class SnapshotReader:
    def __init__(self, config: PostgresWalConfig, catalog: TableCatalog, what: str, stop: threading.Event) -> None:
        self.config = config
        self.url = config.url
        self.catalog = catalog
        self.chunk = config.snapshot_chunk
        self.what = what
        self.stop = stop

    def read(
        self, snapshot_name: str | None, tables: list[str], point: int, position: WalPosition
    ) -> Iterator[SourceItem]:
        """Events of `tables` as of the snapshot, then a Checkpoint recording each table as read at `point`."""
        items = self._read(snapshot_name, tables, point, position)
        if self.config.envelope is Envelope.debezium:
            return mark_snapshot_end(items, self.stop.is_set)
        return items

    def _read(
        self, snapshot_name: str | None, tables: list[str], point: int, position: WalPosition
    ) -> Iterator[SourceItem]:
        conn = connect(self.url, self.config, what=self.what)
        try:
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            if snapshot_name is not None:
                conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot_name)))
            for name in tables:
                state = self.catalog.from_catalog(name)
                yield from self._table(conn, state, point)
                if self.stop.is_set():
                    return
                position = position.with_table(name, point)
                yield Checkpoint(position)
            conn.execute("COMMIT")
        except psycopg.Error as exc:
            raise classify(exc, self.url, f"{self.what}: snapshot", self.config) from None
        finally:
            conn.close()

    def _table(self, conn: psycopg.Connection[Any], state: TableState, point: int) -> Iterator[SourceItem]:
        load_as_text(conn, state.name)
        query = ChunkQuery(state)
        first, after = query.rows(after=False, limit=self.chunk), query.rows(after=True, limit=self.chunk)
        point_text = lsn_text(point)
        key_index = state.captured.key_index
        last_key: list[Any] | None = None
        while not self.stop.is_set():
            cursor = conn.cursor()
            rows = (cursor.execute(first) if last_key is None else cursor.execute(after, last_key)).fetchall()
            # One chunk, one batch: the rows share their read time and the snapshot's point.
            txn = Txn(int(time.time() * 1000), position=point_text, snapshot=True)
            yield ChangeBatch([read_change(state, txn, row) for row in rows], None)
            if len(rows) < self.chunk:
                return
            last_key = [rows[-1][i] for i in key_index]


def read_change(state: TableState, txn: Txn, row: Sequence[Any]) -> RowChange | PoisonRow:
    """A row read by a snapshot (the server's text) as a read change, or the poison row it is."""
    try:
        return RowChange(state.captured, Op.read, txn, after=parse_values(state, row))
    except UnreadableValue as exc:
        return poison_row(state, Op.read, txn, str(exc), new=row)
