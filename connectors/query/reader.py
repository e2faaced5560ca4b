"""One captured table, view or query: its reflected shape, and keyset-paginated reads by cursor and key."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from connectors.query.config import QuerySourceConfig, TableEntry
from liberator.avro import DatumConverter, key_schema, namespace_for, value_schema
from liberator.errors import SchemaError
from liberator.events import Stream
from liberator.schema import DateType, DecimalType, IntType, TableSchema, TimestampType
from liberator.sqltypes import reflect_table

_TOPIC_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def epoch_us(value: object) -> int | None:
    """The event time of a cursor value in microseconds; wall-clock (naive) values are read as UTC."""
    if isinstance(value, str):  # SQLite keeps timestamps as text
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            return None
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        delta = value - _EPOCH
        return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    if isinstance(value, dt.date):
        return (value - _EPOCH.date()).days * 86_400_000_000
    return None


def epoch_ms(value: object) -> int | None:
    micros = epoch_us(value)
    return None if micros is None else micros // 1000


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@dataclass
class Shape:
    """What a reflection found; replaced wholesale when the table changes."""

    table: TableSchema
    stream: Stream
    key_converter: DatumConverter
    value_converter: DatumConverter
    sql_table: sa.FromClause
    time_cursor: bool  # the first cursor column is a timestamp/date (so the safety delay applies)


class TableReader:
    def __init__(self, entry: TableEntry, config: QuerySourceConfig, app: str, dialect: str) -> None:
        self.entry = entry
        self.config = config
        self.app = app
        self.dialect = dialect
        self.cursor_columns = list(entry.cursor or config.cursor)
        self.schema_name: str | None = None
        self.table_name = entry.table.rpartition(".")[2] if entry.table else str(entry.name)
        if entry.table and "." in entry.table:
            self.schema_name = entry.table.rpartition(".")[0]
        self.shape: Shape | None = None

    @property
    def name(self) -> str:
        """The stream's name in positions: stable across restarts."""
        return self.entry.name or str(self.entry.table)

    # -- reflection ---------------------------------------------------------------------------------

    def reflect(self, conn: sa.Connection) -> bool:
        """(Re)read the table's shape; True when it differs from what was known."""
        inspector = sa.inspect(conn)
        schema = self.schema_name or inspector.default_schema_name
        if self.entry.query is not None:
            table = _reflect_query(conn, self.entry.query, self.table_name, self.entry.key or [], schema)
            sql_table: sa.FromClause = (
                sa.text(self.entry.query).columns(*(sa.column(c.name) for c in table.columns)).subquery("q")
            )
        else:
            table = reflect_table(conn, schema, self.table_name, self.entry.key)
            sql_table = sa.table(self.table_name, *(sa.column(c.name) for c in table.columns), schema=schema)
        if self.entry.exclude:
            missing = set(self.entry.exclude) - {c.name for c in table.columns}
            if missing:
                raise SchemaError(f"{table.qualified_name}: exclude names unknown columns {sorted(missing)}")
            kept = tuple(c for c in table.columns if c.name not in self.entry.exclude)
            table = TableSchema(table.schema, table.name, kept, table.key)
        for column in self.cursor_columns:
            if column not in {c.name for c in table.columns}:
                raise SchemaError(
                    f"{table.qualified_name} has no cursor column {column!r}; set `cursor:` for this table"
                )
        first = table.column(self.cursor_columns[0]).type
        if not isinstance(first, TimestampType | DateType | IntType | DecimalType):
            raise SchemaError(
                f"{table.qualified_name}.{self.cursor_columns[0]} cannot be a cursor: it must be a timestamp, "
                "a date or an increasing number"
            )
        if self.shape is not None and self.shape.table == table:
            return False
        namespace = namespace_for(self.app, self.config.name, schema or "", self.table_name)
        topic = self.config.topic if self.entry.topic is None else self.entry.topic
        topic = _TOPIC_UNSAFE.sub(
            "_",
            topic.format(source=self.config.name, app=self.app, schema=schema or "", table=self.table_name),
        )
        stream = Stream(topic, key_schema(table, namespace), value_schema(table, namespace), table.qualified_name)
        self.shape = Shape(
            table=table,
            stream=stream,
            key_converter=DatumConverter(table, table.key_columns),
            value_converter=DatumConverter(table, table.columns),
            sql_table=sql_table,
            time_cursor=isinstance(first, TimestampType | DateType),
        )
        return True

    # -- reads ------------------------------------------------------------------------------------

    def _cursor_exprs(self) -> list[sa.ColumnElement[Any]]:
        assert self.shape is not None
        cols = self.shape.sql_table.c
        exprs: list[sa.ColumnElement[Any]] = []
        for index, name in enumerate(self.cursor_columns):
            expr: sa.ColumnElement[Any] = cols[name]
            if self.dialect == "sqlite" and index == 0 and self.shape.time_cursor:
                # SQLite keeps timestamps as text and compares text: compare and store the raw text.
                expr = sa.type_coerce(expr, sa.String)
            exprs.append(expr)
        return exprs

    def _select(self) -> sa.Select[Any]:
        assert self.shape is not None
        cols = self.shape.sql_table.c
        cursor_labels = [expr.label(f"_lib_c{i}") for i, expr in enumerate(self._cursor_exprs())]
        return sa.select(*(cols[c.name] for c in self.shape.table.columns), *cursor_labels)

    def cursor_of(self, row: sa.Row[Any]) -> tuple[object, ...]:
        mapping = row._mapping
        return tuple(mapping[f"_lib_c{i}"] for i in range(len(self.cursor_columns)))

    def key_of(self, row: sa.Row[Any]) -> tuple[object, ...]:
        assert self.shape is not None
        return tuple(row._mapping[k] for k in self.shape.table.key)

    def rows_after(
        self, conn: sa.Connection, after: Sequence[object] | None, upper: object | None, limit: int
    ) -> Iterator[sa.Row[Any]]:
        """Rows in cursor order after `after`, up to `upper`, a page of `limit` at a time (keyset, no OFFSET)."""
        exprs = self._cursor_exprs()
        while True:
            query = self._select().where(exprs[0].is_not(None))
            if after is not None:
                query = query.where(sa.tuple_(*exprs) > sa.tuple_(*(sa.literal(v) for v in after)))
            if upper is not None:
                query = query.where(exprs[0] <= sa.literal(upper))
            rows = conn.execute(query.order_by(*exprs).limit(limit)).all()
            yield from rows
            if len(rows) < limit:
                return
            after = self.cursor_of(rows[-1])

    def null_cursor_rows_after(
        self, conn: sa.Connection, after: Sequence[object] | None, limit: int
    ) -> list[sa.Row[Any]]:
        """One page, in key order, of rows whose timestamp is NULL (legacy rows never stamped)."""
        assert self.shape is not None
        cols = self.shape.sql_table.c
        keys = [cols[k] for k in self.shape.table.key]
        query = self._select().where(self._cursor_exprs()[0].is_(None))
        if after is not None:
            query = query.where(sa.tuple_(*keys) > sa.tuple_(*(sa.literal(v) for v in after)))
        return list(conn.execute(query.order_by(*keys).limit(limit)).all())

    def cursor_nullable(self) -> bool:
        assert self.shape is not None
        return self.shape.table.column(self.cursor_columns[0]).nullable


def _reflect_query(conn: sa.Connection, query: str, name: str, key: list[str], schema: str | None) -> TableSchema:
    """Type a SELECT's result by giving it an empty temporary home the dialect can reflect.

    Views keep the source columns' declared types on PostgreSQL and SQLite; MySQL has no temporary
    views, so a temporary table created from the query with no rows stands in.
    """
    dialect = conn.dialect.name
    temp = f"liberator_shape_{re.sub(r'[^A-Za-z0-9_]', '_', name)}"
    body = f"SELECT * FROM ({query}) AS liberator_q"
    if dialect == "postgresql":
        conn.execute(sa.text(f'CREATE OR REPLACE TEMPORARY VIEW "{temp}" AS {body}'))
        temp_schema = conn.execute(sa.text("SELECT nspname FROM pg_namespace WHERE oid = pg_my_temp_schema()")).scalar()
        table = reflect_table(conn, str(temp_schema), temp, key)
        conn.execute(sa.text(f'DROP VIEW IF EXISTS "{temp}"'))
    elif dialect == "sqlite":
        conn.execute(sa.text(f'DROP VIEW IF EXISTS temp."{temp}"'))
        conn.execute(sa.text(f'CREATE TEMPORARY VIEW "{temp}" AS {body}'))
        table = reflect_table(conn, "temp", temp, key)
        conn.execute(sa.text(f'DROP VIEW IF EXISTS temp."{temp}"'))
    elif dialect in ("mysql", "mariadb"):
        conn.execute(sa.text(f"DROP TEMPORARY TABLE IF EXISTS `{temp}`"))
        conn.execute(sa.text(f"CREATE TEMPORARY TABLE `{temp}` AS {body} LIMIT 0"))
        table = reflect_table(conn, None, temp, key)
        conn.execute(sa.text(f"DROP TEMPORARY TABLE IF EXISTS `{temp}`"))
    else:
        raise SchemaError(
            f"query {name}: typing a query is not supported on {dialect}; create a view and list it in `tables:`"
        )
    columns = tuple(c if c.name not in key else type(c)(c.name, c.type, False, c.db_type) for c in table.columns)
    return TableSchema(schema, name, columns, tuple(key))
