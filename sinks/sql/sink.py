"""`type: sql`: applies topics to tables, one transaction per batch, offsets stored in the same transaction."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from liberator import sqldb
from liberator.config import DatabaseTimeouts
from liberator.errors import LiberatorError
from liberator.sink import Consuming, FatalSinkError, Sink, SinkConfig, SinkContext, SinkRecord
from sinks.sql.columns import field_columns
from sinks.sql.config import SqlSinkConfig
from sinks.sql.errors import classify, is_bad_value
from sinks.sql.offsets import OffsetTable
from sinks.sql.records import BadRecord, Change, SchemaCache, interpret
from sinks.sql.tables import Tables, TargetTable
from sinks.sql.values import to_column

_UNSAFE = re.compile(r"[^A-Za-z0-9_]")


@dataclass
class Item:
    """One record ready for the target: a row change, a skip, or a bad record with its reason."""

    record: SinkRecord
    op: str  # upsert | insert | delete | truncate | skip | bad
    table: TargetTable | None = None
    key: tuple[Any, ...] = ()
    row: dict[str, Any] | None = None
    reason: str = ""
    target: tuple[str | None, str] = (None, "")  # (schema, name) of the table a truncate empties


def where(record: SinkRecord) -> str:
    return f"{record.topic}[{record.partition}]@{record.offset}"


class SqlSink(Sink[SqlSinkConfig]):
    config_model: ClassVar[type[SinkConfig]] = SqlSinkConfig

    def __init__(self, config: SqlSinkConfig, context: SinkContext) -> None:
        super().__init__(config, context)
        self.engine = make_engine(config.url, config)
        self.dialect = self.engine.dialect.name
        self.tables = Tables(self.engine, config.url, config.create, config.evolve, config.mode, config)
        self.offsets = OffsetTable(self.engine, config.offsets_table, config.name, config)
        self.schemas = SchemaCache(context.registry)
        self._statements: dict[tuple[Any, ...], Any] = {}
        self._truncates_skipped: set[tuple[str | None, str]] = set()  # tables already warned about

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

    # -- records -> items ---------------------------------------------------------------------------

    def _target(self, change: Change) -> tuple[str | None, str]:
        table, schema = change.table_hint
        topic = _UNSAFE.sub("_", change.record.topic)
        name = self.config.table.format(
            table=table, schema=schema, topic=topic, app=self.context.app_name, sink=self.config.name
        )
        return self.config.target_schema, name

    def _key_columns(self, change: Change) -> tuple[str, ...]:
        if self.config.key:
            return tuple(self.config.key)
        if change.key is None or not isinstance(change.key.schema, dict) or change.key.schema.get("type") != "record":
            if self.config.mode == "insert":
                return ()
            raise BadRecord("the record key is not an Avro record, so it names no key columns; set `key:` in the sink")
        return tuple(fc.column for fc in field_columns(change.key.schema, "the record key"))

    def _item(self, record: SinkRecord) -> Item:
        try:
            change = interpret(record, self.schemas)
            if change.op == "skip":
                return Item(record, "skip", reason=change.reason)
            schema, name = self._target(change)
            if change.op == "truncate":
                return self._truncate_item(record, schema, name)
            key_columns = self._key_columns(change)
            if change.op == "delete":
                if not self.config.delete:
                    return Item(record, "skip", reason="delete: false")
                return self._delete_item(record, change, schema, name, key_columns)
            assert change.row is not None and change.row_schema is not None
            table, plan = self.tables.plan(schema, name, change.value_id, change.row_schema, key_columns)
            try:
                row = {}
                for field, column, convert in plan.columns:
                    value = change.row.get(field)
                    row[column] = None if value is None else convert(value)
            except (ValueError, TypeError, ArithmeticError, KeyError, AttributeError) as exc:
                raise BadRecord(f"field {field}: the value does not fit column {column} ({exc})") from None
            key = tuple(row[k] for k in key_columns)
            return Item(record, "upsert" if self.config.mode == "upsert" else "insert", table, key, row)
        except BadRecord as exc:
            return Item(record, "bad", reason=str(exc))

    def _truncate_item(self, record: SinkRecord, schema: str | None, name: str) -> Item:
        if self.config.truncate:
            return Item(record, "truncate", target=(schema, name))
        if (schema, name) not in self._truncates_skipped:
            self._truncates_skipped.add((schema, name))
            self.context.log.warning(
                "sink %s: a truncate of table %s (%s) was not applied; set `truncate: true` to empty the table "
                "(logged once per table)",
                self.config.name,
                name,
                where(record),
            )
        return Item(record, "skip", reason="truncate: false")

    def _delete_item(
        self, record: SinkRecord, change: Change, schema: str | None, name: str, key_columns: tuple[str, ...]
    ) -> Item:
        if not key_columns:
            raise BadRecord("a delete needs key columns; set `key:` in the sink")
        table = self.tables.known(schema, name, key_columns)
        images: list[tuple[dict[str, Any], dict[str, Any]]] = []
        if change.key is not None and isinstance(change.key.datum, dict):
            images.append((change.key.schema, change.key.datum))
        if change.before is not None and change.row_schema is not None:
            images.append((change.row_schema, change.before))
        for image_schema, datum in images:
            fields = {fc.column: fc for fc in field_columns(image_schema, f"table {name}")}
            if all(k in fields for k in key_columns):
                key = []
                for k in key_columns:
                    fc = fields[k]
                    value = datum.get(fc.field)
                    key.append(None if value is None else to_column(fc.kind, self.dialect, table.types.get(k))(value))
                return Item(record, "delete", table, tuple(key))
        raise BadRecord(
            f"a delete whose key and before-image carry no value for key column(s) {', '.join(key_columns)}"
        )

    # -- batches ------------------------------------------------------------------------------------

    def write(self, records: Sequence[SinkRecord]) -> int:
        self.offsets.ensure()
        items = [self._item(r) for r in records]
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
                item.op = "skip"
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
                item.op = "skip"
                changed += self._transaction([item])
        return changed

    def _transaction(self, items: list[Item]) -> int:
        partitions = sorted({(i.record.topic, i.record.partition) for i in items})
        with self.engine.begin() as conn:
            stored = self.offsets.read(partitions, conn, lock=True)
            # Records at or below a stored offset were applied already (by us before a crash, or by another
            # group member after a rebalance): applying them again could put an old row over a newer one.
            fresh = [i for i in items if i.record.offset > stored.get((i.record.topic, i.record.partition), -1)]
            changed = self._apply_rows(conn, fresh)
            highest: dict[tuple[str, int], int] = {}
            for item in fresh:
                tp = (item.record.topic, item.record.partition)
                highest[tp] = max(highest.get(tp, -1), item.record.offset)
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
        if self.config.mode == "upsert":
            last: dict[tuple[int, tuple[Any, ...]], Item] = {}
            for item in items:
                if item.table is not None and item.op in ("upsert", "delete"):
                    last.pop((id(item.table), item.key), None)  # keep the latest, in record order
                    last[(id(item.table), item.key)] = item
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
        for run in runs:
            groups: dict[tuple[Any, ...], list[Item]] = {}
            for item in run:
                assert item.table is not None
                columns = tuple(item.row) if item.row is not None else ()
                groups.setdefault((id(item.table), item.op, columns), []).append(item)
            for (_, op, columns), group in groups.items():
                table = group[0].table
                assert table is not None
                if op == "delete":
                    stmt = self._delete(table)
                    params = [dict(zip(table.key, i.key, strict=True)) for i in group]
                else:
                    stmt = self._upsert(table, columns) if op == "upsert" else self._insert(table, columns)
                    params = [i.row for i in group if i.row is not None]
                result = conn.execute(stmt, params)
                changed += result.rowcount if result.rowcount and result.rowcount > 0 else len(params)
        return changed

    # -- statements ---------------------------------------------------------------------------------

    def _sql_table(self, table: TargetTable, columns: Sequence[str]) -> sa.TableClause:
        return sa.table(table.name, *(sa.column(c) for c in columns), schema=table.schema)

    def _insert(self, table: TargetTable, columns: tuple[str, ...]) -> Any:
        cache_key = ("insert", table.schema, table.name, columns)
        if cache_key not in self._statements:
            self._statements[cache_key] = sa.insert(self._sql_table(table, columns))
        return self._statements[cache_key]

    def _delete(self, table: TargetTable) -> Any:
        cache_key = ("delete", table.schema, table.name, table.key)
        if cache_key not in self._statements:
            sql = self._sql_table(table, table.key)
            self._statements[cache_key] = sa.delete(sql).where(*(sql.c[k] == sa.bindparam(k) for k in table.key))
        return self._statements[cache_key]

    def _upsert(self, table: TargetTable, columns: tuple[str, ...]) -> Any:
        cache_key = ("upsert", table.schema, table.name, columns, table.key)
        if cache_key in self._statements:
            return self._statements[cache_key]
        sql = self._sql_table(table, columns)
        rest = [c for c in columns if c not in table.key]
        stmt: Any
        if self.dialect in ("mysql", "mariadb"):
            stmt = mysql.insert(sql)
            updates = {c: stmt.inserted[c] for c in rest} or {table.key[0]: stmt.inserted[table.key[0]]}
            stmt = stmt.on_duplicate_key_update(updates)
        else:
            stmt = postgresql.insert(sql) if self.dialect == "postgresql" else sqlite.insert(sql)
            if rest:
                stmt = stmt.on_conflict_do_update(
                    index_elements=list(table.key), set_={c: stmt.excluded[c] for c in rest}
                )
            else:
                stmt = stmt.on_conflict_do_nothing(index_elements=list(table.key))
        self._statements[cache_key] = stmt
        return stmt


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
