"""A captured table as the source publishes it: its TableDef, Avro stream, converters; and catalog reads."""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from typing import Any

from connectors.mysql_binlog.config import MySQLBinlogConfig
from connectors.mysql_binlog.history import TableDef
from connectors.mysql_binlog.types import INFO_COLUMNS, Normalize, normalizer, spec_from_info, table_schema
from liberator.avro import DatumConverter, key_schema, namespace_for, value_schema
from liberator.envelope import Envelope, SourceInfo, change_schema
from liberator.errors import SchemaError
from liberator.events import Stream
from liberator.schema import TableSchema

_TOPIC_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True, eq=False)
class Shape:
    table: TableDef
    schema: TableSchema
    stream: Stream
    info: SourceInfo
    key: DatumConverter
    value: DatumConverter
    names: tuple[str, ...]  # column names in order
    fixes: tuple[tuple[int, Normalize], ...]  # (column index, normalizer) for columns that need one
    key_indexes: tuple[int, ...]
    set_columns: tuple[str, ...]  # SET columns: the binlog reads an empty set as None

    def values(self, row: dict[str, Any], none_sources: dict[str, str] | None = None) -> list[Any]:
        """A binlog row (column name -> value) as values in column order, normalised."""
        values = [row[name] for name in self.names]
        if self.set_columns and none_sources:
            for name in self.set_columns:
                if none_sources.get(name) == "empty set":
                    values[self.names.index(name)] = ()
        for index, fix in self.fixes:
            if values[index] is not None:
                values[index] = fix(values[index])
        return values

    def normalise(self, values: list[Any]) -> list[Any]:
        for index, fix in self.fixes:
            if values[index] is not None:
                values[index] = fix(values[index])
        return values

    def key_of(self, values: list[Any]) -> tuple[object, ...]:
        return tuple(values[i] for i in self.key_indexes)


def topic_name(config: MySQLBinlogConfig, app: str, database: str, table: str) -> str:
    return _TOPIC_UNSAFE.sub("_", config.topic.format(source=config.name, app=app, schema=database, table=table))


def build_shape(table: TableDef, config: MySQLBinlogConfig, app: str, server: str) -> Shape:
    if not table.key:
        raise SchemaError(f"table {table.qualified} has no primary key; add one or leave the table out of `tables`")
    try:
        schema = table_schema(table)
    except SchemaError as exc:
        raise SchemaError(f"table {table.qualified} {exc}; leave the table out of `tables`") from None
    namespace = namespace_for(app, config.name, table.database, table.table)
    topic = topic_name(config, app, table.database, table.table)
    value = value_schema(schema, namespace)
    if config.envelope is Envelope.change:
        value = change_schema(value)
    stream = Stream(topic, key_schema(schema, namespace), value, table.qualified)
    names = tuple(c.name for c in table.columns)
    fixes = tuple((i, fix) for i, spec in enumerate(table.columns) if (fix := normalizer(spec)) is not None)
    return Shape(
        table=table,
        schema=schema,
        stream=stream,
        info=SourceInfo("mysql_binlog", config.name, server, table.database, table.table),
        key=DatumConverter.for_key(schema),
        value=DatumConverter(schema),
        names=names,
        fixes=fixes,
        key_indexes=tuple(names.index(k) for k in table.key),
        set_columns=tuple(c.name for c in table.columns if c.kind == "set"),
    )


# --- the catalog -------------------------------------------------------------------------------------

_JSON_CHECK = re.compile(r"json_valid\(`((?:[^`]|``)+)`\)")


def _base_tables(conn: Any) -> list[tuple[str, str]]:
    """Every base table the user may see, in name order."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES WHERE TABLE_TYPE = 'BASE TABLE' "
            "AND TABLE_SCHEMA NOT IN ('mysql', 'sys', 'performance_schema', 'information_schema') "
            "ORDER BY TABLE_SCHEMA, TABLE_NAME"
        )
        return [(str(db), str(t)) for db, t in cur.fetchall()]


def list_tables(conn: Any, config: MySQLBinlogConfig) -> list[tuple[str, str]]:
    """The base tables `tables` (and `future_tables`) select, in name order."""
    return [(db, t) for db, t in _base_tables(conn) if config.captures(db, t)]


def unmatched_problems(conn: Any, config: MySQLBinlogConfig) -> list[str]:
    """One line per `tables` entry that matches no table: a source capturing nothing is a config error."""
    names = [f"{db}.{t}" for db, t in _base_tables(conn)]
    return [
        f"source {config.name}: no table matches {entry!r} in the database; check `tables:` (database.table, "
        "patterns allowed) and that the user may see it (GRANT SELECT), or list it under `future_tables:` "
        "when its tables are created later"
        for entry in config.tables
        if not any(fnmatch.fnmatchcase(name, entry) for name in names)
    ]


def read_table_def(conn: Any, database: str, table: str, mysql: bool) -> TableDef | None:
    """A table's shape from information_schema now; None when it does not exist (any more)."""
    with conn.cursor() as cur:
        cur.execute(
            f"SELECT {INFO_COLUMNS} FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s "
            "ORDER BY ORDINAL_POSITION",
            (database, table),
        )
        rows = cur.fetchall()
        if not rows:
            return None
        json_columns: set[str] = set()
        if not mysql:
            cur.execute(
                "SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS "
                "WHERE CONSTRAINT_SCHEMA = %s AND TABLE_NAME = %s",
                (database, table),
            )
            json_columns = {
                m[1].replace("``", "`") for (clause,) in cur.fetchall() if (m := _JSON_CHECK.fullmatch(str(clause)))
            }
        cur.execute(
            "SELECT COLUMN_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s "
            "AND INDEX_NAME = 'PRIMARY' ORDER BY SEQ_IN_INDEX",
            (database, table),
        )
        key = tuple(str(k) for (k,) in cur.fetchall())
    try:
        specs = tuple(spec_from_info(row, json_columns, mysql) for row in rows)
    except SchemaError as exc:
        raise SchemaError(f"table {database}.{table} {exc}; leave the table out of `tables`") from None
    return TableDef(database, table, specs, key)
