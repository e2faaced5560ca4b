"""A legacy database under test: the same scenarios run against PostgreSQL and MariaDB."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa


@dataclass
class LegacyDb:
    url: str
    kind: str  # postgresql | mariadb | sqlite

    def __post_init__(self) -> None:
        self.engine = sa.create_engine(self.url)
        self.prefix = f"t{uuid.uuid4().hex[:10]}"

    @property
    def ts(self) -> str:
        return {"postgresql": "TIMESTAMP(6)", "mariadb": "DATETIME(6)", "sqlite": "DATETIME"}[self.kind]

    @property
    def now(self) -> str:
        """The expression a legacy app uses to stamp rows."""
        return {
            "postgresql": "clock_timestamp()::timestamp",
            "mariadb": "NOW(6)",
            "sqlite": "strftime('%Y-%m-%d %H:%M:%f','now')",
        }[self.kind]

    @property
    def schema(self) -> str:
        """The default schema, as it appears in topic names."""
        if self.kind == "postgresql":
            return "public"
        if self.kind == "sqlite":
            return "main"
        return self.url.rsplit("/", 1)[-1].split("?")[0]

    def run(self, sql: str, **params: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.text(sql), params)

    def rows(self, sql: str) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(sa.text(sql)).all())

    def change_type_to_text(self, table: str, column: str) -> str:
        if self.kind == "postgresql":
            return f"ALTER TABLE {table} ALTER COLUMN {column} TYPE TEXT"
        return f"ALTER TABLE {table} MODIFY {column} TEXT NOT NULL"

    def create_orders(self, table: str = "orders") -> None:
        self.run(f"""CREATE TABLE {table} (
            id INTEGER NOT NULL PRIMARY KEY,
            customer VARCHAR(50) NOT NULL,
            total NUMERIC(10, 2),
            qty INTEGER NOT NULL,
            updated_at {self.ts} NOT NULL)""")
        self.run(f"CREATE INDEX {table}_cursor ON {table} (updated_at, id)")

    def insert_order(self, order_id: int, table: str = "orders", total: str = "12.50", qty: int = 1) -> None:
        self.run(
            f"INSERT INTO {table} (id, customer, total, qty, updated_at) "
            f"VALUES (:id, :customer, :total, :qty, {self.now})",
            id=order_id,
            customer=f"c{order_id}",
            total=total,
            qty=qty,
        )
