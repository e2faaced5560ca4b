"""Blocking snapshots on the binlog source: the stream pauses at a consistent snapshot's own binlog point, the
tables are read in that snapshot, and the stream resumes where it paused (docs/snapshots.md).

When a blocking request comes first among the backfills (between transactions), a connection of its own starts
a consistent-snapshot transaction (`begin_consistent_snapshot`): MariaDB reports its exact binlog point P
(`binlog_snapshot_file/position`); MySQL 8 takes FLUSH TABLES WITH READ LOCK for the moment it starts the
transaction and reads the binlog end, which needs the RELOAD privilege (without it the request is dropped with
the reason, and the stream goes on). P is a transaction boundary and the snapshot holds exactly the
transactions that end at or before it. The stream goes on until, between transactions, its position is at or
past P (on a quiet database the server's heartbeats carry the binlog end, as for the incremental windows):
everything up to P has been streamed and nothing after it. It pauses there, the tables are read whole in the
snapshot as op `r`, and the stream resumes with the next transaction.

Why per-key order holds exactly: the read holds the effect of every transaction streamed before it and of none
streamed after it, so each key's read version sits between the two. Reading in a new transaction after pausing
would see transactions committed after P, which the stream then carries again after the read.

The request is part of the position from when it was taken; the position at the pause point is stored before
the read starts, so a daemon killed mid-read streams on from there and reads the tables again in a new snapshot.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Generator, Iterator
from dataclasses import replace
from typing import Any

import pymysql  # type: ignore[import-untyped]

from liberator.capture import ChangeBatch, Op, RowChange, Txn
from liberator.capture.debezium import mark_snapshot_end
from liberator.connectors.mysql_binlog.backfill import BinlogBackfill
from liberator.connectors.mysql_binlog.checks import ServerInfo, connect
from liberator.connectors.mysql_binlog.config import MySQLBinlogConfig
from liberator.connectors.mysql_binlog.position import BinlogPosition, Coord
from liberator.connectors.mysql_binlog.snapshot import begin_consistent_snapshot, table_chunks
from liberator.connectors.mysql_binlog.tables import TableCatalog, read_table_def
from liberator.envelope import Envelope
from liberator.errors import LiberatorError
from liberator.events import Checkpoint, SourceItem
from liberator.snapshots import Backfill
from liberator.watermarks import BlockingRead


class BlockingSnapshot:
    """The blocking snapshot under way: its transaction, on a connection of its own, and its binlog point."""

    def __init__(
        self,
        config: MySQLBinlogConfig,
        info: ServerInfo,
        tables: TableCatalog,
        backfill: BinlogBackfill,
        stop: threading.Event,
        log: logging.Logger,
    ) -> None:
        self.config = config
        self.info = info
        self.tables = tables
        self.backfill = backfill
        self.stop = stop
        self.log = log
        self.point: Coord | None = None  # where the stream pauses
        self._request: list[Backfill] = []
        self._conn: Any = None

    def prepare(self) -> None:
        """Between transactions: a blocking request first among the backfills gets its snapshot and point; one
        no longer first (cancelled) gives its snapshot up."""
        if self._request and not self.backfill.first_is(self._request[0].id):
            self.log.info("blocking snapshot %s cancelled before the stream paused", self._request[0].id)
            self.close()
        if self._request:
            return
        request = self.backfill.blocking_request()
        if not request:
            return
        try:
            self._conn = connect(self.config)
            self.point, _gtid = begin_consistent_snapshot(self._conn, self.info)
        except (pymysql.MySQLError, LiberatorError) as exc:
            self.close()
            self.backfill.drop(request[0].id, _why_not(exc, self.info))
            return
        self._request = request

    def due(self, coord: Coord | None) -> bool:
        """Whether the stream, between transactions at `coord`, has reached the snapshot's point."""
        return self.point is not None and coord is not None and self.point <= coord

    def pause(self, here: BinlogPosition) -> Generator[SourceItem, None, BinlogPosition]:
        """Read the request's tables in the snapshot while the stream waits at `here`; the position after."""
        assert self.point is not None
        # Stored before the read: a kill mid-read resumes streaming at the pause point and reads again.
        yield Checkpoint(replace(here, backfills=self.backfill.backfills), durable=True)
        read = BlockingRead(self.backfill, self._request, str(self.point))
        read.paused()
        items = self._read(str(self.point))
        if self.config.envelope is Envelope.debezium:
            items = mark_snapshot_end(items, self.stop.is_set)
        try:
            for batch in items:
                assert isinstance(batch, ChangeBatch)
                read.count(batch)
                yield batch
                if self.stop.is_set():
                    return here  # stopping: the request stays in the position and is read again after a restart
                if read.cancelled():
                    break  # what was read went out, the rest is not read
        finally:  # a failed read goes back to the pause point with the request (the source's retry)
            self.close()
        read.finish()
        here = replace(here, backfills=self.backfill.backfills)
        yield Checkpoint(here, durable=True)
        return here

    def _read(self, point: str) -> Iterator[SourceItem]:
        """The request's tables in the snapshot, whole, one batch of reads per primary-key chunk."""
        started_ms = int(time.time() * 1000)
        # One read transaction: its rows share one Txn (as the initial snapshot's run does).
        txn = Txn(started_ms, id=f"blocking:{point}", position=point, commit_ms=started_ms, snapshot=True)
        for backfill in self._request:
            database, name = backfill.stream.split(".", 1)
            definition = read_table_def(self._conn, database, name, not self.info.mariadb)
            if definition is None:
                self.log.warning("blocking snapshot %s: table %s no longer exists", backfill.id, backfill.stream)
                continue
            table = self.tables.table(definition)
            captured = table.captured
            for images in table_chunks(self._conn, table, None, self.config.snapshot_chunk):
                if images:
                    yield ChangeBatch([RowChange(captured, Op.read, txn, None, image) for image in images], None)
                if self.stop.is_set():
                    return

    def close(self) -> None:
        """End the snapshot's transaction and its connection."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # a broken connection has nothing left to end
                conn.close()
        self.point = None
        self._request = []


_NEEDS_PRIVILEGE = 1227  # ER_SPECIFIC_ACCESS_DENIED_ERROR: "you need (at least one of) the RELOAD privilege(s)"


def _why_not(exc: Exception, info: ServerInfo) -> str:
    """Why the snapshot could not start, in one line, with what to do."""
    text = str(exc.args[-1]) if isinstance(exc, pymysql.MySQLError) and exc.args else str(exc)
    if not info.mariadb and isinstance(exc, pymysql.MySQLError) and exc.args and exc.args[0] == _NEEDS_PRIVILEGE:
        return (
            f"its consistent snapshot needs FLUSH TABLES WITH READ LOCK, which was refused ({text}); "
            "GRANT RELOAD ON *.* to the source's user and ask again"
        )
    return f"its consistent snapshot could not start ({text}); ask again"
