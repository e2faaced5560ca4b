"""Database connections that cannot hang: a connect and a read timeout on every driver liberator uses.

PyMySQL waits for an answer forever unless told otherwise and libpq has no read timeout at all, so a
server (or host) that accepts a connection and never answers would block a source, a sink or
`liberator check` for good. Every database connection is opened here, with the `DatabaseTimeouts` of
its source or sink:

* PyMySQL (the binlog source, mysql-replication's streams, SQLAlchemy's MySQL engines): `connect_timeout`
  bounds the TCP connect and the server's greeting, login and session set-up; `read_timeout` bounds
  every later read and write.
* psycopg (the WAL source, the outbox's LISTEN, SQLAlchemy's PostgreSQL engines): `connect_timeout`
  bounds connecting; each statement waits at most `read_timeout` for its answer, on the client (a frozen
  server cancels nothing) and on the server (`statement_timeout`, so a slow statement on a live server is
  cancelled cleanly); TCP keepalives and `tcp_user_timeout` notice a host that is gone.
* SQLite: `read_timeout` is how long a statement waits for another writer's lock.

A timeout raises the driver's own error type, so existing handlers keep working; `sqldb.classify` turns
it into a transient error that names the server and the setting.
"""

from __future__ import annotations

import math
from collections.abc import Generator
from typing import Any, TypeVar

import psycopg
import pymysql  # type: ignore[import-untyped]
from psycopg.conninfo import conninfo_to_dict

from liberator.config import DatabaseTimeouts

DEFAULT_TIMEOUTS = DatabaseTimeouts()
_RV = TypeVar("_RV")


def seconds(value: float) -> str:
    """10.0 -> '10s', 0.5 -> '0.5s': a timeout as the config writes it."""
    return f"{value:g}s"


# -- MySQL / MariaDB (PyMySQL) --------------------------------------------------------------------------


class MySQLConnectTimeout(pymysql.err.OperationalError):  # type: ignore[misc]
    """The server accepted no connection, or sent no greeting or login answer, within connect_timeout."""


class _TimedMySQLConnection(pymysql.connections.Connection):  # type: ignore[misc]
    _read_timeout: float | None
    connect_timeout: float | None

    def connect(self, sock: Any = None) -> None:
        # PyMySQL reads the greeting and the login answer with read_timeout (None: forever); those belong
        # to connecting, so they get connect_timeout. Its next read sets read_timeout on the socket again.
        read_timeout = self._read_timeout
        self._read_timeout = self.connect_timeout
        try:
            super().connect(sock)
        except pymysql.err.OperationalError as exc:
            if "timed out" not in str(exc):
                raise
            raise MySQLConnectTimeout(
                2003, f"Can't connect to MySQL server on {self.host}:{self.port} (no answer in time)"
            ) from None
        finally:
            self._read_timeout = read_timeout


def mysql_connect(timeouts: DatabaseTimeouts, **kwargs: Any) -> Any:
    """`pymysql.connect(**kwargs)` bounded by `timeouts` (which override any timeouts in kwargs)."""
    kwargs.update(
        connect_timeout=timeouts.connect_timeout,
        read_timeout=timeouts.read_timeout,
        write_timeout=timeouts.read_timeout,
    )
    return _TimedMySQLConnection(**kwargs)


# -- PostgreSQL (psycopg) -------------------------------------------------------------------------------


class PgReadTimeout(psycopg.OperationalError):
    """The server did not answer a statement within read_timeout; the connection is closed."""


# The client waits this much longer than statement_timeout, so that a live server's own cancel (which
# leaves the session usable) comes first; only a hung one meets the client's limit.
_SERVER_CANCELS_FIRST = 1.0


class _TimedPgConnection(psycopg.Connection[Any]):
    read_timeout: float | None = None

    def wait(self, gen: Generator[Any, Any, _RV], interval: float = 0.1, timeout: float | None = None) -> _RV:
        # Every statement, commit and fetch of a psycopg connection waits here; psycopg's own timeout
        # argument (used by notifies()) wins over the read timeout.
        if timeout is not None or self.read_timeout is None:
            return super().wait(gen, interval, timeout)
        try:
            return super().wait(gen, interval, self.read_timeout + _SERVER_CANCELS_FIRST)
        except psycopg.errors._WaitTimeout:
            self.close()  # a statement is still in flight: the session cannot be used again
            raise PgReadTimeout("the server sent no answer; connection closed") from None


def pg_connect(
    conninfo: str, timeouts: DatabaseTimeouts, *, statement_timeout: bool = True, **kwargs: Any
) -> psycopg.Connection[Any]:
    """`psycopg.connect(conninfo, **kwargs)` bounded by `timeouts`.

    `statement_timeout=False` for replication connections, whose commands are not statements."""
    read_ms = int(timeouts.read_timeout * 1000)
    keepalive = max(1, round(timeouts.read_timeout / 4))
    params: dict[str, Any] = {
        **conninfo_to_dict(conninfo),
        **kwargs,
        "connect_timeout": max(2, math.ceil(timeouts.connect_timeout)),  # libpq: whole seconds, at least 2
        "keepalives": 1,
        "keepalives_idle": keepalive,
        "keepalives_interval": keepalive,
        "keepalives_count": 3,
        "tcp_user_timeout": read_ms,
    }
    if statement_timeout:
        params["options"] = " ".join(filter(None, [params.get("options"), f"-c statement_timeout={read_ms}"]))
    conn = _TimedPgConnection.connect(**params)
    conn.read_timeout = timeouts.read_timeout
    return conn
