"""Connections to the source database: the libpq URL, exact session settings, error classification."""

from __future__ import annotations

import os
import re
import socket
from typing import Any

import psycopg

from liberator import sqldb
from liberator.config import DatabaseTimeouts
from liberator.dbconnect import pg_connect
from liberator.errors import LiberatorError, TransientSourceError

# Text output settings that make every value's text exact and parseable the same way, in snapshot
# queries and in the walsender (pgoutput prints values with the walsender session's settings).
SESSION_OPTIONS = (
    "-c datestyle=ISO,YMD -c intervalstyle=postgres -c timezone=UTC -c extra_float_digits=3 "
    "-c bytea_output=hex -c lc_monetary=C"
)

_DRIVER = re.compile(r"^(postgres(?:ql)?)\+[a-z0-9_]+://")


def libpq_url(url: str) -> str:
    """`postgresql+psycopg://` (SQLAlchemy style) is accepted too; libpq wants `postgresql://`."""
    return _DRIVER.sub(r"\1://", url)


def application_name() -> str:
    """How this process shows in pg_stat_activity / pg_stat_replication, so an operator can find it."""
    return f"liberator pid {os.getpid()} on {socket.gethostname()}"[:63]


def connect(
    url: str, timeouts: DatabaseTimeouts, *, replication: bool = False, what: str = ""
) -> psycopg.Connection[Any]:
    """A session with exact output settings, bounded by the source's timeouts (liberator.dbconnect)."""
    kwargs: dict[str, Any] = {"autocommit": True, "options": SESSION_OPTIONS, "application_name": application_name()}
    if replication:
        kwargs["replication"] = "database"
    try:
        return pg_connect(libpq_url(url), timeouts, statement_timeout=not replication, **kwargs)
    except psycopg.Error as exc:
        raise classify(exc, url, what, timeouts) from None


def classify(exc: Exception, url: str, what: str, timeouts: DatabaseTimeouts) -> LiberatorError:
    """Passing faults (lost connection, server restart) are transient; the rest needs an operator."""
    setting = sqldb.timed_out(exc)
    if setting is not None:
        return sqldb.timeout_error(setting, what, sqldb.redact(url), timeouts, " ".join(str(exc).split()))
    if "is active for pid" in str(exc).lower():
        text = " ".join(str(exc).split())
        return TransientSourceError(f"{what}: {text} (a previous session is ending)")
    if isinstance(exc, psycopg.OperationalError) and "permission denied" not in str(exc).lower():
        text = " ".join(str(exc).split()) or type(exc).__name__
        lowered = text.lower()
        if not any(m in lowered for m in ("password", "does not exist", "role", "authentication")):
            return TransientSourceError(f"{what}: lost or cannot reach {sqldb.redact(url)} ({text})")
    return sqldb.classify(exc, url, what, timeouts)
