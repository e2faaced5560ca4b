"""Whether other daemons share this outbox (skip_locked): only then can a claim's ordering check find anything.

Each daemon holds a session lock that says "I claim from this table" from before its first claim until it
stops: PostgreSQL a shared advisory lock (counted in pg_locks), MySQL/MariaDB one of `SLOTS` named locks
(GET_LOCK, looked up with IS_USED_LOCK). A claim asks after its rows are locked: a daemon whose claim
could have skipped older rows of an aggregate (locked by another daemon's earlier claim) registered before
that claim, so it is counted. A daemon alone skips the check, which reads every row still in flight.

Asking the server costs a round trip per claim (a third of the claim worker's time on PostgreSQL, where
it reads pg_locks), so an answer is used for up to `fresh_for` seconds after it was asked. That stays safe
because a daemon that finds another one present when it registers waits longer than that before its first
claim: any answer "alone" read before it registered has expired by the time its claims can lock rows, and
the next answer counts it. A daemon that finds nobody present has no one to wait for: whoever registers
after it sees it and waits. Before a cached answer is used, the lock session's socket is checked for
anything the server sent (no round trip): a session the server ended (terminated, killed, restarted) says
so there, and the next question raises as before; a session the server still holds keeps its lock, so
the others still count it.
"""

from __future__ import annotations

import contextlib
import hashlib
import select
import threading
import time
from typing import Any

import sqlalchemy as sa

SLOTS = 16  # MySQL/MariaDB: daemons registered at once; more are assumed present (the check always runs)
FRESH_FOR = 1.0  # seconds an answer of the server is used for
NEWCOMER_MARGIN = 0.5  # a newcomer waits this much longer than an answer lasts: clocks of two processes


class Presence:
    def __init__(self, engine: sa.Engine, name: str, fresh_for: float = FRESH_FOR) -> None:
        self.engine = engine
        self.fresh_for = fresh_for
        digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
        self._key = int.from_bytes(digest[:4], "big") & 0x7FFF_FFFF  # PostgreSQL: an int4 pair (key, 0)
        self._names = [f"liberator-outbox-{digest.hex()}#{slot}" for slot in range(SLOTS)]
        self._conn: sa.Connection | None = None
        self._slot: int | None = None  # MySQL/MariaDB: the slot held; None: none was free
        self._socket: int | None = None  # the lock session's socket, to see whether the server ended it
        self._answer: tuple[float, bool] | None = None  # (monotonic time it was asked at, others present)

    @property
    def registered(self) -> bool:
        return self._conn is not None

    def register(self, stop: threading.Event | None = None) -> None:
        """Hold this daemon's lock (before its first claim). When another daemon is present, wait until
        every answer it may hold from before this registration has expired (see the module's docstring)."""
        if self._conn is not None:
            return
        conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_lock_shared(:k, 0)"), {"k": self._key})
            else:
                self._slot = next(
                    (
                        slot
                        for slot, name in enumerate(self._names)
                        if conn.execute(sa.text("SELECT GET_LOCK(:n, 0)"), {"n": name}).scalar_one() == 1
                    ),
                    None,
                )
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        self._socket = _socket_of(conn)
        self._answer = None
        if self.fresh_for > 0 and self.others():
            (stop or threading.Event()).wait(self.fresh_for + NEWCOMER_MARGIN)

    def others(self) -> bool:
        """Whether another daemon claims from this table now (or may: all slots taken). Raises (a driver
        error) when this daemon's own lock session is gone."""
        conn = self._conn
        if conn is None:
            return True
        answer = self._answer
        now = time.monotonic()
        if answer is not None and now - answer[0] < self.fresh_for and self._session_quiet():
            return answer[1]
        others = self._ask(conn)
        self._answer = (now, others)  # the time before asking: the answer is at least that fresh
        return others

    def _session_quiet(self) -> bool:
        """Nothing arrived on the lock session since the last question (an idle session hears nothing
        unless the server ends it)."""
        if self._socket is None:
            return False
        try:
            readable, _, _ = select.select([self._socket], [], [], 0)
        except (OSError, ValueError):
            return False
        return not readable

    def _ask(self, conn: sa.Connection) -> bool:
        if conn.dialect.name == "postgresql":
            holders = conn.execute(
                sa.text(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = :k "
                    "AND objid = 0 AND objsubid = 2 AND database = (SELECT oid FROM pg_database "
                    "WHERE datname = current_database())"
                ),
                {"k": self._key},
            ).scalar_one()
            return int(holders) > 1
        if self._slot is None:
            conn.execute(sa.text("SELECT 1")).scalar_one()
            return True
        used = ", ".join(f"IS_USED_LOCK(:n{slot})" for slot in range(SLOTS))
        row = conn.execute(sa.text(f"SELECT CONNECTION_ID(), {used}"), {f"n{i}": n for i, n in enumerate(self._names)})
        me, *holders = row.one()
        return any(holder is not None and holder != me for holder in holders)

    def release(self) -> None:
        conn = self._conn
        if conn is not None:
            with contextlib.suppress(sa.exc.SQLAlchemyError):
                # Unlocked at once (the server ends a closed session a moment later), then the session
                # closed: a pool would keep it, and any lock with it.
                if conn.dialect.name == "postgresql":
                    conn.execute(sa.text("SELECT pg_advisory_unlock_shared(:k, 0)"), {"k": self._key})
                elif self._slot is not None:
                    conn.execute(sa.text("SELECT RELEASE_LOCK(:n)"), {"n": self._names[self._slot]})
            with contextlib.suppress(sa.exc.SQLAlchemyError):
                conn.invalidate()
                conn.close()
            self._conn = None
            self._slot = None
            self._socket = None
            self._answer = None


def _socket_of(conn: sa.Connection) -> int | None:
    """The file descriptor of a connection's socket (psycopg, PyMySQL), or None when the driver hides it."""
    driver: Any = conn.connection.dbapi_connection
    try:
        if hasattr(driver, "fileno"):  # psycopg
            return int(driver.fileno())
        sock = getattr(driver, "_sock", None)  # PyMySQL
        return None if sock is None else int(sock.fileno())
    except Exception:  # closed, or a driver of another kind: ask the server every time instead
        return None
