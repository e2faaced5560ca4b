"""Single-publisher locks for `locking: leader`: whoever holds it publishes, the others stand by.

PostgreSQL: a session advisory lock; MySQL/MariaDB: GET_LOCK; SQLite: an exclusive flock on a file next
to the database (SQLite serves one machine). Database locks live as long as their connection: if it
dies, the lock is gone, which `still_held()` detects before each batch.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from typing import IO

import sqlalchemy as sa


class LeaderLock:
    def __init__(self, engine: sa.Engine, name: str) -> None:
        self.engine = engine
        self.name = name
        self.dialect = engine.dialect.name
        self._conn: sa.Connection | None = None
        self._file: IO[bytes] | None = None

    @property
    def held(self) -> bool:
        return self._conn is not None or self._file is not None

    def try_acquire(self) -> bool:
        if self.held:
            return True
        if self.dialect == "sqlite":
            return self._flock()
        conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            if self.dialect == "postgresql":
                got = conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": self._key()}).scalar_one()
            else:
                got = conn.execute(sa.text("SELECT GET_LOCK(:n, 0)"), {"n": self.name[:64]}).scalar_one() == 1
        except BaseException:
            conn.close()
            raise
        if got:
            self._conn = conn
            return True
        conn.close()
        return False

    def still_held(self) -> None:
        """Raises (a driver error) when the lock's session is gone."""
        if self._conn is not None:
            self._conn.execute(sa.text("SELECT 1")).scalar_one()

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing the descriptor drops the flock
            self._file = None
        if self._conn is not None:
            with contextlib.suppress(sa.exc.SQLAlchemyError):
                self._conn.close()  # the session's end releases advisory locks and GET_LOCK
            self._conn = None

    def _key(self) -> int:
        digest = hashlib.blake2b(self.name.encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big", signed=True)

    def _flock(self) -> bool:
        database = self.engine.url.database
        if not database or database == ":memory:" or database.startswith("file:"):
            self._file = open(os.devnull, "rb")  # noqa: SIM115 - a private in-memory database: nobody to exclude
            return True
        handle = open(f"{database}.{self.name}.lock", "ab")  # noqa: SIM115 - held while leading
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        self._file = handle
        return True
