"""The neutral column model every connector maps its database types into.

Connectors never build Avro by hand: they describe a table as `TableSchema` made of these types, and
`liberator.avro` turns that into Avro schemas and encodable values. Sinks map the Avro back. Keeping one
model in the middle means every source gets the same narrow, exact representation of the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class IntType:
    bits: int = 32  # 8, 16, 24, 32 or 64
    unsigned: bool = False


@dataclass(frozen=True)
class FloatType:
    bits: int = 64  # 32 or 64


@dataclass(frozen=True)
class DecimalType:
    precision: int | None  # None: unconstrained (PostgreSQL numeric without typmod)
    scale: int | None


@dataclass(frozen=True)
class BoolType:
    pass


@dataclass(frozen=True)
class StringType:
    length: int | None = None
    fixed: bool = False  # CHAR(n)


@dataclass(frozen=True)
class BytesType:
    length: int | None = None
    fixed: bool = False  # BINARY(n)


@dataclass(frozen=True)
class DateType:
    pass


@dataclass(frozen=True)
class TimeType:
    precision: int = 6
    with_timezone: bool = False


@dataclass(frozen=True)
class DurationType:
    """A signed span of time to the microsecond: MySQL/MariaDB TIME (-838:59:59 to 838:59:59), which is not
    a time of day (values past 24 hours and below zero are legal)."""

    precision: int = 6


@dataclass(frozen=True)
class TimestampType:
    precision: int = 6
    with_timezone: bool = False  # False: a wall-clock value, read as UTC (documented)


@dataclass(frozen=True)
class IntervalType:
    pass


@dataclass(frozen=True)
class UuidType:
    pass


@dataclass(frozen=True)
class JsonType:
    pass


@dataclass(frozen=True)
class EnumType:
    symbols: tuple[str, ...]
    name: str | None = None  # the database's own type name, where it has one


@dataclass(frozen=True)
class SetType:
    """MySQL SET: a subset of named members."""

    members: tuple[str, ...]


@dataclass(frozen=True)
class BitsType:
    length: int
    varying: bool = False


@dataclass(frozen=True)
class ArrayType:
    item: ColumnType
    item_nullable: bool = True


@dataclass(frozen=True)
class TextRepr:
    """A type with no exact Avro counterpart whose canonical text form is exact (inet, macaddr, ranges).

    `kind` names the database type so consumers know how to parse the text; never used for unknown types.
    """

    kind: str


ColumnType = (
    IntType
    | FloatType
    | DecimalType
    | BoolType
    | StringType
    | BytesType
    | DateType
    | TimeType
    | DurationType
    | TimestampType
    | IntervalType
    | UuidType
    | JsonType
    | EnumType
    | SetType
    | BitsType
    | ArrayType
    | TextRepr
)


@dataclass(frozen=True)
class Column:
    name: str
    type: ColumnType
    nullable: bool = True
    # The database's own spelling of the type, kept for error messages, docs and sinks that recreate tables.
    db_type: str = ""


@dataclass(frozen=True)
class TableSchema:
    """One captured table (or query): its identity, columns in order and key columns."""

    schema: str | None  # database schema / MySQL database; None where the store has none (SQLite main)
    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    extras: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    @property
    def qualified_name(self) -> str:
        return f"{self.schema}.{self.name}" if self.schema else self.name

    def column(self, name: str) -> Column:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(name)

    @property
    def key_columns(self) -> tuple[Column, ...]:
        return tuple(self.column(name) for name in self.key)
