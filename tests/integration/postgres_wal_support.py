"""Helpers for the postgres_wal tests: a source run in a thread, its items collected for assertions."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from typing import Any

import psycopg

from liberator.capture import datum_events
from liberator.connectors.postgres_wal import PostgresWalSource
from liberator.connectors.postgres_wal.config import PostgresWalConfig
from liberator.connectors.postgres_wal.connection import libpq_url
from liberator.connectors.postgres_wal.position import WalPosition
from liberator.events import ChangeEvent, Checkpoint
from liberator.source import SourceContext
from tests.support import wait_for


class WalDb:
    """A test database with a unique slot/publication name, and a psycopg connection for writing."""

    def __init__(self, url: str) -> None:
        self.url = libpq_url(url)
        self.tag = f"t{uuid.uuid4().hex[:10]}"
        self.conn = psycopg.connect(self.url, autocommit=True)

    def run(self, sql: str, params: Any = None) -> None:
        self.conn.execute(sql, params)

    def rows(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self.conn.execute(sql, params).fetchall()]

    def config(self, tables: list[str], **overrides: Any) -> PostgresWalConfig:
        values: dict[str, Any] = {
            "name": "wal",
            "type": "postgres_wal",
            "url": self.url,
            "tables": tables,
            "slot": self.tag,
            "publication": self.tag,
            "topic": f"{self.tag}.{{schema}}.{{table}}",
            "status_interval": 1.0,
        }
        values.update(overrides)
        return PostgresWalConfig(**values)

    def slot(self) -> dict[str, Any]:
        row = self.conn.execute(
            "SELECT restart_lsn, confirmed_flush_lsn, active_pid FROM pg_replication_slots WHERE slot_name = %s",
            (self.tag,),
        ).fetchone()
        assert row is not None, "no slot"
        return {"restart_lsn": row[0], "confirmed_flush_lsn": row[1], "active_pid": row[2]}


class Run:
    """Runs `source.read(start)` in a thread; acknowledges checkpoints like the daemon does (if asked)."""

    def __init__(self, config: PostgresWalConfig, start: WalPosition | None = None, ack: bool = True) -> None:
        self.stop = threading.Event()
        context = SourceContext(app_name="test", stop=self.stop, log=logging.getLogger("test.wal"))
        self.source = PostgresWalSource(config, context)
        self.items: list[ChangeEvent | Checkpoint] = []
        self.error: BaseException | None = None
        self.ack = ack
        self.start = start
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            for item in datum_events(self.source.read(self.start), self.source.cfg.envelope):
                self.items.append(item)
                if self.ack and isinstance(item, Checkpoint):
                    self.source.acknowledged(item.position)
        except BaseException as exc:  # reported by wait()
            self.error = exc
        finally:
            self.source.close()

    def __enter__(self) -> Run:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(30)

    @property
    def events(self) -> list[ChangeEvent]:
        return [i for i in list(self.items) if isinstance(i, ChangeEvent)]

    @property
    def position(self) -> WalPosition | None:
        for item in reversed(list(self.items)):
            pos = item.position
            if isinstance(pos, WalPosition):
                return pos
        return None

    def wait(self, condition: Callable[[], bool], timeout: float = 30, what: str = "events") -> None:
        """`tests.support.wait_for`, failing at once with the source's own error if it raised one."""

        def holds() -> bool:
            if self.error is not None:
                raise self.error
            return condition()

        try:
            wait_for(holds, timeout, interval=0.05, what=what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; got {len(self.events)} events") from None

    def wait_events(self, count: int, timeout: float = 30) -> list[ChangeEvent]:
        self.wait(lambda: len(self.events) >= count, timeout, f"{count} events")
        return self.events


def values(events: list[ChangeEvent]) -> list[tuple[str, Any, Any]]:
    """(op, key, after or before) of change-envelope events; tombstones as ('-', key, None)."""
    out = []
    for e in events:
        if e.value is None:
            out.append(("-", e.key, None))
        else:
            assert isinstance(e.value, dict)
            out.append((e.value["op"], e.key, e.value["after"] or e.value["before"]))
    return out


def env(event: ChangeEvent) -> dict[str, Any]:
    """The event's value as a datum (not a tombstone, not pre-encoded bytes)."""
    assert isinstance(event.value, dict), f"not a datum: {event.value!r:.80}"
    return event.value
