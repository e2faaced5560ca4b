"""Blocking snapshots on the WAL source: the stream pauses at a snapshot's own point, the tables are read in
that snapshot, and the stream resumes where it paused (docs/snapshots.md).

When a blocking request comes first among the backfills (between batches), a temporary slot is created with
EXPORT_SNAPSHOT: its consistent point P and a snapshot that sees exactly the transactions committed before P.
Creating a slot waits for the transactions running at that moment to end, so it happens on a thread of its
own: the stream goes on up to the WAL insert LSN taken just before (P lies at or after it), then waits for P,
hearing cancels and a stop meanwhile. A watermark message follows in the WAL, so that an idle stream reaches P.
The stream goes on until the next thing it would hand over lies at or past P (a Begin whose commit LSN is
>= P, or a message or keepalive at or past P, always between transactions): everything before P has been
streamed and nothing after it. It pauses there, the tables are read in the exported snapshot (REPEATABLE
READ, SET TRANSACTION SNAPSHOT) as op `r`, and the stream resumes with the transaction it paused at.

Why per-key order holds exactly: the read holds the effect of every transaction streamed before it and of no
transaction streamed after it, so each key's read version sits between the two. Debezium's blocking snapshot
reads in a new REPEATABLE READ transaction some time after streaming stopped, so changes committed in between
are in the read and streamed again after it (its documentation warns of duplicates).

The request is part of the position from when it was taken; the position at the pause point is stored before
the read starts, so a daemon killed mid-read streams on from there and reads the tables again in a new snapshot.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg

from liberator.capture import ChangeBatch
from liberator.connectors.postgres_wal.backfill import WATERMARK_PREFIX, WalBackfill
from liberator.connectors.postgres_wal.config import PostgresWalConfig
from liberator.connectors.postgres_wal.connection import connect
from liberator.connectors.postgres_wal.position import lsn_text, parse_lsn
from liberator.connectors.postgres_wal.snapshot import SnapshotReader, create_slot
from liberator.connectors.postgres_wal.stream import XLOG_PAYLOAD, Frame, Keepalive, ReplicationStream
from liberator.connectors.postgres_wal.streaming import ChangeDecoder
from liberator.events import Checkpoint, SourceItem
from liberator.snapshots import Backfill
from liberator.watermarks import BlockingRead

_WAL_START = struct.Struct("!Q").unpack_from  # an XLogData frame's first LSN: a message's own
_BEGIN_FINAL = struct.Struct("!Q").unpack_from  # a Begin's commit LSN


class TemporarySlot(threading.Thread):
    """Creates the temporary slot and its exported snapshot, off the reading thread; `cancel` ends the wait."""

    def __init__(self, config: PostgresWalConfig, what: str) -> None:
        super().__init__(name="blocking-snapshot-slot", daemon=True)
        self.config = config
        self.what = what
        self.point: int | None = None
        self.snapshot_name: str | None = None
        self.error: str | None = None
        self._conn: psycopg.Connection[Any] | None = None
        self._lock = threading.Lock()
        self._cancelled = False

    def run(self) -> None:
        try:
            conn = connect(self.config.url, self.config, replication=True, what=self.what)
            with self._lock:
                self._conn = conn
                if self._cancelled:
                    return
            temp = f"{self.config.slot}_block_{os.getpid()}_{uuid.uuid4().hex[:6]}"[:63]
            self.point, self.snapshot_name = create_slot(conn, temp, export=True, temporary=True)
        except Exception as exc:  # read by the reading thread, which decides
            self.error = (str(exc).strip().splitlines() or [type(exc).__name__])[0]

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
            conn = self._conn
        if conn is not None and self.is_alive():
            with contextlib.suppress(psycopg.Error):
                conn.cancel_safe(timeout=5)

    def close(self) -> None:
        """Drop the exported snapshot and the slot (closing the connection drops both)."""
        self.cancel()
        self.join(10)
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


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
        # The WAL insert LSN before the slot was asked for: its point lies at or after it, so until the point is
        # known the stream hands over only what lies before this.
        self.guard: int | None = None
        self._request: list[Backfill] = []
        self._slot: TemporarySlot | None = None

    def prepare(self) -> None:
        """Between batches: a blocking request first among the backfills gets its snapshot and pause point."""
        backfills = self.backfill.backfills
        if self._request and (not backfills or backfills[0].id != self._request[0].id):
            self.log.info("blocking snapshot %s cancelled before the stream paused", self._request[0].id)
            self.close()
        if not self._request:
            if backfills and backfills[0].blocking:
                row = self.conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()
                assert row is not None
                self.guard = parse_lsn(str(row[0]))
                self._request = self.backfill.blocking_request()
                self._slot = TemporarySlot(self.config, self.what)
                self._slot.start()
            return
        if self.point is None and self._slot is not None and not self._slot.is_alive():
            self._slot_made()

    def before(self, frame: Frame, decoder: ChangeDecoder, stream: ReplicationStream) -> Iterator[SourceItem]:
        """Before the stream hands over a frame: once it lies at or past the guard, wait for the point; once at
        or past the point, pause and read (always between transactions)."""
        if self.guard is None or decoder.begin_lsn is not None:
            return
        lsn = _frame_lsn(frame)
        if lsn is None or lsn < self.guard:
            return
        if self.point is None:
            yield from decoder.hand_over()  # what came before goes out while the slot is made
            self._wait(stream)
        if self.point is not None and lsn >= self.point:
            yield from self.pause(decoder, stream)

    def _wait(self, stream: ReplicationStream) -> None:
        """The slot's creation waits for the transactions running when it began; meanwhile cancels and a stop
        are heard and the server hears from the stream."""
        slot = self._slot
        assert slot is not None
        while slot.is_alive() and not self.reader.stop.is_set():
            stream.keep_alive()
            self.backfill.intake()
            backfills = self.backfill.backfills
            if not backfills or backfills[0].id != self._request[0].id:
                self.log.info("blocking snapshot %s cancelled before the stream paused", self._request[0].id)
                self.close()
                return
            slot.join(0.1)
        if not slot.is_alive():
            self._slot_made()

    def _slot_made(self) -> None:
        slot = self._slot
        assert slot is not None
        request = self._request[0].id
        if slot.error is not None or slot.point is None:
            self.close()
            reason = f"its temporary replication slot could not be created ({slot.error}); check max_replication_slots"
            self.backfill.drop(request, reason)
            return
        self.point = slot.point
        self.conn.execute("SELECT pg_logical_emit_message(false, %s, %s)", (WATERMARK_PREFIX, f"blocking {request}"))

    def pause(self, decoder: ChangeDecoder, stream: ReplicationStream) -> Iterator[SourceItem]:
        """Read the request's tables in the exported snapshot while the stream waits, then drop the request."""
        assert self.point is not None and self._slot is not None and self._slot.snapshot_name is not None
        request, point, snapshot_name = self._request, self.point, self._slot.snapshot_name
        yield from decoder.hand_over()
        # Stored before the read: a kill mid-read resumes streaming at the pause point and reads again.
        yield Checkpoint(decoder.resume_here(), durable=True)
        read = BlockingRead(self.backfill, request, lsn_text(point))
        read.paused()
        for item in self.reader.read(snapshot_name, [b.stream for b in request], point, decoder.resume_here()):
            stream.keep_alive()
            if isinstance(item, ChangeBatch):
                read.count(item)
                yield item  # the per-table Checkpoints are the initial snapshot's bookkeeping: not wanted here
            if self.reader.stop.is_set():
                self.close()
                return  # stopping: the request stays in the position and is read again after a restart
            if isinstance(item, ChangeBatch) and read.cancelled():
                break  # what was read went out, the rest is not read
        self.close()
        read.finish()
        yield Checkpoint(decoder.resume_here(), durable=True)

    def close(self) -> None:
        if self._slot is not None:
            self._slot.close()
            self._slot = None
        self.point = self.guard = None
        self._request = []


def _frame_lsn(frame: Frame) -> int | None:
    """Where a frame between transactions lies: a Begin at its commit LSN (the snapshot holds the transactions
    that committed before its point), a message at its own LSN, a keepalive at the server's end of WAL sent."""
    if frame.__class__ is bytes:
        assert isinstance(frame, bytes)
        if frame[XLOG_PAYLOAD] == 0x42:  # 'B'
            return int(_BEGIN_FINAL(frame, XLOG_PAYLOAD + 1)[0])
        return int(_WAL_START(frame, 1)[0])
    return frame.wal_end if isinstance(frame, Keepalive) else None
