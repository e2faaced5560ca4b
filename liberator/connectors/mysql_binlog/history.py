"""Table schema history: the captured tables' shapes, valid at a binlog position.

The history travels inside every position (see position.py), so it is stored with the offsets and cannot be
lost separately from them: a restart in the middle of the binlog decodes old events with the shapes valid
there, not with what `information_schema` says today. Entries are immutable and shared between positions,
so the many positions in flight cost one tuple each, not one copy of the history each.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ColumnSpec:
    """One column as liberator understands it, from `information_schema` or from a TableMapEvent."""

    name: str
    # int float decimal string bytes binary date datetime timestamp time year enum set bit geometry uuid, and
    # json (MariaDB: LONGTEXT with a json_valid check) or mysqljson (MySQL's binary JSON type)
    kind: str
    nullable: bool
    unsigned: bool = False
    size: int = 0  # int and float bits, BIT length, BINARY(n) length, fractional-second digits
    precision: int = 0  # DECIMAL
    scale: int = 0
    symbols: tuple[str, ...] = ()  # ENUM values, SET members
    db_type: str = ""

    @property
    def wire(self) -> tuple[Any, ...]:
        """What a TableMapEvent can tell about the column: equal for a matching information_schema row."""
        kind = self.kind
        if kind == "json":  # MariaDB JSON is LONGTEXT in the binlog
            kind = "string"
        if kind == "uuid":  # MariaDB UUID is BINARY(16) in the binlog
            kind = "binary"
        size = 16 if self.kind == "uuid" else self.size
        if kind in ("string", "bytes", "geometry", "mysqljson", "date", "year", "enum", "set"):
            size = 0
        unsigned = self.unsigned if kind == "int" else False
        return (self.name, kind, self.nullable, unsigned, size, self.precision, self.scale, self.symbols)

    def to_json(self) -> list[Any]:
        return [
            self.name,
            self.kind,
            self.nullable,
            self.unsigned,
            self.size,
            self.precision,
            self.scale,
            list(self.symbols),
            self.db_type,
        ]

    @classmethod
    def from_json(cls, data: list[Any]) -> ColumnSpec:
        name, kind, nullable, unsigned, size, precision, scale, symbols, db_type = data
        return cls(
            str(name),
            str(kind),
            bool(nullable),
            bool(unsigned),
            int(size),
            int(precision),
            int(scale),
            tuple(str(s) for s in symbols),
            str(db_type),
        )


@dataclass(frozen=True)
class TableDef:
    """A captured table's columns and primary key at some point of the binlog."""

    database: str
    table: str
    columns: tuple[ColumnSpec, ...]
    key: tuple[str, ...]
    # Where the shape came from: "info" (information_schema, matching the binlog) or "binlog" (the
    # TableMapEvent alone, when information_schema was already ahead of the event being read).
    origin: str = "info"
    signature: tuple[Any, ...] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "signature", (tuple(c.wire for c in self.columns), self.key))

    @property
    def qualified(self) -> str:
        return f"{self.database}.{self.table}"

    def to_json(self) -> dict[str, Any]:
        return {
            "database": self.database,
            "table": self.table,
            "columns": [c.to_json() for c in self.columns],
            "key": list(self.key),
            "origin": self.origin,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TableDef:
        return cls(
            str(data["database"]),
            str(data["table"]),
            tuple(ColumnSpec.from_json(c) for c in data["columns"]),
            tuple(str(k) for k in data["key"]),
            str(data.get("origin", "info")),
        )


@dataclass(frozen=True)
class SchemaHistory:
    """The shapes of the captured tables, by "db.table"; immutable, replaced by `with_table`/`without`."""

    tables: tuple[tuple[str, TableDef], ...] = ()

    def get(self, qualified: str) -> TableDef | None:
        for name, table in self.tables:
            if name == qualified:
                return table
        return None

    def with_table(self, table: TableDef) -> SchemaHistory:
        rest = tuple(item for item in self.tables if item[0] != table.qualified)
        return SchemaHistory(tuple(sorted((*rest, (table.qualified, table)), key=lambda item: item[0])))

    def without(self, qualified: str) -> SchemaHistory:
        return SchemaHistory(tuple(item for item in self.tables if item[0] != qualified))

    def to_json(self) -> list[Any]:
        return [table.to_json() for _name, table in self.tables]

    @classmethod
    def from_json(cls, data: list[Any]) -> SchemaHistory:
        tables = [TableDef.from_json(item) for item in data]
        return cls(tuple(sorted(((t.qualified, t) for t in tables), key=lambda item: item[0])))
