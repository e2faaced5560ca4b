"""What differs between databases for the outbox source: SKIP LOCKED support and error meanings."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from liberator import sqldb
from liberator.connectors.outbox.config import OutboxSourceConfig
from liberator.errors import ConfigError, FatalSourceError, LiberatorError, TransientSourceError

# Lock conflicts a retry resolves: the runtime reopens the source (its claims roll back, rows are re-read).
_RETRYABLE = ("deadlock", "lock wait timeout", "could not serialize", "(1205,", "(1213,", "database is locked")


def classify_error(exc: Exception, cfg: OutboxSourceConfig) -> LiberatorError:
    """A driver error as the runtime's kinds, with the outbox-specific fix where there is one."""
    text = str(getattr(exc, "orig", None) or exc).lower()
    if any(marker in text for marker in _RETRYABLE):
        return TransientSourceError(f"source {cfg.name}: {text.splitlines()[0]} (a lock conflict; claims roll back)")
    error = sqldb.classify(exc, cfg.url, f"source {cfg.name}", cfg)
    if isinstance(error, FatalSourceError) and ("exist" in text or "unknown column" in text or "no such" in text):
        return FatalSourceError(
            f"{error}; create the outbox table (`liberator outbox ddl --dialect ...`) or fix `table`/`columns`"
        )
    if isinstance(error, FatalSourceError) and ("permission denied" in text or "command denied" in text):
        return FatalSourceError(
            f"{error}; grant the user SELECT, UPDATE{', DELETE' if cfg.cleanup == 'delete' else ''} on {cfg.table}"
        )
    return error


def use_skip_locked(conn: sa.Connection, cfg: OutboxSourceConfig) -> bool:
    """Whether claims use FOR UPDATE SKIP LOCKED (else the leader lock); refuses what the server lacks."""
    dialect = conn.dialect
    version = tuple(getattr(dialect, "server_version_info", None) or ())
    if dialect.name == "postgresql":
        supported, what = True, ""
    elif dialect.name in ("mysql", "mariadb"):
        mariadb = bool(getattr(dialect, "is_mariadb", False))
        supported = version >= ((10, 6) if mariadb else (8, 0, 1))
        what = "MariaDB 10.6+" if mariadb else "MySQL 8.0.1+"
    else:
        supported, what = False, "PostgreSQL, MySQL 8 or MariaDB 10.6+"
    if cfg.locking == "skip_locked" and not supported:
        raise ConfigError(
            f"source {cfg.name}: locking: skip_locked needs {what} (SELECT ... FOR UPDATE SKIP LOCKED); "
            "use locking: leader or auto"
        )
    return supported and cfg.locking != "leader"


def queue_isolation(url: str) -> dict[str, str]:
    """MySQL/MariaDB: the source's sessions run at READ COMMITTED, set once per connection. REPEATABLE READ
    would take gap locks and block the application's inserts while a claim is open; set per claim (an
    execution option) it cost two round trips per claim, the SET and its reset when the pool took the
    connection back: a seventh of the claim's time on MariaDB."""
    if sqldb.parse_url(url).get_backend_name() in ("mysql", "mariadb"):
        return {"isolation_level": "READ COMMITTED"}
    return {}


def queue_session(engine: sa.Engine) -> None:
    """PostgreSQL: the source's own sessions never plan a sequential scan of the outbox. A queue's size
    swings from nothing to a backlog of millions between two ANALYZEs, so the planner, trusting statistics
    of a small outbox, read the whole backlog for every claim (a sort) and every cleanup; the claim wants
    the (occurred_at, id) index in order and the cleanup the primary key, whatever the statistics say."""
    if engine.dialect.name != "postgresql":
        return

    def setup(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("SET enable_seqscan = off")
        cursor.close()
        dbapi_connection.commit()

    sa.event.listen(engine, "connect", setup)
