"""The replication connection: START_REPLICATION in COPY_BOTH mode, keepalives and standby status updates.

psycopg (3.3+) has no replication API, but `START_REPLICATION` enters COPY_BOTH and its libpq object
does the rest (docs/postgres_wal.md). The server hears only the LSN that Kafka acknowledged and the
offset store holds (the `acked` callable), never the LSN received: after a crash it resends from there.
"""

from __future__ import annotations

import contextlib
import select
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from liberator.connectors.postgres_wal.config import PostgresWalConfig
from liberator.connectors.postgres_wal.connection import classify, connect
from liberator.connectors.postgres_wal.pgoutput import PG_EPOCH_MICROS
from liberator.connectors.postgres_wal.position import lsn_text
from liberator.errors import TransientSourceError
from liberator.source import Pacing
from liberator.sqldb import redact, timeout_error

_KEEPALIVE = struct.Struct("!QqB")  # wal end, send time, reply requested
_STATUS = struct.Struct("!cQQQqB")


@dataclass(frozen=True, slots=True)
class Keepalive:
    wal_end: int  # everything before it has been sent to us


@dataclass(frozen=True, slots=True)
class Idle:
    """Nothing arrived for a while: a chance to check timers and the stop flag."""


@dataclass(frozen=True, slots=True)
class Drained:
    """Everything the server sent so far has been handed over; the stream waits for more next."""


DRAINED = Drained()
IDLE_FRAME = Idle()


# An XLogData frame comes as its bytes (the pgoutput message starts at XLOG_PAYLOAD): no object per change.
Frame = bytes | Keepalive | Idle | Drained
XLOG_PAYLOAD = 25


def status_update(lsn: int, reply: bool = False) -> bytes:
    micros = int(time.time() * 1_000_000) - PG_EPOCH_MICROS
    return _STATUS.pack(b"r", lsn, lsn, lsn, micros, 1 if reply else 0)


class ReplicationStream:
    """The stream of one slot. Silence longer than read_timeout is a lost connection: half-way through it
    the stream asks the server for a keepalive, which a walsender that is alive answers at once."""

    def __init__(self, config: PostgresWalConfig, start_lsn: int, what: str, acked: Callable[[], int]) -> None:
        self.config = config
        self.url = config.url
        self.what = what
        self.slot = config.slot
        self.publication = config.publication
        self.start_lsn = start_lsn
        self.status_interval = config.status_interval
        self.acked = acked  # the newest LSN the daemon stored: all the server may forget
        self._sent = -1
        self._last_status = 0.0
        self._heard = 0.0  # when the server last sent anything
        self._asked = False  # a keepalive was requested since then
        self._conn: psycopg.Connection[Any] | None = None

    def open(self) -> None:
        self._conn = connect(self.url, self.config, replication=True, what=self.what)
        command = sql.SQL(
            "START_REPLICATION SLOT {} LOGICAL {} (proto_version '1', publication_names {}, messages 'true')"
        ).format(sql.Identifier(self.slot), sql.SQL(lsn_text(self.start_lsn)), sql.Literal(self.publication))
        try:
            self._conn.execute(command)
        except psycopg.Error as exc:
            raise classify(exc, self.url, self.what, self.config) from None
        self._heard, self._asked = time.monotonic(), False

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
            self._conn = None

    def frames(self, stop: threading.Event, pacing: Pacing) -> Iterator[Frame]:
        """Frames until `stop`; an Idle after waiting `pacing.max_wait` for the server with nothing read."""
        assert self._conn is not None, "open() first"
        pgconn = self._conn.pgconn
        get_copy_data = pgconn.get_copy_data
        unchecked = 0
        try:
            while not stop.is_set():
                nbytes, data = get_copy_data(1)
                unchecked += 1
                if unchecked >= 5000:  # a stream that never pauses still tells the server what it may forget
                    unchecked = 0
                    self._maybe_send_status(pgconn)
                if nbytes == 0:
                    # The status update waits for a pause in the stream: the acknowledged LSN moves only when
                    # positions are stored, and a check per message would cost more than the message.
                    self._maybe_send_status(pgconn)
                    yield DRAINED
                    readable, _, _ = select.select([pgconn.socket], [], [], pacing.max_wait)
                    if readable:
                        pgconn.consume_input()
                    else:
                        self._check_silence(pgconn)
                        yield IDLE_FRAME
                    continue
                self._heard, self._asked = time.monotonic(), False
                if nbytes < 0:
                    message = (pgconn.error_message or b"").decode("utf-8", "replace").strip()
                    raise TransientSourceError(
                        f"{self.what}: the replication stream ended ({message or 'server closed it'})"
                    )
                frame = bytes(data)
                kind = frame[0]
                if kind == 0x77:  # 'w' XLogData: wal start, wal end, send time, then the message
                    yield frame
                elif kind == 0x6B:  # 'k' primary keepalive
                    wal_end, _ts, reply = _KEEPALIVE.unpack_from(frame, 1)
                    if reply:
                        self._send_status(pgconn)
                    yield Keepalive(wal_end)
        except psycopg.Error as exc:
            raise classify(exc, self.url, self.what, self.config) from None
        except OSError as exc:
            raise TransientSourceError(f"{self.what}: replication connection failed ({exc})") from None

    def keep_alive(self) -> None:
        """While the reading thread is busy elsewhere (a blocking snapshot): the server hears the acknowledged
        LSN, so its wal_sender_timeout does not end the session, and the pause counts as no silence of its."""
        assert self._conn is not None, "open() first"
        self._send_status(self._conn.pgconn)
        self._heard, self._asked = time.monotonic(), False

    def _check_silence(self, pgconn: Any) -> None:
        silent = time.monotonic() - self._heard
        if silent >= self.config.read_timeout:
            raise timeout_error(
                "read_timeout",
                self.what,
                redact(self.url),
                self.config,
                f"the replication stream sent nothing for {silent:.0f}s, not even a requested keepalive",
            )
        if silent >= self.config.read_timeout / 2 and not self._asked:
            self._send_status(pgconn, reply=True)
            self._asked = True

    def _maybe_send_status(self, pgconn: Any) -> None:
        now = time.monotonic()
        if self.acked() != self._sent or now - self._last_status >= self.status_interval:
            self._send_status(pgconn)

    def _send_status(self, pgconn: Any, reply: bool = False) -> None:
        lsn = self.acked()
        pgconn.put_copy_data(status_update(lsn, reply))
        pgconn.flush()
        self._sent = lsn
        self._last_status = time.monotonic()
