"""Whether other daemons share this outbox (skip_locked): only then can a claim's ordering check find anything.

Each daemon holds a session lock that says "I claim from this table" from before its first claim until it
stops: PostgreSQL a shared advisory lock (counted in pg_locks), MySQL/MariaDB one of `SLOTS` named locks
(GET_LOCK, looked up with IS_USED_LOCK). A claim asks after its rows are locked: a daemon whose claim
could have skipped older rows of an aggregate (locked by another daemon's earlier claim) registered before
that claim, so it is counted. A daemon alone skips the check, which reads every row still in flight.
"""

from __future__ import annotations

import contextlib
import hashlib

import sqlalchemy as sa

SLOTS = 16  # MySQL/MariaDB: daemons registered at once; more are assumed present (the check always runs)


class Presence:
    def __init__(self, engine: sa.Engine, name: str) -> None:
        self.engine = engine
        digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
        self._key = int.from_bytes(digest[:4], "big") & 0x7FFF_FFFF  # PostgreSQL: an int4 pair (key, 0)
        self._names = [f"liberator-outbox-{digest.hex()}#{slot}" for slot in range(SLOTS)]
        self._conn: sa.Connection | None = None
        self._slot: int | None = None  # MySQL/MariaDB: the slot held; None: none was free

    @property
    def registered(self) -> bool:
        return self._conn is not None

    def register(self) -> None:
        """Hold this daemon's lock (before its first claim)."""
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

    def others(self) -> bool:
        """Whether another daemon claims from this table now (or may: all slots taken). Raises (a driver
        error) when this daemon's own lock session is gone."""
        conn = self._conn
        if conn is None:
            return True
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
