"""Captured tables: which ones, their shape from information_schema, and how MySQL's values become published values.

What is published of a shape (excluded columns, topic, schemas, versions) is the capture core's `Catalogue`;
this module reads MySQL's own description of a table (`TableDef`, from information_schema or a TableMapEvent),
asks the catalogue for its published version, and keeps the MySQL-specific value rules (normalisers) for
the published columns.
"""

from __future__ import annotations

import fnmatch
import logging
import re
from typing import Any

from liberator.capture import CapturedTable, CaptureSettings, Catalogue
from liberator.capture.moves import TopicMoves
from liberator.connectors.mysql_binlog.config import MySQLBinlogConfig
from liberator.connectors.mysql_binlog.debezium import MYSQL
from liberator.connectors.mysql_binlog.history import TableDef
from liberator.connectors.mysql_binlog.types import INFO_COLUMNS, Normalize, normalizer, spec_from_info, table_schema
from liberator.errors import SchemaError

_EMPTY_SET = "empty set"  # mysql-replication's none source of a SET value with no member (it gives None)


class BinlogTable:
    """One captured table version as MySQL describes it (`table`) and as it is published (`captured`).

    `index` is the position of each published column among the table's columns, `fixes` the normalisers of
    the published values that need one (by place among them). The key's places among the published values
    are `captured.key_index`.
    """

    __slots__ = ("captured", "fixes", "index", "names", "published", "set_places", "table")

    def __init__(self, table: TableDef, captured: CapturedTable) -> None:
        self.table = table
        self.captured = captured
        names = [c.name for c in table.columns]
        self.names = tuple(names)
        self.published = captured.columns
        self.index = tuple(names.index(name) for name in self.published)
        specs = [table.columns[i] for i in self.index]
        self.fixes: tuple[tuple[int, Normalize], ...] = tuple(
            (place, fix) for place, spec in enumerate(specs) if (fix := normalizer(spec)) is not None
        )
        self.set_places = tuple(place for place, spec in enumerate(specs) if spec.kind == "set")

    @property
    def qualified(self) -> str:
        return self.table.qualified

    def from_binlog(self, row: dict[str, Any], none_sources: dict[str, str]) -> list[Any]:
        """A row as mysql-replication decodes it (column name -> value) as published values, normalised."""
        published = self.published
        values = [row[name] for name in published]
        for place in self.set_places:
            if values[place] is None and none_sources.get(published[place]) == _EMPTY_SET:
                values[place] = ()
        return self.normalise(values)

    def normalise(self, values: list[Any]) -> list[Any]:
        """Published values as a driver gave them (snapshot rows, binlog rows) brought to one form."""
        for place, fix in self.fixes:
            if values[place] is not None:
                values[place] = fix(values[place])
        return values

    def __repr__(self) -> str:
        return f"BinlogTable({self.captured!r})"


class TableCatalog:
    """The source's captured tables: TableDef -> BinlogTable, through the capture core's catalogue."""

    def __init__(
        self, config: MySQLBinlogConfig, app: str, log: logging.Logger, moves: TopicMoves | None = None
    ) -> None:
        self.config = config
        settings = CaptureSettings(
            source=config.name,
            connector="mysql_binlog",
            app=app,
            envelope=config.envelope,
            topic=config.topic,
            **config.capture_settings(),
            on_error=config.on_error,
            on_error_tables=config.on_error_tables,
            on_incompatible=config.on_incompatible,
            on_incompatible_tables=config.on_incompatible_tables,
            moves=moves,
            truncate=config.truncate,
            debezium=MYSQL,
            transactions=config.transaction_topic(),
        )
        self.catalogue = Catalogue(settings, log)
        self._tables: dict[TableDef, BinlogTable] = {}

    def set_server(self, server: str) -> None:
        """host:port, for the envelope's `source.server` of tables made from now on."""
        self.catalogue.server = server

    def topic_for(self, database: str, table: str) -> str:
        return self.catalogue.topic_for(database, table)

    def table(self, table: TableDef) -> BinlogTable:
        """The published version of this shape of a table (a new version when the published shape changed)."""
        known = self._tables.get(table)
        if known is not None and self.catalogue.get(table.qualified) is known.captured:
            return known
        try:
            schema = table_schema(table)
        except SchemaError as exc:
            raise SchemaError(f"table {table.qualified} {exc}; leave the table out of `tables`") from None
        captured = self.catalogue.table(schema)  # its errors name the table and the fix
        if len(self._tables) > 1000:  # old shapes of tables: made again if ever needed
            self._tables.clear()
        made = self._tables[table] = BinlogTable(table, captured)
        return made


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
