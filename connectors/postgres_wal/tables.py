"""Captured tables: which ones, their shape (from the catalog or a Relation message) and their streams."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from connectors.postgres_wal.config import PostgresWalConfig
from connectors.postgres_wal.pgoutput import Relation, TupleValue
from connectors.postgres_wal.types import Parser, TypeCatalog
from liberator.avro import DatumConverter, key_schema, namespace_for, value_schema
from liberator.envelope import Envelope, SourceInfo, change_schema
from liberator.errors import SchemaError
from liberator.events import Stream
from liberator.schema import Column, TableSchema

_TOPIC_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True)
class CatalogColumn:
    name: str
    type_oid: int
    typmod: int
    not_null: bool
    label: str  # format_type(): the type as PostgreSQL spells it


@dataclass
class TableState:
    """Everything needed to turn one table's tuples into events; replaced when the table's shape changes."""

    table: TableSchema
    stream: Stream
    parsers: tuple[Parser, ...]
    key_index: tuple[int, ...]  # where the key columns are in the column order
    value_converter: DatumConverter
    key_converter: DatumConverter
    info: SourceInfo
    relid: int
    # Streamed tuples carry every column; where columns are excluded, the places of those kept.
    wire_index: tuple[int, ...] | None = None

    @property
    def name(self) -> str:
        return self.table.qualified_name


def split_name(name: str) -> tuple[str, str]:
    schema, dot, table = name.rpartition(".")
    return (schema if dot else "public"), table


class TableCatalog:
    def __init__(self, conn: psycopg.Connection[Any], config: PostgresWalConfig, app: str, server: str) -> None:
        self.conn = conn
        self.config = config
        self.app = app
        self.server = server
        self.types = TypeCatalog(conn, config.infinity)
        self._states: dict[str, TableState] = {}

    # -- which tables ---------------------------------------------------------------------------------

    def resolve(self) -> list[str]:
        """Qualified names of the tables `tables:` names, in config order; SchemaError if one is missing."""
        rows = self.conn.execute(
            "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
            " ORDER BY 1, 2"
        ).fetchall()
        existing = [f"{s}.{t}" for s, t in rows]
        found: list[str] = []
        for entry in self.config.tables:
            schema, table = split_name(entry)
            pattern = f"{schema}.{table}"
            matches = [name for name in existing if fnmatch.fnmatchcase(name, pattern)]
            if not matches:
                raise SchemaError(
                    f"source {self.config.name}: no table matches {entry!r} in the database; check `tables:` "
                    "(schema.table, patterns allowed)"
                )
            found += [m for m in matches if m not in found]
        return found

    def has_row(self, state: TableState, wire: Sequence[TupleValue]) -> bool:
        """Whether the live table holds a row with the key of this streamed tuple (the server's text values)."""
        table = state.table
        columns = range(len(wire)) if state.wire_index is None else state.wire_index
        texts = [wire[columns[i]] for i in state.key_index]
        condition = sql.SQL(" AND ").join(
            sql.SQL("{} = %s::" + table.column(k).db_type).format(sql.Identifier(k)) for k in table.key
        )
        query = sql.SQL("SELECT 1 FROM {} WHERE {} LIMIT 1").format(sql.Identifier(*split_name(state.name)), condition)
        try:
            return self.conn.execute(query, texts).fetchone() is not None
        except psycopg.errors.UndefinedTable:
            return False  # dropped since: its rows are gone

    # -- shapes ---------------------------------------------------------------------------------------

    def catalog_columns(self, name: str) -> tuple[int, list[CatalogColumn], tuple[str, ...], str]:
        """(relid, columns, primary key, replica identity) as the catalog has them now."""
        schema, table = split_name(name)
        row = self.conn.execute(
            "SELECT c.oid, c.relreplident FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relname = %s",
            (schema, table),
        ).fetchone()
        if row is None:
            raise SchemaError(f"table {name} not found; check `tables:`")
        relid, identity = int(row[0]), str(row[1])
        columns = [
            CatalogColumn(r[0], int(r[1]), int(r[2]), bool(r[3]), r[4])
            for r in self.conn.execute(
                "SELECT attname, atttypid, atttypmod, attnotnull, format_type(atttypid, atttypmod)"
                " FROM pg_attribute WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
                (relid,),
            ).fetchall()
        ]
        key = tuple(
            r[0]
            for r in self.conn.execute(
                "SELECT a.attname FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY k(attnum, n)"
                " JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum"
                " WHERE i.indrelid = %s AND i.indisprimary ORDER BY k.n",
                (relid,),
            ).fetchall()
        )
        return relid, columns, key, identity

    def _excluded(self, name: str) -> list[str]:
        schema, table = split_name(name)
        return self.config.exclude.get(name) or self.config.exclude.get(table if schema == "public" else name) or []

    def from_catalog(self, name: str) -> TableState:
        relid, columns, key, _identity = self.catalog_columns(name)
        return self._state(name, relid, columns, key)

    def from_relation(self, relation: Relation) -> TableState:
        """The table as a Relation message describes it (the shape at that point of the WAL)."""
        name = f"{relation.namespace}.{relation.name}"
        self.types.forget()
        _relid, now, key, _identity = self.catalog_columns(name)
        by_name = {c.name: c for c in now}
        columns = []
        for col in relation.columns:
            current = by_name.get(col.name)
            if current is not None and (current.type_oid, current.typmod) == (col.type_oid, col.typmod):
                columns.append(current)
            else:  # changed or dropped since: the message's type, nullable (the catalog cannot say)
                label = str(self.conn.execute("SELECT format_type(%s, %s)", (col.type_oid, col.typmod)).fetchone()[0])  # type: ignore[index]
                columns.append(CatalogColumn(col.name, col.type_oid, col.typmod, False, label))
        return self._state(name, relation.relid, columns, key)

    def _state(self, name: str, relid: int, columns: Sequence[CatalogColumn], key: tuple[str, ...]) -> TableState:
        schema, table = split_name(name)
        if not key:
            raise SchemaError(
                f"table {name} has no primary key; add one (ALTER TABLE {name} ADD PRIMARY KEY (...)) so its "
                "events have a key"
            )
        excluded = set(self._excluded(name))
        unknown = excluded - {c.name for c in columns}
        if unknown:
            raise SchemaError(f"table {name}: `exclude` names unknown columns {sorted(unknown)}")
        if excluded & set(key):
            raise SchemaError(f"table {name}: key columns cannot be excluded ({sorted(excluded & set(key))})")
        wire_index = tuple(i for i, c in enumerate(columns) if c.name not in excluded) if excluded else None
        columns = [c for c in columns if c.name not in excluded]
        neutral: list[Column] = []
        parsers: list[Parser] = []
        for col in columns:
            ctype, parser = self.types.column(col.type_oid, col.typmod, name, col.name, col.label)
            nullable = not col.not_null
            neutral.append(Column(col.name, ctype, nullable=nullable, db_type=col.label))
            parsers.append(parser)
        names = [c.name for c in neutral]
        missing = [k for k in key if k not in names]
        if missing:
            raise SchemaError(f"table {name}: key column(s) {', '.join(missing)} are not in the replicated columns")
        shape = TableSchema(schema=schema, name=table, columns=tuple(neutral), key=key)
        known = self._states.get(name)
        if known is not None and known.table == shape:
            known.relid = relid
            known.wire_index = wire_index
            return known
        namespace = namespace_for(self.app, self.config.name, schema, table)
        value = value_schema(shape, namespace)
        if self.config.envelope == Envelope.change:
            value = change_schema(value)
        topic = _TOPIC_UNSAFE.sub(
            "_", self.config.topic.format(source=self.config.name, app=self.app, schema=schema, table=table)
        )
        state = TableState(
            table=shape,
            stream=Stream(topic, key_schema(shape, namespace), value, name),
            parsers=tuple(parsers),
            key_index=tuple(names.index(k) for k in key),
            value_converter=DatumConverter(shape),
            key_converter=DatumConverter.for_key(shape),
            info=SourceInfo("postgres_wal", self.config.name, self.server, schema, table),
            relid=relid,
            wire_index=wire_index,
        )
        self._states[name] = state
        return state
