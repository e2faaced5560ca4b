"""Shared by the SQL sink tests: configs with a query source and a sql sink over the same database."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from liberator import sqldb
from tests.integration.legacy_db import LegacyDb


def source_yaml(legacy: LegacyDb, tables: str) -> str:
    return (
        f'  - name: legacy\n    topic: "{legacy.prefix}.{{table}}"\n    type: query\n    url: {legacy.url}\n'
        f"    tables: {tables}\n    cursor: [updated_at, id]\n    poll_interval: 100ms\n    safety_delay: 0s\n"
    )


def sink_yaml(legacy: LegacyDb, topics: str, extra: str = "", name: str = "replica", url: str | None = None) -> str:
    return (
        f"sinks:\n  - name: {name}\n    type: sql\n    url: {url or legacy.url}\n    topics: {topics}\n"
        f'    table: "sink_{{table}}"\n    batch: {{size: 500, time: 200ms}}\n'
        f"    consumer: {{settings: {{session.timeout.ms: 6000, fetch.wait.max.ms: 10}}}}\n{extra}"
    )


def table_rows(url: str, table: str, order: str = "id") -> list[tuple[Any, ...]]:
    """Rows as liberator's sources read them (typed through the reflected columns: SQLite text dates parsed)."""
    engine = sqldb.create_engine(url)
    try:
        with engine.connect() as conn:
            reflected = sa.Table(table, sa.MetaData(), autoload_with=conn)
            return [tuple(r) for r in conn.execute(sa.select(reflected).order_by(reflected.c[order]))]
    finally:
        engine.dispose()


def count(url: str, table: str) -> int:
    engine = sqldb.create_engine(url)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table(table):
                return -1
            return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())
    finally:
        engine.dispose()
