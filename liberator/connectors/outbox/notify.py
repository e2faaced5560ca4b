"""PostgreSQL LISTEN/NOTIFY wake-ups, so an idle outbox source polls as soon as a writer commits."""

from __future__ import annotations

import psycopg
from psycopg.conninfo import make_conninfo
from sqlalchemy.engine import URL

from liberator.config import DatabaseTimeouts
from liberator.dbconnect import pg_connect
from liberator.errors import TransientSourceError
from liberator.sqldb import redact, timed_out, timeout_error


class Notifier:
    def __init__(self, url: URL, channel: str, timeouts: DatabaseTimeouts) -> None:
        self.url = url
        params: dict[str, str | int | None] = {
            "host": url.host,
            "port": url.port,
            "user": url.username,
            "password": url.password,
            "dbname": url.database,
            **{k: v for k, v in url.query.items() if isinstance(v, str)},
        }
        try:
            conninfo = make_conninfo("", **{k: v for k, v in params.items() if v is not None})
            self._conn = pg_connect(conninfo, timeouts, autocommit=True)
            self._conn.execute(f'LISTEN "{channel}"')  # the channel is checked to be an identifier at load
        except psycopg.Error as exc:
            setting = timed_out(exc)
            detail = str(exc).strip().splitlines()[0]
            if setting is not None:
                raise timeout_error(setting, "LISTEN", redact(url), timeouts, detail) from None
            raise TransientSourceError(f"cannot LISTEN on {redact(url)} ({detail})") from None

    def wait(self, timeout: float) -> bool:
        """True when a notification arrived within `timeout` seconds."""
        try:
            for _notification in self._conn.notifies(timeout=timeout, stop_after=1):
                return True
        except psycopg.Error as exc:
            raise TransientSourceError(f"lost the LISTEN connection to {redact(self.url)} ({exc})") from None
        return False

    def close(self) -> None:
        self._conn.close()
