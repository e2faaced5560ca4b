"""The lease that makes one of several daemons with the same config the single writer of a source (docs/ha.md).

A session-scoped lock in the source's own database: PostgreSQL `pg_try_advisory_lock`, MySQL/MariaDB
`GET_LOCK`, SQLite an exclusive `flock` on a file beside the database. It lives exactly as long as its
session, so a killed leader's lease goes with its connection and a standby takes it without an operator.

The leader confirms the session every `takeover/3` on a thread of its own; the reading thread asks `valid()`
(no I/O) before each batch it publishes and before each position is stored. The lease is valid until 2/3 of
`takeover` after the last confirmation. The server ends the lease's session once it heard nothing on it for
`takeover` (PostgreSQL `idle_session_timeout`, MySQL `wait_timeout`), and only then can a standby get the
lock: a leader cut off from its database stops publishing at least takeover/3 before anyone else can start.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import math
import os
import re
import threading
import time
from typing import IO, Any

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from liberator import sqldb
from liberator.config import DatabaseTimeouts
from liberator.errors import LiberatorError

_MYSQL_LOCK_NAME_MAX = 64


def _end(conn: sa.Connection) -> None:
    """Close the lease's session without a word to the server: a plain close would first roll back (the
    pool's reset), which waits for an answer a hung server never sends; the session's end frees the lock."""
    with contextlib.suppress(SQLAlchemyError):
        conn.invalidate()
        conn.close()


class LeaseLost(Exception):
    """The leader's lease is gone (or could not be confirmed in time): it must stop publishing at once."""


def identity() -> str:
    """How a lease holder shows to the others (and in pg_stat_activity): this process on this host."""
    import socket

    return f"liberator pid {os.getpid()} on {socket.gethostname()}"[:63]


class Lease:
    """One source's lease: `try_acquire` until it is held, then `valid()` before every publish and store.

    `key` names what is led (the app's source, or the resource it drains); the lock lives in the database
    of `url`, and its name includes that database, so two sources never exclude each other by accident.
    """

    def __init__(
        self, url: str, timeouts: DatabaseTimeouts, key: str, takeover: float, what: str = "the lease"
    ) -> None:
        self.what = what  # who errors name ("source NAME"): the lease's trouble is its source's
        self.takeover = takeover
        self.interval = takeover / 3  # how often the leader confirms its session, and a standby tries
        self.validity = 2 * self.interval  # how long a confirmation lets the leader publish
        parsed = sqldb.parse_url(url)
        self.dialect = parsed.get_backend_name()
        self.database = parsed.database or ""
        self.name = f"{key}@{self.database.rsplit('/', 1)[-1]}" if self.database else key
        connect_args: dict[str, Any] = {"application_name": identity()} if self.dialect == "postgresql" else {}
        # The lease's statements are tiny: a confirmation that takes longer than the interval counts as lost.
        lease_timeouts = DatabaseTimeouts(connect_timeout=timeouts.connect_timeout, read_timeout=self.interval)
        self._engine = (
            None
            if self.dialect == "sqlite"
            else sqldb.create_engine(url, lease_timeouts, poolclass=sa.pool.NullPool, connect_args=connect_args)
        )
        self._url = url
        self._timeouts = lease_timeouts  # what an error names: connect_timeout is the source's own
        self._guard = threading.Lock()  # the term's connection: its confirming thread and release()
        self._conn: sa.Connection | None = None
        self._file: IO[bytes] | None = None
        self._confirmed = 0.0  # time.monotonic() of the last confirmation
        self.lost: str | None = None  # why the lease was lost, once it was
        self._released = threading.Event()
        self._watcher: threading.Thread | None = None

    # -- taking it ------------------------------------------------------------------------------------

    @property
    def held(self) -> bool:
        return (self._conn is not None or self._file is not None) and self.lost is None

    def try_acquire(self) -> bool:
        """Take the lease if nobody holds it; True when this daemon holds it now. A database that cannot be
        reached is a TransientSourceError (the runner retries)."""
        if self.held:
            return True
        self.release()
        if self.dialect == "sqlite":
            got = self._flock()
        else:
            try:
                got = self._lock()
            except SQLAlchemyError as exc:
                raise self._error(exc) from None
        if got:
            self.lost = None
            self._confirmed = time.monotonic()
            # Each term its own event and guard: an earlier term's confirmation still under way is left alone.
            self._released, self._guard = threading.Event(), threading.Lock()
            if self._conn is not None:
                self._watcher = threading.Thread(
                    target=self._watch,
                    args=(self._conn, self._released, self._guard),
                    name=f"lease {self.name}",
                    daemon=True,
                )
                self._watcher.start()
        return got

    def _lock(self) -> bool:
        assert self._engine is not None
        conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            if self.dialect == "postgresql":
                got = bool(conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": self.pg_key}).scalar_one())
            else:
                got = conn.execute(sa.text("SELECT GET_LOCK(:n, 0)"), {"n": self.mysql_name}).scalar_one() == 1
            if got:
                self._end_session_when_silent(conn)
        except BaseException:
            conn.close()
            raise
        if not got:
            conn.close()
            return False
        self._conn = conn
        return True

    def _end_session_when_silent(self, conn: sa.Connection) -> None:
        """The server ends the lease's session (and so frees the lock) after `takeover` without a statement:
        a leader cut off from its database loses the lease there even though no FIN ever arrives."""
        limit = math.ceil(self.takeover)
        if self.dialect == "postgresql":
            version = conn.dialect.server_version_info or (0,)
            if version >= (14,):
                conn.execute(sa.text(f"SET idle_session_timeout = '{limit}s'"))
            conn.execute(sa.text(f"SET tcp_user_timeout = {limit * 1000}"))
        else:
            conn.execute(sa.text(f"SET SESSION wait_timeout = {limit}"))

    def _flock(self) -> bool:
        database = self.database
        if not database or database == ":memory:" or database.startswith("file:"):
            self._file = open(os.devnull, "rb")  # noqa: SIM115 - a private in-memory database: nobody to exclude
            return True
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", self.name.split("@", 1)[0])
        handle = open(f"{database}.{safe}.lock", "ab")  # noqa: SIM115 - held while leading
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        self._file = handle
        return True

    def holder(self) -> str:
        """Who holds the lease, as far as the database tells (for the standby's log line)."""
        if self.dialect == "sqlite":
            return f"a process holding {self.database}'s lock file"
        assert self._engine is not None
        try:
            with self._engine.connect() as conn:
                if self.dialect == "postgresql":
                    high, low = (self.pg_key >> 32) & 0xFFFFFFFF, self.pg_key & 0xFFFFFFFF
                    row = conn.execute(
                        sa.text(
                            "SELECT a.pid, a.application_name, a.client_addr::text FROM pg_locks l "
                            "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' "
                            "AND l.granted AND l.classid = :high AND l.objid = :low AND l.objsubid = 1"
                        ),
                        {"high": high, "low": low},
                    ).first()
                    if row is not None:
                        return f"backend pid {row[0]}, application_name {row[1]!r}, client {row[2] or 'local'}"
                else:
                    session = conn.execute(sa.text("SELECT IS_USED_LOCK(:n)"), {"n": self.mysql_name}).scalar()
                    if session is not None:
                        row = conn.execute(
                            sa.text("SELECT user, host FROM information_schema.processlist WHERE id = :i"),
                            {"i": session},
                        ).first()
                        where = f", user {row[0]}, client {row[1]}" if row is not None else ""
                        return f"connection {session}{where}"
        except SQLAlchemyError:
            pass
        return "another session"

    # -- holding it -----------------------------------------------------------------------------------

    def valid(self) -> bool:
        """Whether the leader may publish and store: held, and confirmed within `validity`. No I/O."""
        if self.lost is not None or (self._conn is None and self._file is None):
            return False
        if self._conn is not None and time.monotonic() - self._confirmed > self.validity:
            self.lost = f"the lease's session was not confirmed for {self.validity:g}s"
            return False
        return True

    def _watch(self, conn: sa.Connection, released: threading.Event, guard: threading.Lock) -> None:
        """Confirm one term's session every `interval`; the first failure loses the lease. Once the term is
        released, the session is closed here if `release` could not (a confirmation was under way)."""
        while not released.wait(self.interval):
            with guard:
                if released.is_set():
                    break
                try:
                    conn.execute(sa.text("SELECT 1")).scalar_one()
                except (SQLAlchemyError, LiberatorError) as exc:
                    if not released.is_set():  # a later term is none of this one's business
                        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
                        self.lost = f"the lease's database session is gone ({reason})"
                    _end(conn)
                    return
                if not released.is_set():
                    self._confirmed = time.monotonic()
        with guard:
            _end(conn)

    def release(self) -> None:
        """Let go (the session's end frees the lock); a standby takes it at its next try. Never waits: a
        confirmation stuck on a hung server closes the session itself once it returns (or the process ends)."""
        self._released.set()
        if self._file is not None:
            self._file.close()  # closing the descriptor drops the flock
            self._file = None
        conn, self._conn = self._conn, None
        if conn is not None and self._guard.acquire(blocking=False):
            try:
                _end(conn)
            finally:
                self._guard.release()
        self._watcher = None

    def close(self) -> None:
        self.release()
        if self._engine is not None:
            self._engine.dispose()

    # -- names ----------------------------------------------------------------------------------------

    @property
    def pg_key(self) -> int:
        digest = hashlib.blake2b(self.name.encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big", signed=True)

    @property
    def mysql_name(self) -> str:
        if len(self.name) <= _MYSQL_LOCK_NAME_MAX:
            return self.name
        return "liberator lease " + hashlib.blake2b(self.name.encode(), digest_size=16).hexdigest()

    def _error(self, exc: SQLAlchemyError) -> LiberatorError:
        return sqldb.classify(exc, self._url, self.what, self._timeouts)
