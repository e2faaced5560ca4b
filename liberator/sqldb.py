"""SQLAlchemy plumbing shared by SQL sources and sinks: engines, redacted URLs, error classification."""

from __future__ import annotations

import datetime as dt
import sqlite3
import time
from typing import Any

import psycopg
import pymysql  # type: ignore[import-untyped]
import pymysql.constants  # type: ignore[import-untyped]
import pymysql.converters  # type: ignore[import-untyped]
import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, DisconnectionError, NoSuchModuleError

from liberator.config import DatabaseTimeouts
from liberator.dbconnect import (
    DEFAULT_TIMEOUTS,
    MySQLConnectTimeout,
    PgReadTimeout,
    mysql_connect,
    pg_connect,
    seconds,
)
from liberator.errors import ConfigError, FatalSourceError, LiberatorError, TransientSourceError
from liberator.redaction import redact_url

redact = redact_url  # the one way URLs are shown (liberator.redaction), under the name SQL code calls it

# Bare dialect names get the driver liberator ships with, so `mysql://` and `postgresql://` just work.
_DEFAULT_DRIVERS = {
    "mysql": "mysql+pymysql",
    "mariadb": "mariadb+pymysql",
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
}


def parse_url(url: str) -> URL:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(
            f"{redact(url)} is not a database URL; write e.g. postgresql://user:${{PW}}@host:5432/db"
        ) from None
    if parsed.drivername in _DEFAULT_DRIVERS:
        parsed = parsed.set(drivername=_DEFAULT_DRIVERS[parsed.drivername])
    return parsed


def create_engine(
    url: str, timeouts: DatabaseTimeouts = DEFAULT_TIMEOUTS, *, ping_after_idle: float | None = None, **kwargs: Any
) -> sa.Engine:
    """An engine whose connections are bounded by `timeouts` (liberator.dbconnect) and set up exactly.

    A connection taken from the pool is pinged first (a stale one is replaced), or, with `ping_after_idle`,
    only when it sat in the pool at least that many seconds: for a pool whose connections go in and out every
    few milliseconds, where the ping was a round trip per checkout."""
    parsed = parse_url(url)
    try:
        engine = sa.create_engine(parsed, pool_pre_ping=ping_after_idle is None, **kwargs)
    except NoSuchModuleError:
        raise ConfigError(
            f"{redact(parsed)}: no SQLAlchemy dialect {parsed.drivername!r}; install its driver package "
            "or use postgresql://, mysql://, sqlite:///"
        ) from None
    sa.event.listen(engine, "do_connect", _timed_connect(engine.dialect, timeouts))
    sa.event.listen(engine, "connect", _session_setup(engine.dialect.name))
    if ping_after_idle is not None:
        _ping_idle_connections(engine, ping_after_idle)
    return engine


_CHECKED_IN = "liberator.checked_in"  # when a pooled connection was last returned (its own `info`)


def _ping_idle_connections(engine: sa.Engine, idle: float) -> None:
    """Ping a pooled connection at checkout only if it sat idle `idle` seconds or more. A dead one is
    replaced (the pool retries the checkout on DisconnectionError). A connection in steady use that dies
    fails its statement instead: SQLAlchemy then invalidates the whole pool, and the caller's retry gets
    fresh connections."""
    dialect = engine.dialect

    def checkin(_dbapi_connection: Any, record: Any) -> None:
        if record is not None:
            record.info[_CHECKED_IN] = time.monotonic()

    def checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get(_CHECKED_IN)
        if since is None or time.monotonic() - since < idle:
            return  # just connected, or in use moments ago
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as exc:  # any driver error: the connection cannot be trusted
            raise DisconnectionError(f"the pooled connection is gone ({type(exc).__name__})") from exc

    sa.event.listen(engine, "checkin", checkin)
    sa.event.listen(engine, "checkout", checkout)


def _timed_connect(dialect: sa.Dialect, timeouts: DatabaseTimeouts) -> Any:
    """Opens the DBAPI connection through liberator.dbconnect where the driver is one liberator ships."""

    def connect(_dialect: Any, _record: Any, cargs: list[Any], cparams: dict[str, Any]) -> Any:
        driver = dialect.driver
        if driver == "pymysql":
            cparams.setdefault("conv", MYSQL_CONVERSIONS)
            return mysql_connect(timeouts, *cargs, **cparams)
        if driver == "psycopg":
            return pg_connect("", timeouts, *cargs, **cparams)
        if dialect.name == "sqlite":
            cparams["timeout"] = timeouts.read_timeout  # how long a statement waits for another writer
        return None  # the dialect connects as usual

    return connect


def mysql_datetime(value: str | bytes) -> Any:
    """PyMySQL's DATETIME/TIMESTAMP decoder at C speed: what the server sends ('YYYY-MM-DD HH:MM:SS' with 0-6
    fraction digits) is parsed by datetime.fromisoformat; anything else (zero dates...) by PyMySQL itself, so
    the result is always PyMySQL's. Its own decoder (a regex and a Python loop) took a fifth of the query
    source's reading thread on MariaDB."""
    text = value.decode("ascii") if isinstance(value, bytes | bytearray) else value
    size = len(text)
    if (size == 19 or (21 <= size <= 26 and text[19] == ".")) and text[10] == " ":
        try:
            return _FROM_ISO(text)
        except ValueError:
            pass
    return pymysql.converters.convert_datetime(text)


_FROM_ISO = dt.datetime.fromisoformat
# PyMySQL's conversions (encoders and decoders) with the fast DATETIME and TIMESTAMP decoder.
MYSQL_CONVERSIONS: dict[Any, Any] = {
    **pymysql.converters.conversions,
    pymysql.constants.FIELD_TYPE.DATETIME: mysql_datetime,
    pymysql.constants.FIELD_TYPE.TIMESTAMP: mysql_datetime,
}


def _session_setup(dialect: str) -> Any:
    """Per-connection settings that make values exact, whatever the server's defaults are."""

    def setup(dbapi_connection: Any, _record: Any) -> None:
        if dialect in ("mysql", "mariadb"):
            # TIMESTAMP columns come back in the session zone: UTC makes them the instants they are.
            cursor = dbapi_connection.cursor()
            cursor.execute("SET time_zone = '+00:00'")
            cursor.close()
        elif dialect == "postgresql":
            from psycopg.types.string import TextLoader

            # psycopg folds interval months into days and unwraps top-level JSON strings; text is exact.
            for type_name in ("interval", "json", "jsonb"):
                dbapi_connection.adapters.register_loader(type_name, TextLoader)

    return setup


_AUTH = (
    "password authentication failed",
    "access denied",
    "authentication failed",
    "no password supplied",
    "(1045,",
    "(1044,",
    "(1698,",
)
_MISSING_DB = ("does not exist", "(1049,", "unknown database", "unable to open database file")
_UNREACHABLE = (
    "connection refused",
    "could not connect",
    "can't connect",
    "connection reset",
    "server closed the connection",
    "lost connection",
    "gone away",
    "timeout",
    "timed out",
    "terminating connection",
    "the database system is",
    "broken pipe",
    "(2003,",
    "(2006,",
    "(2013,",
    "connection is closed",
    "consuming input failed",
    "server conn crashed",
)


def timed_out(exc: BaseException) -> str | None:
    """ "connect_timeout" or "read_timeout" when `exc` (a driver error, or SQLAlchemy's wrapping one) is that
    timeout expiring, else None."""
    error = getattr(exc, "orig", None) or exc
    if isinstance(error, MySQLConnectTimeout | psycopg.errors.ConnectionTimeout):
        return "connect_timeout"
    if isinstance(error, PgReadTimeout):
        return "read_timeout"
    if isinstance(error, psycopg.errors.QueryCanceled) and "statement timeout" in str(error):
        return "read_timeout"  # the server's side of the read timeout (dbconnect sets statement_timeout)
    if isinstance(error, pymysql.err.OperationalError) and "timed out" in str(error):
        return "connect_timeout" if error.args and error.args[0] == 2003 else "read_timeout"
    if isinstance(error, sqlite3.OperationalError) and "database is locked" in str(error):
        return "read_timeout"  # another writer held the lock longer than the busy timeout
    return None


def timeout_error(setting: str, what: str, where: str, timeouts: DatabaseTimeouts, detail: str) -> TransientSourceError:
    """The one line for an expired timeout: which server, which setting, what to do."""
    if setting == "connect_timeout":
        return TransientSourceError(
            f"{what}: {where} did not accept a connection within connect_timeout "
            f"({seconds(timeouts.connect_timeout)}) ({detail}); is the server up and reachable? "
            "(raise connect_timeout for a slow network)"
        )
    return TransientSourceError(
        f"{what}: {where} did not answer within read_timeout ({seconds(timeouts.read_timeout)}) ({detail}); "
        "the server is hung, overloaded or unreachable, or a statement runs longer than that "
        "(raise read_timeout for such statements)"
    )


def plan_outdated(exc: BaseException) -> bool:
    """Whether `exc` is PostgreSQL refusing a prepared statement whose result type changed under it (SQLSTATE
    0A000 "cached plan must not change result type": psycopg prepares a query it ran five times, and an
    `ALTER COLUMN ... TYPE` then invalidates the plan). The cure is `forget_prepared` and a fresh look at the
    table, not a stop."""
    error = getattr(exc, "orig", None) or exc
    sqlstate = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
    return sqlstate == "0A000" and "cached plan must not change result type" in str(error)


def forget_prepared(conn: Connection) -> None:
    """Drop the session's prepared statements (psycopg sees the command and empties its own cache too)."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("DEALLOCATE ALL")


def classify(
    exc: Exception, url: str | URL, what: str, timeouts: DatabaseTimeouts = DEFAULT_TIMEOUTS
) -> LiberatorError:
    """Turn a driver error into the runtime's kinds: retry passing faults, stop on what needs an operator."""
    if isinstance(exc, LiberatorError):
        return exc  # classified already (by a connector's own classify): wrapping it again says it twice
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
    lowered = str(exc).lower()
    where = redact(url)
    setting = timed_out(exc)
    if setting is not None:
        return timeout_error(setting, what, where, timeouts, text)
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return TransientSourceError(f"{what}: lost the connection to {where} ({text})")
    if "role" in lowered and "does not exist" in lowered:
        return FatalSourceError(f"{what}: {where}: {text}; create the user or fix the user name in the url")
    if any(marker in lowered for marker in _AUTH):
        return FatalSourceError(
            f"{what}: {where} refused the credentials ({text}); fix the user/password in the url "
            "(use ${ENV_VAR} or ${file:/path} for the password)"
        )
    if any(marker in lowered for marker in _MISSING_DB):
        return FatalSourceError(f"{what}: {where}: {text}; create it or fix the url")
    if any(marker in lowered for marker in _UNREACHABLE):
        return TransientSourceError(f"{what}: cannot reach {where} ({text})")
    return FatalSourceError(f"{what}: {where}: {text}")
