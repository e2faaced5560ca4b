"""The initial snapshot: primary-key chunks read in one consistent-snapshot transaction per run.

The run's binlog point is read without a long global lock: MariaDB reports the exact point of its consistent
snapshot (`binlog_snapshot_file/position`); MySQL 8 holds FLUSH TABLES WITH READ LOCK only while it starts
the transaction and reads SHOW MASTER STATUS. A crash makes a new run at a newer point that goes on after the
last key handed over (or from the table's start when Python cannot order its key like the server does);
see SnapshotRun for how the stream keeps per-key order across runs.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import pymysql  # type: ignore[import-untyped]

from liberator.capture import ChangeBatch, Op, RowChange, Txn
from liberator.connectors.mysql_binlog.checks import ServerInfo, binlog_status
from liberator.connectors.mysql_binlog.chunks import ChunkSql
from liberator.connectors.mysql_binlog.position import (
    BinlogPosition,
    Coord,
    GtidState,
    MariaDBGtidPos,
    MySQLGtidSet,
    SnapshotRun,
    SnapshotState,
)
from liberator.connectors.mysql_binlog.tables import BinlogTable, TableCatalog, read_table_def
from liberator.connectors.mysql_binlog.types import key_is_ordered
from liberator.events import Checkpoint, SourceItem
from liberator.watermarks import Span

_READ = Op.read


def begin_consistent_snapshot(conn: Any, info: ServerInfo) -> tuple[Coord, GtidState | None]:
    """Start a REPEATABLE READ consistent-snapshot transaction; return the binlog point it sees."""
    with conn.cursor() as cur:
        cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        if info.mariadb:
            cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
            cur.execute("SHOW STATUS LIKE 'binlog_snapshot_%'")
            status = {str(k).lower(): str(v) for k, v in cur.fetchall()}
            coord = Coord(status["binlog_snapshot_file"], int(status["binlog_snapshot_position"]))
            cur.execute("SELECT BINLOG_GTID_POS(%s, %s)", (coord.file, coord.pos))
            return coord, MariaDBGtidPos.parse(str(cur.fetchone()[0] or ""))
        cur.execute("FLUSH TABLES WITH READ LOCK")
        try:
            cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
            row = binlog_status(cur)
        finally:
            cur.execute("UNLOCK TABLES")
        coord = Coord(str(row[0]), int(row[1]))
        return coord, MySQLGtidSet.parse(str(row[4] or "")) if info.gtid_mode else None


def read_snapshot(
    conn: Any,
    info: ServerInfo,
    position: BinlogPosition,
    tables: TableCatalog,
    chunk: int,
    stop: Any,
) -> Iterator[SourceItem]:
    """Every row of the snapshot's tables from where `position` left off, one batch per primary-key chunk, each
    with the snapshot's progress after it; then a done Checkpoint."""
    state = position.snapshot
    assert state is not None
    at, gtid = begin_consistent_snapshot(conn, info)
    schemas = position.schemas
    if not state.runs:  # the first run: the stream will start from its point
        position = BinlogPosition(at, gtid, schemas, state)
        runs: tuple[SnapshotRun, ...] = (SnapshotRun(0, None, at),)
        first_after = None
        # Stored before the first row: a crash from now on resumes with a later run and streams from this
        # point, with every change since (deletes included), instead of starting over from nothing.
        yield Checkpoint(BinlogPosition(at, gtid, schemas, SnapshotState(state.tables, runs)), durable=True)
    else:
        first_after = state.after
        if first_after is not None:
            database, name = state.tables[state.table_index].split(".", 1)
            current = read_table_def(conn, database, name, not info.mariadb)
            if current is None or not key_is_ordered(current):
                first_after = None  # re-read the whole table in this run (see SnapshotRun)
        runs = (*state.runs, SnapshotRun(state.table_index, first_after, at))
    started_ms = int(time.time() * 1000)
    # The run is one read transaction: its rows share one Txn (so `transaction.order` counts through the run).
    txn = Txn(started_ms, id=f"snapshot:{at}", position=str(at), commit_ms=started_ms, snapshot=True)
    for index in range(state.table_index, len(state.tables)):
        database, name = state.tables[index].split(".", 1)
        definition = read_table_def(conn, database, name, not info.mariadb)
        if definition is None:
            continue  # dropped since the snapshot began
        table = tables.table(definition)
        captured = table.captured
        schemas = schemas.with_table(definition)
        after = first_after if index == state.table_index else None
        key_index = captured.key_index
        for images in table_chunks(conn, table, after, chunk):
            if images:
                after = tuple(images[-1][i] for i in key_index)
                progress = SnapshotState(state.tables, runs, index, after)
                yield ChangeBatch(
                    [RowChange(captured, _READ, txn, None, image) for image in images],
                    BinlogPosition(position.coord, position.gtid, schemas, progress),
                )
            if stop.is_set():
                return
    with contextlib.suppress(pymysql.MySQLError):
        conn.commit()  # a read-only transaction: nothing to lose if it fails
    done = SnapshotState(state.tables, runs, len(state.tables), None, done=True)
    yield Checkpoint(BinlogPosition(position.coord, position.gtid, schemas, done))


def table_chunks(conn: Any, table: BinlogTable, after: tuple[object, ...] | None, chunk: int) -> Iterator[list[Any]]:
    """The table's rows after the key `after` (None: all), in primary-key order, as the source publishes them:
    one list per chunk of `chunk` rows, the last one shorter (maybe empty)."""
    sql = ChunkSql(table.table, table.published, None)  # composite keys as index ranges (liberator.keyset)
    key_index = table.captured.key_index
    normalise = table.normalise
    while True:
        with conn.cursor() as cur:
            cur.execute(*sql.rows(Span(after, None, chunk)))
            rows = cur.fetchall()
        images = [normalise(list(row)) for row in rows]
        yield images
        if len(rows) < chunk:
            return
        after = tuple(images[-1][i] for i in key_index)
