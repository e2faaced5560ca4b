"""Shared by the outbox tests (no tests here): an application database with the default outbox table,
created from `liberator outbox ddl` so the printed DDL is exercised on every database."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from liberator.connectors.outbox.ddl import outbox_ddl
from liberator.registry.client import RegistryClient
from tests.support import read_records

ORDER_SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "OrderEvent",
    "namespace": "shop",
    "fields": [
        {"name": "order_id", "type": "long"},
        {"name": "total", "type": {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}},
        {"name": "note", "type": ["null", "string"], "default": None},
    ],
}


class AppDb:
    """The application's database: owns the outbox table and writes events into it."""

    def __init__(self, url: str, kind: str) -> None:
        self.url = url
        self.kind = kind  # postgresql | mariadb | sqlite
        self.engine = sa.create_engine(url)
        self.prefix = f"t{uuid.uuid4().hex[:10]}"  # topics never repeat on the session-wide broker

    @property
    def dialect(self) -> str:
        return "mysql" if self.kind == "mariadb" else self.kind

    def create_outbox(self, payload: str = "json", cleanup: str = "delete", extra_columns: str = "") -> None:
        ddl = outbox_ddl(self.dialect, payload=payload, cleanup=cleanup)  # type: ignore[arg-type]
        with self.engine.begin() as conn:
            for statement in ddl.split(";\n\n"):
                conn.execute(sa.text(statement.strip().rstrip(";")))
            for column in filter(None, extra_columns.split(",")):
                conn.execute(sa.text(f"ALTER TABLE outbox ADD COLUMN {column.strip()}"))

    def insert(
        self,
        aggregate_id: str,
        payload: Any,
        event_type: str = "OrderPlaced",
        aggregate_type: str = "order",
        conn: sa.Connection | None = None,
        **extra: Any,
    ) -> int:
        values = {
            "aggregate_type": aggregate_type,
            "aggregate_id": aggregate_id,
            "event_type": event_type,
            "payload": payload if isinstance(payload, str | bytes) else json.dumps(payload),
            **extra,
        }
        names = ", ".join(values)
        params = ", ".join(f":{name}" for name in values)
        statement = sa.text(f"INSERT INTO outbox ({names}) VALUES ({params})")
        if conn is not None:
            conn.execute(statement, values)
            return int(conn.execute(sa.text(self._last_id)).scalar_one())
        with self.engine.begin() as own:
            own.execute(statement, values)
            return int(own.execute(sa.text(self._last_id)).scalar_one())

    @property
    def _last_id(self) -> str:
        return {
            "postgresql": "SELECT lastval()",
            "mariadb": "SELECT LAST_INSERT_ID()",
            "sqlite": "SELECT last_insert_rowid()",
        }[self.kind]

    def run(self, sql: str, **params: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.text(sql), params)

    @contextmanager
    def hold_cleanup(self) -> Iterator[None]:
        """Rows can still be claimed and published, but the daemon's cleanup waits until the block ends.

        The window between Kafka's acknowledgement and the cleanup is short; this holds it open so a
        kill can land inside it. SQLite has no lock that lets the claim through but not the DELETE."""
        if self.kind == "sqlite":
            pytest.skip("SQLite cannot hold back the cleanup alone; PostgreSQL and MariaDB cover this")
        with self.engine.connect() as holder:
            if self.kind == "postgresql":
                # SHARE blocks DELETE/UPDATE (ROW EXCLUSIVE) but not the claim's FOR UPDATE (ROW SHARE).
                holder.execute(sa.text("LOCK TABLE outbox IN SHARE MODE"))
                yield
                holder.rollback()
                return
            # InnoDB: the claim already row-locks what the cleanup deletes, so hold the DELETE in a trigger
            # waiting on a named lock this session owns.
            lock = f"{self.prefix}-hold"
            holder.execute(sa.text("SELECT GET_LOCK(:lock, 10)"), {"lock": lock})
            holder.execute(
                sa.text(
                    "CREATE TRIGGER outbox_hold BEFORE DELETE ON outbox FOR EACH ROW "
                    f"SET @held = GET_LOCK('{lock}', 600)"
                )
            )
            try:
                yield
            finally:
                holder.execute(sa.text("SELECT RELEASE_LOCK(:lock)"), {"lock": lock})
                holder.execute(sa.text("DROP TRIGGER outbox_hold"))

    def count(self, where: str = "1=1") -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.text(f"SELECT COUNT(*) FROM outbox WHERE {where}")).scalar_one())


@pytest.fixture(params=["postgresql", "mariadb", "sqlite"])
def app_db(request: pytest.FixtureRequest, tmp_path: Path) -> AppDb:
    if request.param == "sqlite":
        return AppDb(f"sqlite:///{tmp_path}/app.db", "sqlite")
    url = request.getfixturevalue("pg_url" if request.param == "postgresql" else "mysql_url")
    return AppDb(url, request.param)


def register_order_schema(registry_url: str, topic: str) -> int:
    with RegistryClient(registry_url) as client:
        return client.register(f"{topic}-value", ORDER_SCHEMA)


def outbox_yaml(db: AppDb, extra: str = "", name: str = "ob") -> str:
    return (
        f"  - name: {name}\n    type: outbox\n    url: {db.url}\n"
        f'    topic: "{db.prefix}.{{aggregate_type}}"\n'
        f'    dead_letter: {{topic: "{db.prefix}.dead.{{source}}"}}\n'
        f"    poll_interval: 100ms\n{extra}"
    )


def read_raw(bootstrap: str, topic: str, expect: int, timeout: float = 30.0) -> list[tuple[bytes, dict[str, bytes]]]:
    """(value bytes, headers) of each record, undecoded: what a consumer receives byte for byte."""
    return [
        (message.value() or b"", dict(message.headers() or []))  # type: ignore[misc]
        for message in read_records(bootstrap, topic, expect, timeout)
    ]
