"""The highest applied offset per topic-partition, kept in the target next to the data it describes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from liberator.config import DatabaseTimeouts
from liberator.dbconnect import DEFAULT_TIMEOUTS
from liberator.sink import FatalSinkError
from liberator.sinks.sql.errors import classify


class OffsetTable:
    def __init__(self, engine: sa.Engine, name: str, sink: str, timeouts: DatabaseTimeouts = DEFAULT_TIMEOUTS) -> None:
        self.engine = engine
        self.timeouts = timeouts
        self.sink = sink
        self.dialect = engine.dialect.name
        self.table = sa.Table(
            name,
            sa.MetaData(),
            sa.Column("sink", sa.String(190), primary_key=True),
            sa.Column("topic", sa.String(249), primary_key=True),
            sa.Column("kafka_partition", sa.Integer, primary_key=True, autoincrement=False),
            sa.Column("kafka_offset", sa.BigInteger, nullable=False),
        )
        self._ready = False

    def ensure(self) -> None:
        if self._ready:
            return
        try:
            with self.engine.begin() as conn:
                self.table.create(conn, checkfirst=True)
        except SQLAlchemyError as exc:
            if self._exists():  # another sink or group member created it at the same moment
                self._ready = True
                return
            error = classify(
                exc, str(self.engine.url), f"sink {self.sink}: offsets table {self.table.name}", self.timeouts
            )
            if isinstance(error, FatalSinkError):
                raise FatalSinkError(
                    f"{error}; the sink needs CREATE TABLE once, or create the table yourself"
                ) from None
            raise error from None
        self._ready = True

    def _exists(self) -> bool:
        try:
            with self.engine.connect() as conn:
                return bool(sa.inspect(conn).has_table(self.table.name))
        except SQLAlchemyError:
            return False

    def read(
        self, partitions: Sequence[tuple[str, int]], conn: sa.Connection | None = None, lock: bool = False
    ) -> dict[tuple[str, int], int]:
        if not partitions:
            return {}
        if conn is None:
            self.ensure()
            try:
                with self.engine.connect() as own:
                    return self.read(partitions, own)
            except SQLAlchemyError as exc:
                raise classify(
                    exc, str(self.engine.url), f"sink {self.sink}: reading stored offsets", self.timeouts
                ) from None
        t = self.table.c
        topics = sorted({topic for topic, _ in partitions})
        query = sa.select(t.topic, t.kafka_partition, t.kafka_offset).where(t.sink == self.sink, t.topic.in_(topics))
        if lock:
            query = query.with_for_update()  # serialises group members applying the same partition
        wanted = set(partitions)
        return {
            (row.topic, row.kafka_partition): row.kafka_offset
            for row in conn.execute(query)
            if (row.topic, row.kafka_partition) in wanted
        }

    def store(
        self, conn: sa.Connection, highest: dict[tuple[str, int], int], stored: dict[tuple[str, int], int]
    ) -> None:
        rows = [
            {"sink": self.sink, "topic": topic, "kafka_partition": partition, "kafka_offset": offset}
            for (topic, partition), offset in highest.items()
            if offset > stored.get((topic, partition), -1)
        ]
        if not rows:
            return
        stmt: Any
        if self.dialect in ("mysql", "mariadb"):
            insert = mysql.insert(self.table)
            stmt = insert.on_duplicate_key_update(
                kafka_offset=sa.func.greatest(self.table.c.kafka_offset, insert.inserted.kafka_offset)
            )
        else:
            insert_pg = postgresql.insert(self.table) if self.dialect == "postgresql" else sqlite.insert(self.table)
            stmt = insert_pg.on_conflict_do_update(
                index_elements=["sink", "topic", "kafka_partition"],
                set_={"kafka_offset": insert_pg.excluded.kafka_offset},
                where=self.table.c.kafka_offset < insert_pg.excluded.kafka_offset,
            )
        conn.execute(stmt, rows)
