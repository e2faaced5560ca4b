"""`type: sql`: applies topics to tables, one transaction per batch, offsets stored in the same transaction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from liberator import sqldb
from liberator.config import DatabaseTimeouts
from liberator.errors import LiberatorError
from liberator.sink import Consuming, FatalSinkError, Sink, SinkConfig, SinkContext, SinkRecord
from liberator.sinks.sql.config import SqlSinkConfig
from liberator.sinks.sql.errors import classify, is_bad_value
from liberator.sinks.sql.items import Item, Items, where
from liberator.sinks.sql.offsets import OffsetTable
from liberator.sinks.sql.records import SchemaCache
from liberator.sinks.sql.statements import Statements
from liberator.sinks.sql.tables import Tables


class SqlSink(Sink[SqlSinkConfig]):
    config_model: ClassVar[type[SinkConfig]] = SqlSinkConfig

    def __init__(self, config: SqlSinkConfig, context: SinkContext) -> None:
        super().__init__(config, context)
        self.engine = make_engine(config.url, config)
        self.dialect = self.engine.dialect.name
        self.tables = Tables(self.engine, config.url, config.create, config.evolve, config.mode, config)
        self.offsets = OffsetTable(self.engine, config.offsets_table, config.name, config)
        self.items = Items(config, context.app_name, SchemaCache(context.registry), self.tables, context.log)
        self.statements = Statements(self.engine, config.mode)

    @property
    def consuming(self) -> Consuming:
        cfg = self.config
        topics = (
            (cfg.topics if cfg.topics.startswith("^") else "^" + cfg.topics,)
            if isinstance(cfg.topics, str)
            else tuple(cfg.topics)
        )
        return Consuming(
            topics=topics,
            group_id=cfg.consumer.group_id or f"liberator-{self.context.app_name}-{cfg.name}",
            batch_size=cfg.batch.size,
            batch_time=cfg.batch.time,
            start=cfg.consumer.start,
            settings=dict(cfg.consumer.settings),
        )

    def check(self) -> list[str]:
        try:
            self.offsets.ensure()
        except LiberatorError as exc:
            return [str(exc)]
        return []

    def applied_offsets(self, partitions: Sequence[tuple[str, int]]) -> dict[tuple[str, int], int]:
        return self.offsets.read(partitions)

    def close(self) -> None:
        self.engine.dispose()

    # -- batches ------------------------------------------------------------------------------------

    def write(self, records: Sequence[SinkRecord]) -> int:
        self.offsets.ensure()
        items = self.items.items(list(records))
        first_bad = next((i for i, item in enumerate(items) if item.op == "bad"), None)
        if first_bad is not None and self.config.on_error == "stop":
            changed = self._apply(items[:first_bad]) if first_bad else 0
            bad = items[first_bad]
            raise FatalSinkError(
                f"sink {self.config.name}: bad record {where(bad.record)}: {bad.reason}; fix the producer and restart, "
                f"or set `on_error: dead_letter` (changes before it are applied: {changed} rows)"
            )
        return self._apply(items)

    def _dead_letter(self, item: Item) -> None:
        topic = self.config.dead_letter_topic.format(sink=self.config.name, app=self.context.app_name)
        self.context.dead_letter(item.record, topic, item.reason)
        self.context.log.warning("bad record %s sent to %s: %s", where(item.record), topic, item.reason)

    def _apply(self, items: list[Item]) -> int:
        if not items:
            return 0
        for item in items:
            if item.op == "bad":
                self._dead_letter(item)  # before the offsets move past it: a crash re-sends, never loses
                item.skip()
        try:
            return self._transaction(items)
        except SQLAlchemyError as exc:
            if not is_bad_value(exc):
                raise classify(exc, self.config.url, f"sink {self.config.name}", self.config) from None
        # Some record violates the target's rules: find it by applying one record per transaction.
        changed = 0
        for item in items:
            try:
                changed += self._transaction([item])
            except SQLAlchemyError as exc:
                if not is_bad_value(exc):
                    raise classify(exc, self.config.url, f"sink {self.config.name}", self.config) from None
                reason = "the target refused it: " + " ".join(str(getattr(exc, "orig", exc)).split())[:300]
                if self.config.on_error == "stop":
                    raise FatalSinkError(
                        f"sink {self.config.name}: bad record {where(item.record)}: {reason}; fix the data or the "
                        "table and restart, or set `on_error: dead_letter`"
                    ) from None
                item.reason, item.op = reason, "bad"
                self._dead_letter(item)
                item.skip()
                changed += self._transaction([item])
        return changed

    def _transaction(self, items: list[Item]) -> int:
        partitions = sorted({(i.record.topic, i.record.partition) for i in items})
        with self.engine.begin() as conn:
            stored = self.offsets.read(partitions, conn, lock=True)
            # Records at or below a stored offset were applied already (by us before a crash, or by another
            # group member after a rebalance): applying them again could put an old row over a newer one.
            highest: dict[tuple[str, int], int] = {}
            fresh = []
            for item in items:
                record = item.record
                where_ = (record.topic, record.partition)
                if record.offset > stored.get(where_, -1):
                    fresh.append(item)
                    if record.offset > highest.get(where_, -1):
                        highest[where_] = record.offset
            changed = self._apply_rows(conn, fresh)
            self.offsets.store(conn, highest, stored)
        return changed

    def _apply_rows(self, conn: sa.Connection, items: list[Item]) -> int:
        """Applies the batch in record order around truncates: the records before one, the truncate, the rest."""
        changed = 0
        segment: list[Item] = []
        for item in items:
            if item.op == "truncate":
                changed += self._apply_segment(conn, segment)
                segment = []
                changed += self._truncate(conn, *item.target)
            else:
                segment.append(item)
        return changed + self._apply_segment(conn, segment)

    def _truncate(self, conn: sa.Connection, schema: str | None, name: str) -> int:
        """DELETE, not TRUNCATE: it is transactional on every dialect (MySQL's TRUNCATE commits implicitly)."""
        if not sa.inspect(conn).has_table(name, schema=schema):
            return 0  # never created: nothing to empty
        result = conn.execute(sa.delete(sa.table(name, schema=schema)))
        self.context.log.info(
            "sink %s: truncate applied to %s (%d rows deleted)", self.config.name, name, result.rowcount
        )
        return max(result.rowcount, 0)

    def _apply_segment(self, conn: sa.Connection, items: list[Item]) -> int:
        changed = 0
        runs: list[list[Item]]
        if self.config.mode == "upsert":
            last: dict[tuple[int, tuple[Any, ...]], Item] = {}
            for item in items:
                if item.table is not None:  # upserts and deletes (skips have no table)
                    where_ = (id(item.table), item.key)
                    last.pop(where_, None)  # keep the latest, in record order
                    last[where_] = item
            runs = [list(last.values())]
        else:
            runs = []  # consecutive inserts (or deletes) of one table: order between runs is kept
            for item in items:
                if item.table is None:
                    continue
                if runs and runs[-1][-1].op == item.op and runs[-1][-1].table is item.table:
                    runs[-1].append(item)
                else:
                    runs.append([item])
        statements = self.statements
        for run in runs:
            # One statement per table, operation and plan (the writer schema's row shape)
            groups: dict[tuple[int, str, int], list[Item]] = {}
            for item in run:
                groups.setdefault((id(item.table), item.op, id(item.plan)), []).append(item)
            for group in groups.values():
                first = group[0]
                table = first.table
                assert table is not None
                if first.op == "delete":
                    changed += statements.delete(conn, table, [i.key for i in group])
                else:
                    assert first.plan is not None
                    rows = [i.row for i in group if i.row is not None]
                    changed += statements.write(conn, table, first.plan.columns, rows)
        return changed


def make_engine(url: str, timeouts: DatabaseTimeouts) -> sa.Engine:
    """The target engine. SQLite transactions start with BEGIN IMMEDIATE, so two writers queue (up to
    read_timeout) instead of failing the read-then-write of the offsets with 'database is locked'."""
    parsed = sqldb.parse_url(url)
    if parsed.get_backend_name() != "sqlite":
        return sqldb.create_engine(url, timeouts)
    engine = sqldb.create_engine(url, timeouts)

    @sa.event.listens_for(engine, "connect")
    def _no_implicit_transactions(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @sa.event.listens_for(engine, "begin")
    def _begin_immediate(conn: sa.Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine
