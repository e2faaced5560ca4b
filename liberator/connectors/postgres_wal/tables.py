"""Captured tables: which ones, and their shape from the catalog or a Relation message, with text parsers.

What is published of a shape (excluded columns, topic, schemas, versions) is the capture core's
`Catalogue`; this module only reads PostgreSQL's own description of a table and knows how to parse its
columns' text output."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from liberator.capture import CapturedTable, CaptureSettings, Catalogue
from liberator.capture.moves import TopicMoves
from liberator.connectors.postgres_wal.config import PostgresWalConfig
from liberator.connectors.postgres_wal.debezium import postgres_dialect
from liberator.connectors.postgres_wal.pgoutput import Relation, TupleValue
from liberator.connectors.postgres_wal.tuples import TupleReader, tuple_reader
from liberator.connectors.postgres_wal.types import Parser, TypeCatalog
from liberator.errors import SchemaError
from liberator.schema import Column, TableSchema


@dataclass(frozen=True)
class CatalogColumn:
    name: str
    type_oid: int
    typmod: int
    not_null: bool
    label: str  # format_type(): the type as PostgreSQL spells it


@dataclass
class TableState:
    """One captured table's published version and the parsers of its published columns' text."""

    captured: CapturedTable
    parsers: tuple[Parser, ...]
    relid: int
    reader: TupleReader  # the fast path of rows.parse_tuple for tuples of this shape (tuples.py)

    @property
    def name(self) -> str:
        return self.captured.name

    @property
    def table(self) -> TableSchema:
        return self.captured.shape

    @property
    def wire_index(self) -> tuple[int, ...] | None:
        """Streamed tuples carry every column; where columns are excluded, the places of those kept."""
        return self.captured.pick


def split_name(name: str) -> tuple[str, str]:
    schema, dot, table = name.rpartition(".")
    return (schema if dot else "public"), table


class TableCatalog:
    def __init__(
        self,
        conn: psycopg.Connection[Any],
        config: PostgresWalConfig,
        app: str,
        server: str,
        moves: TopicMoves | None = None,
    ) -> None:
        self.conn = conn
        self.config = config
        self.app = app
        self.server = server
        self.types = TypeCatalog(conn, config.infinity)
        settings = CaptureSettings(
            source=config.name,
            connector="postgres_wal",
            app=app,
            envelope=config.envelope,
            topic=config.topic,
            **config.capture_settings(),
            on_error=config.on_error,
            on_error_tables=config.on_error_tables,
            on_incompatible=config.on_incompatible,
            on_incompatible_tables=config.on_incompatible_tables,
            moves=moves,
            default_schema="public",
            truncate=config.truncate,
            debezium=postgres_dialect(conn.info.dbname),
            transactions=config.transaction_topic(),
        )
        self.captured = Catalogue(settings)
        self.captured.server = server

    # -- which tables ---------------------------------------------------------------------------------

    def resolve(self) -> list[str]:
        """Qualified names of the tables `tables:` names, in config order; SchemaError if one is missing."""
        found: list[str] = []
        for entry, matches in self._matches():
            if not matches:
                raise SchemaError(
                    f"source {self.config.name}: no table matches {entry!r} in the database; check `tables:` "
                    "(schema.table, patterns allowed)"
                )
            found += [m for m in matches if m not in found]
        return found

    def matching(self) -> list[str]:
        """The tables `tables:` names now, in config order; an entry matching none is no error here."""
        found: list[str] = []
        for _entry, matches in self._matches():
            found += [m for m in matches if m not in found]
        return found

    def _matches(self) -> list[tuple[str, list[str]]]:
        rows = self.conn.execute(
            "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
            " ORDER BY 1, 2"
        ).fetchall()
        existing = [f"{s}.{t}" for s, t in rows]
        out = []
        for entry in self.config.tables:
            schema, table = split_name(entry)
            pattern = f"{schema}.{table}"
            out.append((entry, [name for name in existing if fnmatch.fnmatchcase(name, pattern)]))
        return out

    def has_row(self, state: TableState, wire: Sequence[TupleValue]) -> bool:
        """Whether the live table holds a row with the key of this streamed tuple (the server's text values)."""
        table = state.table
        columns = range(len(wire)) if state.wire_index is None else state.wire_index
        texts = [wire[columns[i]] for i in state.captured.key_index]
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
        excluded = set(self.captured.excluded(schema, table))
        neutral: list[Column] = []
        parsers: list[Parser] = []
        for col in columns:
            if col.name in excluded:  # its type need not map: it is never published
                ctype: Any = None
                parser: Parser = None
            else:
                ctype, parser = self.types.column(col.type_oid, col.typmod, name, col.name, col.label)
            neutral.append(Column(col.name, ctype, nullable=not col.not_null, db_type=col.label))
            parsers.append(parser)
        captured = self.captured.table(TableSchema(schema=schema, name=table, columns=tuple(neutral), key=key))
        pick = captured.pick
        kept = tuple(parsers) if pick is None else tuple(parsers[i] for i in pick)
        return TableState(captured, kept, relid, tuple_reader(kept, pick, len(columns)))
