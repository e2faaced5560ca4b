"""Records -> items, the sink's per-record path: decode the bytes, find the record's route, convert the row.

Everything that only depends on a record's topic and its key and value writer schemas -- the target table, the
key columns, the plan with its generated row converter -- is its route, worked out once
(`(topic, key writer, value writer)`); per record the key and value bodies are read by their generated
readers and the row converted by its generated function.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from liberator.sink import SinkRecord
from liberator.sinks.sql.columns import FieldColumn, field_columns
from liberator.sinks.sql.config import SqlSinkConfig
from liberator.sinks.sql.records import BadRecord, SchemaCache, Writer, table_hint
from liberator.sinks.sql.tables import Plan, Tables, TargetTable
from liberator.sinks.sql.values import to_column

_UNSAFE = re.compile(r"[^A-Za-z0-9_]")
_CHANGES = frozenset(("c", "u", "r"))


class Item:
    """One record ready for the target: a row change, a skip, or a bad record with its reason."""

    __slots__ = ("key", "op", "plan", "reason", "record", "row", "table", "target")

    def __init__(
        self,
        record: SinkRecord,
        op: str,  # upsert | insert | delete | truncate | skip | bad
        table: TargetTable | None = None,
        key: tuple[Any, ...] = (),
        row: tuple[Any, ...] | None = None,  # the values of plan.columns
        plan: Plan | None = None,
        reason: str = "",
        target: tuple[str | None, str] = (None, ""),  # (schema, name) of the table a truncate empties
    ) -> None:
        self.record = record
        self.op = op
        self.table = table
        self.key = key
        self.row = row
        self.plan = plan
        self.reason = reason
        self.target = target

    def skip(self) -> None:
        """Applied as nothing (its offset still moves on): a skip writes to no table."""
        self.op, self.table, self.row, self.plan = "skip", None, None, None


def where(record: SinkRecord) -> str:
    return f"{record.topic}[{record.partition}]@{record.offset}"


class Route:
    """What the records of one topic with one key and one value writer schema have in common."""

    __slots__ = ("key", "key_columns", "key_problem", "shape", "target", "value")

    def __init__(
        self,
        target: tuple[str | None, str],
        key: Writer | None,
        value: Writer | None,
        key_columns: tuple[str, ...] | None,
        key_problem: str,
    ) -> None:
        self.target = target
        self.key = key
        self.value = value
        self.key_columns = key_columns  # None: the records name no key columns, `key_problem` says why
        self.key_problem = key_problem
        self.shape: tuple[TargetTable, Plan] | None = None  # made at the first upsert (it may create the table)


class Items:
    """Turns one sink's records into items."""

    def __init__(self, config: SqlSinkConfig, app: str, schemas: SchemaCache, tables: Tables, log: logging.Logger):
        self.config = config
        self.app = app
        self.schemas = schemas
        self.tables = tables
        self.log = log
        self.dialect = tables.dialect
        self.upsert_op = "upsert" if config.mode == "upsert" else "insert"
        self._routes: dict[tuple[str, Writer | None, Writer | None], Route] = {}
        self._images: dict[int, dict[str, FieldColumn]] = {}  # the columns of a key or row schema, by schema id
        self._truncates_skipped: set[tuple[str | None, str]] = set()  # tables already warned about

    def items(self, records: list[SinkRecord]) -> list[Item]:
        item = self.item
        return [item(record) for record in records]

    def item(self, record: SinkRecord) -> Item:
        try:
            key_writer = key = None
            if record.key is not None:
                key_writer = self.schemas.writer(record.key, "key")
                key = key_writer.read(record.key, "key")
            if record.value is None:
                if key_writer is None:
                    raise BadRecord("a tombstone without a key: nothing says which row to delete")
                return self._delete(record, self._route(record.topic, key_writer, None), key, None)
            writer = self.schemas.writer(record.value, "value")
            datum = writer.read(record.value, "value")
            if not writer.is_record:
                raise BadRecord(f"the value's schema (id {writer.schema_id}) is not a record; a table row needs one")
            route = self._routes.get((record.topic, key_writer, writer)) or self._route(
                record.topic, key_writer, writer
            )
            if not writer.envelope:
                return self._upsert(record, route, datum)
            if writer.row_schema is None:
                raise BadRecord("the change envelope carries no row record in before/after")
            op = datum.get("op")
            if op in _CHANGES:
                after = datum.get("after")
                if after is None:
                    raise BadRecord(f"a change event with op {op!r} has no `after` image")
                return self._upsert(record, route, after)
            if op == "d":
                return self._delete(record, route, key, datum.get("before"))
            if op == "t":
                return self._truncate(record, route.target)
            raise BadRecord(f"a change event with unknown op {op!r}")
        except BadRecord as exc:
            return Item(record, "bad", reason=str(exc))

    # -- routes -------------------------------------------------------------------------------------

    def _route(self, topic: str, key: Writer | None, value: Writer | None) -> Route:
        found = self._routes.get((topic, key, value))
        if found is not None:
            return found
        hint = table_hint(value.schema if value is not None else key.schema if key is not None else None, topic)
        table, schema = hint
        name = self.config.table.format(
            table=table, schema=schema, topic=_UNSAFE.sub("_", topic), app=self.app, sink=self.config.name
        )
        key_columns: tuple[str, ...] | None
        problem = ""
        if self.config.key:
            key_columns = tuple(self.config.key)
        elif key is None or not isinstance(key.schema, dict) or key.schema.get("type") != "record":
            key_columns = () if self.config.mode == "insert" else None
            problem = "the record key is not an Avro record, so it names no key columns; set `key:` in the sink"
        else:
            key_columns = tuple(fc.column for fc in field_columns(key.schema, "the record key"))
        route = Route((self.config.target_schema, name), key, value, key_columns, problem)
        self._routes[(topic, key, value)] = route
        return route

    # -- items --------------------------------------------------------------------------------------

    def _upsert(self, record: SinkRecord, route: Route, datum: Any) -> Item:
        key_columns = route.key_columns
        if key_columns is None:
            raise BadRecord(route.key_problem)
        shape = route.shape
        if shape is None:
            assert route.value is not None and route.value.row_schema is not None
            schema, name = route.target
            shape = route.shape = self.tables.plan(
                schema, name, route.value.schema_id, route.value.row_schema, key_columns
            )
        table, plan = shape
        row = plan.row(datum)
        return Item(record, self.upsert_op, table, plan.key_of(row), row, plan)

    def _truncate(self, record: SinkRecord, target: tuple[str | None, str]) -> Item:
        if self.config.truncate:
            return Item(record, "truncate", target=target)
        if target not in self._truncates_skipped:
            self._truncates_skipped.add(target)
            self.log.warning(
                "sink %s: a truncate of table %s (%s) was not applied; set `truncate: true` to empty the table "
                "(logged once per table)",
                self.config.name,
                target[1],
                where(record),
            )
        return Item(record, "skip", reason="truncate: false")

    def _delete(self, record: SinkRecord, route: Route, key: Any, before: dict[str, Any] | None) -> Item:
        key_columns = route.key_columns
        if key_columns is None:
            raise BadRecord(route.key_problem)
        if not self.config.delete:
            return Item(record, "skip", reason="delete: false")
        schema, name = route.target
        if not key_columns:
            raise BadRecord("a delete needs key columns; set `key:` in the sink")
        table = self.tables.known(schema, name, key_columns)
        images: list[tuple[Writer, dict[str, Any]]] = []
        if route.key is not None and isinstance(key, dict):
            images.append((route.key, key))
        if before is not None and route.value is not None and route.value.row_schema is not None:
            images.append((route.value, before))
        for writer, datum in images:
            fields = self._image_fields(writer, writer is route.key, name)
            if all(k in fields for k in key_columns):
                values = []
                for k in key_columns:
                    fc = fields[k]
                    value = datum.get(fc.field)
                    values.append(
                        None if value is None else to_column(fc.kind, self.dialect, table.types.get(k))(value)
                    )
                return Item(record, "delete", table, tuple(values))
        raise BadRecord(
            f"a delete whose key and before-image carry no value for key column(s) {', '.join(key_columns)}"
        )

    def _image_fields(self, writer: Writer, is_key: bool, table: str) -> dict[str, FieldColumn]:
        """The columns of a key (its record) or of a before image (the row record), by column name."""
        cache_key = writer.schema_id * 2 + is_key
        fields = self._images.get(cache_key)
        if fields is None:
            schema = writer.schema if is_key else writer.row_schema
            assert isinstance(schema, dict)  # a key that is a record, a row record: see _delete
            fields = self._images[cache_key] = {fc.column: fc for fc in field_columns(schema, f"table {table}")}
        return fields
