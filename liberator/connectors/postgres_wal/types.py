"""PostgreSQL types (OID + typmod) -> the neutral column model, and their text output -> Python values.

Values arrive as the server's text output, both from pgoutput and from the snapshot (read as text with the
same session settings, connection.SESSION_OPTIONS), so one parser per column serves both. The neutral
types are those `liberator.sqltypes` gives the query source, so a column gets the same Avro either way.
Extras the WAL source can carry exactly: money (decimal(19, 2), read with lc_monetary=C), geometric types,
pg_lsn, tid, reg* and other types whose text is canonical (TextRepr). docs/types.md lists them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import psycopg

from liberator.avro import parse_pg_array, parse_pg_interval
from liberator.errors import SchemaError
from liberator.schema import (
    ArrayType,
    BitsType,
    BoolType,
    BytesType,
    ColumnType,
    DateType,
    DecimalType,
    EnumType,
    FloatType,
    IntervalType,
    IntType,
    JsonType,
    StringType,
    TextRepr,
    TimestampType,
    TimeType,
    UuidType,
)


def unmappable(table: str, column: str, type_name: str) -> SchemaError:
    return SchemaError(
        f"table {table} column {column}: type {type_name} has no exact Avro mapping; leave the column out with "
        f"`exclude: {{{table}: [{column}]}}`"
    )


# text -> Python value; None where the text is the value already (strings, JSON, enums, bits, TextRepr).
Parse = Callable[[str], Any]
Parser = Parse | None

_FIXED: dict[str, ColumnType] = {
    "int2": IntType(16),
    "int4": IntType(32),
    "int8": IntType(64),
    "oid": IntType(32, unsigned=True),
    "xid": IntType(32, unsigned=True),
    "cid": IntType(32, unsigned=True),
    "xid8": IntType(64, unsigned=True),
    "float4": FloatType(32),
    "float8": FloatType(64),
    "bool": BoolType(),
    "text": StringType(),
    "name": StringType(),
    "citext": StringType(),
    "char": StringType(1, fixed=True),  # the one-byte "char"
    "bytea": BytesType(),
    "date": DateType(),
    "uuid": UuidType(),
    "json": JsonType(),
    "jsonb": JsonType(),
    "interval": IntervalType(),
    "money": DecimalType(19, 2),
}

# Types whose canonical text is exact and is carried as is, marked with the type's name.
_TEXT_KINDS = frozenset(
    [
        "inet",
        "cidr",
        "macaddr",
        "macaddr8",
        "tsvector",
        "tsquery",
        "xml",
        "point",
        "line",
        "lseg",
        "box",
        "path",
        "polygon",
        "circle",
        "pg_lsn",
        "tid",
        "jsonpath",
        "txid_snapshot",
        "pg_snapshot",
        "regclass",
        "regconfig",
        "regproc",
        "regprocedure",
        "regoper",
        "regoperator",
        "regtype",
        "regrole",
        "regnamespace",
        "regcollation",
        "regdictionary",
    ]
)

_TIME_PRECISION = {"time", "timetz", "timestamp", "timestamptz"}


@dataclass(frozen=True)
class TypeInfo:
    oid: int
    name: str
    namespace: str
    kind: str  # typtype: b base, e enum, d domain, r range, m multirange, c composite, p pseudo
    category: str  # typcategory: A array, ...
    element: int  # typelem
    delimiter: str
    base: int  # typbasetype (domains)
    base_typmod: int  # typtypmod (domains)
    labels: tuple[str, ...]  # enum labels in sort order


class InfinityPolicy:
    """What `infinity` / `-infinity` dates and timestamps become (config `infinity`)."""

    def __init__(self, mode: str) -> None:
        self.clamp = mode == "clamp"

    def value(self, text: str, high: Any, low: Any, label: str) -> Any:
        if not self.clamp:
            raise ValueError(f"{label} {text!r} has no Avro value; set `infinity: clamp` to map it to {high}")
        return high if text == "infinity" else low


def _numeric_typmod(typmod: int) -> tuple[int, int] | None:
    if typmod < 4:
        return None
    value = typmod - 4
    scale = ((value & 0x7FF) ^ 1024) - 1024  # PostgreSQL 15 allows negative scales
    return (value >> 16) & 0xFFFF, scale


def _money(text: str) -> Decimal:
    # lc_monetary=C prints "-$1,234.56": two places, '$', ',' groups
    return Decimal(text.replace("$", "").replace(",", ""))


def _bool(text: str) -> bool:
    return text == "t"


def _bytea(text: str) -> bytes:
    if not text.startswith("\\x"):
        raise ValueError(f"bytea {text[:20]!r} is not in hex format")
    return bytes.fromhex(text[2:])


def _no_bc(text: str, label: str) -> None:
    if text.endswith(" BC"):
        raise ValueError(f"{label} {text!r} is before year 1, which Avro readers cannot hold")


def date_parser(policy: InfinityPolicy) -> Parse:
    def parse(text: str) -> dt.date:
        if text.endswith("infinity"):
            return policy.value(text, dt.date.max, dt.date.min, "date")  # type: ignore[no-any-return]
        _no_bc(text, "date")
        return dt.date.fromisoformat(text)

    return parse


def timestamp_parser(policy: InfinityPolicy, aware: bool) -> Parse:
    high = dt.datetime.max.replace(tzinfo=dt.UTC) if aware else dt.datetime.max
    low = dt.datetime.min.replace(tzinfo=dt.UTC) if aware else dt.datetime.min

    def parse(text: str) -> dt.datetime:
        if text.endswith("infinity"):
            return policy.value(text, high, low, "timestamp")  # type: ignore[no-any-return]
        _no_bc(text, "timestamp")
        return dt.datetime.fromisoformat(text)

    return parse


def _time(text: str) -> dt.time:
    return dt.time.fromisoformat(text)


def _timetz(text: str) -> str:
    return dt.time.fromisoformat(text).isoformat()  # "12:30:00.25+02" -> "12:30:00.250000+02:00"


def array_parser(item: Parser) -> Parse:
    def parse(text: str) -> list[Any]:
        items = parse_pg_array(text)
        if item is None:
            return items
        return [None if v is None else item(v) for v in items]

    return parse


class TypeCatalog:
    """Looks types up in pg_type (cached by OID) and maps them; one per catalog connection."""

    def __init__(self, conn: psycopg.Connection[Any], infinity: str) -> None:
        self.conn = conn
        self.policy = InfinityPolicy(infinity)
        self._info: dict[int, TypeInfo] = {}

    def info(self, oid: int) -> TypeInfo:
        found = self._info.get(oid)
        if found is None:
            row = self.conn.execute(
                "SELECT t.typname, n.nspname, t.typtype, t.typcategory, t.typelem, t.typdelim, t.typbasetype,"
                " t.typtypmod, CASE WHEN t.typtype = 'e' THEN ARRAY(SELECT e.enumlabel::text FROM pg_enum e"
                " WHERE e.enumtypid = t.oid ORDER BY e.enumsortorder) END"
                " FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE t.oid = %s",
                (oid,),
            ).fetchone()
            if row is None:
                raise KeyError(oid)
            found = TypeInfo(oid, row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], tuple(row[8] or ()))
            self._info[oid] = found
        return found

    def forget(self) -> None:
        """Enum labels may have grown: look types up again (on every Relation message)."""
        self._info.clear()

    def column(self, oid: int, typmod: int, table: str, column: str, label: str) -> tuple[ColumnType, Parser]:
        """The neutral type and text parser of a column; SchemaError (one line, with the fix) if none is exact."""
        info = self.info(oid)
        if info.kind == "d":
            return self.column(info.base, info.base_typmod, table, column, label)
        if info.category == "A" and info.element:
            element = self.info(info.element)
            if element.delimiter != ",":
                raise unmappable(table, column, label)
            item, parse_item = self.column(info.element, typmod, table, column, label)
            if isinstance(item, ArrayType):  # pragma: no cover - PostgreSQL has no arrays of arrays
                raise unmappable(table, column, label)
            return ArrayType(item), array_parser(parse_item)
        if info.kind == "e":
            return EnumType(info.labels, info.name), None
        if info.kind in ("r", "m"):
            return TextRepr(info.name), None
        if info.kind != "b":
            raise unmappable(table, column, label)  # composite, pseudo types
        return self._base(info.name, typmod, table, column, label)

    def _base(self, name: str, typmod: int, table: str, column: str, label: str) -> tuple[ColumnType, Parser]:
        if name in _FIXED:
            ctype = _FIXED[name]
            return ctype, _FIXED_PARSERS.get(name, _parser_for(ctype, self.policy))
        if name == "numeric":
            mod = _numeric_typmod(typmod)
            return (DecimalType(None, None) if mod is None else DecimalType(*mod)), Decimal
        if name in ("varchar", "bpchar"):
            return StringType(typmod - 4 if typmod >= 4 else None, fixed=name == "bpchar"), None
        if name in ("bit", "varbit"):
            length = typmod if typmod >= 0 else (0 if name == "varbit" else 1)
            return BitsType(length, varying=name == "varbit"), None
        if name in _TIME_PRECISION:
            precision = typmod if typmod >= 0 else 6
            if name == "time":
                return TimeType(precision), _time
            if name == "timetz":
                return TimeType(precision, with_timezone=True), _timetz
            aware = name == "timestamptz"
            return TimestampType(precision, with_timezone=aware), timestamp_parser(self.policy, aware)
        if name in _TEXT_KINDS:
            return TextRepr(name), None
        raise unmappable(table, column, label)


_FIXED_PARSERS: dict[str, Parser] = {
    "int2": int,
    "int4": int,
    "int8": int,
    "oid": int,
    "xid": int,
    "cid": int,
    "xid8": int,
    "float4": float,
    "float8": float,
    "bool": _bool,
    "bytea": _bytea,
    "interval": parse_pg_interval,
    "money": _money,
}


def _parser_for(ctype: ColumnType, policy: InfinityPolicy) -> Parser:
    if isinstance(ctype, DateType):
        return date_parser(policy)
    return None  # text, json, uuid: the text is the value
