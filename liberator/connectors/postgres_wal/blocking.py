"""Blocking snapshots on the WAL source: the stream pauses at a snapshot's own point, the tables are read in
that snapshot, and the stream resumes where it paused (docs/snapshots.md).

When a blocking request comes first among the backfills (between batches), a temporary slot is created with
EXPORT_SNAPSHOT: its consistent point P and a snapshot that sees exactly the transactions committed before P.
A watermark message follows in the WAL, so that an idle stream reaches P too. The stream goes on until the
next thing it would hand over lies at or past P (a Begin whose commit LSN is >= P, or a message or keepalive
at or past P, always between transactions): everything before P has been streamed and nothing after it. It
pauses there, the tables are read in the exported snapshot (REPEATABLE READ, SET TRANSACTION SNAPSHOT) as op
`r`, and the stream resumes with the transaction it paused at.

Why per-key order holds exactly: the read holds the effect of every transaction streamed before it and of no
transaction streamed after it, so each key's read version sits between the two. Debezium's blocking snapshot
reads in a new REPEATABLE READ transaction some time after streaming stopped, so changes committed in between
are in the read and streamed again after it (its documentation warns of duplicates).

The request is part of the position from when it was taken; the position at the pause point is stored before
the read starts, so a daemon killed mid-read streams on from there and reads the tables again in a new snapshot.
"""

from __future__ import annotations

import logging
import os
import struct
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg

from liberator.capture import ChangeBatch
from liberator.connectors.postgres_wal.backfill import WATERMARK_PREFIX, WalBackfill
from liberator.connectors.postgres_wal.config import PostgresWalConfig
from liberator.connectors.postgres_wal.connection import connect
from liberator.connectors.postgres_wal.position import lsn_text
from liberator.connectors.postgres_wal.snapshot import SnapshotReader, create_slot
from liberator.connectors.postgres_wal.stream import XLOG_PAYLOAD, Frame, Keepalive, ReplicationStream
from liberator.connectors.postgres_wal.streaming import ChangeDecoder
from liberator.events import Checkpoint, SourceItem
from liberator.snapshots import Backfill

_WAL_START = struct.Struct("!Q").unpack_from  # an XLogData frame's first LSN: a message's own
_BEGIN_FINAL = struct.Struct("!Q").unpack_from  # a Begin's commit LSN


class BlockingSnapshot:
    """The blocking snapshot under way: the exported snapshot and the point where the stream pauses."""

    def __init__(
        self,
        config: PostgresWalConfig,
        conn: psycopg.Connection[Any],
        reader: SnapshotReader,
        backfill: WalBackfill,
        what: str,
        log: logging.Logger,
    ) -> None:
        self.config = config
        self.conn = conn  # the source's own connection: writes the watermark
        self.reader = reader
        self.backfill = backfill
        self.what = what
        self.log = log
        self.point: int | None = None  # the exported snapshot's consistent point: the stream pauses there
        self._request: list[Backfill] = []
        self._repl: psycopg.Connection[Any] | None = None
        self._snapshot_name: str | None = None

    def prepare(self) -> None:
        """Between batches: a blocking request first among the backfills gets its snapshot and pause point."""
        backfills = self.backfill.backfills
        if self.point is not None and (not backfills or backfills[0].id != self._request[0].id):
            self.log.info("blocking snapshot %s cancelled before the stream paused", self._request[0].id)
            self.close()
        if self.point is not None or not backfills or not backfills[0].blocking:
            return
        first = backfills[0].id
        self._request = [b for b in backfills if b.blocking and b.id == first]
        self._repl = connect(self.config.url, self.config, replication=True, what=self.what)
        temp = f"{self.config.slot}_block_{os.getpid()}_{uuid.uuid4().hex[:6]}"[:63]
        self.point, self._snapshot_name = create_slot(self._repl, temp, export=True, temporary=True)
        self.conn.execute("SELECT pg_logical_emit_message(false, %s, %s)", (WATERMARK_PREFIX, f"blocking {first}"))

    def due(self, frame: Frame, decoder: ChangeDecoder) -> bool:
        """Whether the stream reached the pause point: this frame, between transactions, lies at or past it."""
        point = self.point
        if point is None or decoder.begin_lsn is not None:
            return False
        if frame.__class__ is bytes:
            assert isinstance(frame, bytes)
            kind = frame[XLOG_PAYLOAD]
            if kind == 0x42:  # 'B': a transaction committed at or after the point is not in the snapshot
                return bool(_BEGIN_FINAL(frame, XLOG_PAYLOAD + 1)[0] >= point)
            return bool(_WAL_START(frame, 1)[0] >= point)  # a message outside transactions, at its own LSN
        return isinstance(frame, Keepalive) and frame.wal_end >= point

    def pause(self, decoder: ChangeDecoder, stream: ReplicationStream) -> Iterator[SourceItem]:
        """Read the request's tables in the exported snapshot while the stream waits, then drop the request."""
        assert self.point is not None and self._snapshot_name is not None
        request, point = self._request, self.point
        tables = [b.stream for b in request]
        yield from decoder.hand_over()
        # Stored before the read: a kill mid-read resumes streaming at the pause point and reads again.
        yield Checkpoint(decoder.resume_here(), durable=True)
        self.log.info(
            "stream paused at %s for blocking snapshot %s of %s", lsn_text(point), request[0].id, ", ".join(tables)
        )
        started = time.monotonic()
        rows = 0
        for item in self.reader.read(self._snapshot_name, tables, point, decoder.resume_here()):
            stream.keep_alive()
            if isinstance(item, ChangeBatch):
                rows += len(item.items)
                yield item  # the per-table Checkpoints are the initial snapshot's bookkeeping: not wanted here
            if self.reader.stop.is_set():
                self.close()
                return  # stopping: the request stays in the position and is read again after a restart
        self.close()
        self.backfill.backfills = tuple(b for b in self.backfill.backfills if b.id != request[0].id)
        self.backfill.desk.report_backfills(self.backfill.backfills)
        yield Checkpoint(decoder.resume_here(), durable=True)
        self.log.info(
            "stream resumed after %.1fs paused: blocking snapshot %s read %d rows of %s at %s",
            time.monotonic() - started,
            request[0].id,
            rows,
            ", ".join(tables),
            lsn_text(point),
        )

    def close(self) -> None:
        """Drop the exported snapshot and its temporary slot (closing the connection drops both)."""
        if self._repl is not None:
            self._repl.close()
            self._repl = None
        self.point = self._snapshot_name = None
        self._request = []
