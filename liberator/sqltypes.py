"""SQLAlchemy column types, as reflected from PostgreSQL, MySQL/MariaDB and SQLite -> the neutral model.

Rules worth knowing (docs/types.md has the full table):

* MySQL ``TINYINT(1)`` (and so ``BOOL``/``BOOLEAN``, which MySQL stores as it) is an 8-bit integer, not a
  boolean: the column can hold -128..127 and legacy schemas do store other values in it.
* MySQL ``TIMESTAMP`` is stored in UTC and returned in the session time zone; it maps to a time-zone-aware
  timestamp, and connectors must read it with the session time zone set to UTC (``+00:00``) so the naive
  value the driver returns is the UTC instant. ``DATETIME`` is a wall-clock value (no time zone).
* MySQL ``TIME`` is a signed duration (-838:59:59 to 838:59:59), not a time of day: a `DurationType`.
* PostgreSQL ``timestamp with time zone`` is aware; ``timestamp`` (without) is a wall-clock value.
* SQLite stores every integer in 64 bits and every real in 64 bits, whatever the declared type; declared
  types are resolved by SQLAlchemy's affinity rules (``VARCHAR(20)`` -> string, ``NUMERIC(10,2)`` ->
  decimal, ``DATETIME`` -> timestamp, ``BOOLEAN`` -> boolean). A column with no declared type takes any
  value and has no exact mapping.
* MariaDB's ``JSON`` is an alias of ``LONGTEXT`` with a column check ``json_valid(`col`)``; reflection
  recognises exactly that check and maps the column to JSON (other LONGTEXT columns stay strings). Views
  and query results carry no check, so there such columns are strings holding the JSON text.
* Unknown types are never mapped to a string silently: `neutral_type` raises `SchemaError` telling the
  operator to exclude the column or cast it in a query.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy import types as sqltypes
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.dialects.postgresql.ranges import AbstractRange
from sqlalchemy.engine import Connection, Engine

from liberator.errors import SchemaError
from liberator.schema import (
    ArrayType,
    BitsType,
    BoolType,
    BytesType,
    Column,
    ColumnType,
    DateType,
    DecimalType,
    DurationType,
    EnumType,
    FloatType,
    IntervalType,
    IntType,
    JsonType,
    SetType,
    StringType,
    TableSchema,
    TextRepr,
    TimestampType,
    TimeType,
    UuidType,
)

_DIALECTS: dict[str, sa.engine.Dialect] = {
    "postgresql": postgresql.dialect(),  # type: ignore[no-untyped-call]
    "mysql": mysql.dialect(),
    "sqlite": sqlite.dialect(),
}

# PostgreSQL types whose canonical text is exact and that psycopg returns as str (or as objects whose
# str() is that text: ipaddress for inet/cidr, Range for ranges).
_PG_TEXT_TYPES: tuple[tuple[type[Any], str], ...] = (
    (postgresql.INET, "inet"),
    (postgresql.CIDR, "cidr"),
    (postgresql.MACADDR, "macaddr"),
    (postgresql.MACADDR8, "macaddr8"),
    (postgresql.TSVECTOR, "tsvector"),
    (postgresql.TSQUERY, "tsquery"),
    (postgresql.REGCLASS, "regclass"),
    (postgresql.REGCONFIG, "regconfig"),
)

# Types SQLAlchemy does not know, by the name its reflection warning gives, that still map exactly.
_UNRECOGNISED_BY_NAME: dict[str, ColumnType] = {
    "xml": TextRepr("xml"),
    "inet4": TextRepr("inet4"),  # MariaDB 10.10+
    "inet6": TextRepr("inet6"),  # MariaDB 10.5+
}

_MYSQL_INT_BITS: tuple[tuple[type[Any], int], ...] = (
    (mysql.TINYINT, 8),
    (mysql.SMALLINT, 16),
    (mysql.MEDIUMINT, 24),
    (mysql.BIGINT, 64),
    (mysql.INTEGER, 32),
)


def _dialect_family(dialect: str) -> str:
    return "mysql" if dialect in ("mysql", "mariadb") else dialect


def type_label(sa_type: Any, dialect: str) -> str:
    """The type as the dialect spells it in DDL ("NUMERIC(10, 2)"), or its class name if it cannot say."""
    try:
        return str(sa_type.compile(dialect=_DIALECTS[_dialect_family(dialect)]))
    except (sa_exc.CompileError, sa_exc.UnsupportedCompilationError, KeyError, AttributeError, TypeError):
        return type(sa_type).__name__.upper()


def unmappable(table: str, column: str, type_name: str) -> SchemaError:
    # the query source's own fields (the one source reading tables through this module)
    return SchemaError(
        f"table {table} column {column}: type {type_name} has no exact Avro mapping; leave the column out with "
        f"`tables: [{{table: {table}, exclude: [{column}]}}]` or cast it in a `query:` entry"
    )


def neutral_type(sa_type: Any, *, dialect: str, table: str, column: str, type_name: str = "") -> ColumnType:
    """The neutral type of a reflected column type; `type_name` names types SQLAlchemy did not recognise."""
    family = _dialect_family(dialect)
    mapped = _map(sa_type, family, table, column, type_name)
    if mapped is None:
        if isinstance(sa_type, sqltypes.NullType) and type_name.lower() in _UNRECOGNISED_BY_NAME:
            return _UNRECOGNISED_BY_NAME[type_name.lower()]
        if isinstance(sa_type, sqltypes.NullType):
            name = type_name.upper() if type_name else "(none declared)" if family == "sqlite" else "(unknown)"
        else:
            name = type_name.upper() if type_name else type_label(sa_type, family)
        raise unmappable(table, column, name)
    return mapped


def _map(t: Any, family: str, table: str, column: str, type_name: str) -> ColumnType | None:
    if isinstance(t, postgresql.DOMAIN):
        return neutral_type(t.data_type, dialect=family, table=table, column=column, type_name=type_name)
    if isinstance(t, sqltypes.ARRAY):
        item = neutral_type(t.item_type, dialect=family, table=table, column=column, type_name=type_name)
        return ArrayType(item)
    if isinstance(t, sqltypes.Enum):  # before String: Enum is one
        name = t.name if family == "postgresql" else None  # MySQL enums are inline and unnamed
        return EnumType(tuple(t.enums), name)
    if isinstance(t, mysql.SET):
        return SetType(tuple(t.values))
    if isinstance(t, mysql.YEAR):
        return IntType(16)
    if isinstance(t, postgresql.BIT):
        # bit varying without a limit has no length: 0 stands for "unlimited"
        return BitsType(t.length or (0 if t.varying else 1), varying=bool(t.varying))
    if isinstance(t, mysql.BIT):
        return BitsType(t.length or 1)
    if isinstance(t, sqltypes.Boolean):
        return BoolType()
    if isinstance(t, postgresql.OID):
        return IntType(32, unsigned=True)
    if isinstance(t, sqltypes.Integer):
        return _integer(t, family)
    if isinstance(t, sqltypes.Float):  # before Numeric: Float is one
        return FloatType(_float_bits(t, family))
    if isinstance(t, sqltypes.Numeric):
        if t.precision is None:
            return DecimalType(None, None)
        return DecimalType(t.precision, t.scale or 0)
    if isinstance(t, sqltypes.Uuid):
        return UuidType()
    if isinstance(t, sqltypes.JSON):
        return JsonType()
    if isinstance(t, sqltypes.Interval | postgresql.INTERVAL):
        return IntervalType()
    if isinstance(t, sqltypes.String):
        fixed = isinstance(t, sqltypes.CHAR | sqltypes.NCHAR)
        return StringType(t.length, fixed=fixed)
    if isinstance(t, sqltypes._Binary):
        return BytesType(t.length, fixed=isinstance(t, sqltypes.BINARY))
    if isinstance(t, sqltypes.DateTime):
        return _timestamp(t, family)
    if isinstance(t, sqltypes.Date):
        return DateType()
    if isinstance(t, sqltypes.Time):
        if family == "mysql":  # TIME is a signed duration there (-838:59:59 .. 838:59:59)
            return DurationType(getattr(t, "fsp", None) or 0)
        precision = getattr(t, "precision", None)
        return TimeType(6 if precision is None else precision, with_timezone=bool(t.timezone))
    for cls, kind in _PG_TEXT_TYPES:
        if isinstance(t, cls):
            return TextRepr(kind)
    if isinstance(t, AbstractRange):
        return TextRepr(type(t).__name__.lower())  # int4range, tstzmultirange, ...
    return None


def _integer(t: Any, family: str) -> IntType:
    if family == "sqlite":
        return IntType(64)  # SQLite integers are 64-bit whatever the declaration says
    unsigned = bool(getattr(t, "unsigned", False))
    if family == "mysql":
        for cls, bits in _MYSQL_INT_BITS:
            if isinstance(t, cls):
                return IntType(bits, unsigned)
    if isinstance(t, sqltypes.SmallInteger):
        return IntType(16, unsigned)
    if isinstance(t, sqltypes.BigInteger):
        return IntType(64, unsigned)
    return IntType(32, unsigned)


def _float_bits(t: Any, family: str) -> int:
    if family == "sqlite" or isinstance(t, sqltypes.Double):
        return 64
    if family == "mysql":
        return 32 if isinstance(t, mysql.FLOAT) else 64  # MySQL REAL is DOUBLE unless REAL_AS_FLOAT
    if isinstance(t, sqltypes.REAL):
        return 32  # PostgreSQL real is float4
    # float(p): p is binary digits; PostgreSQL's float without p is double precision
    return 32 if t.precision is not None and t.precision <= 24 else 64


def _timestamp(t: Any, family: str) -> TimestampType:
    if family == "mysql":
        fsp = getattr(t, "fsp", None)
        return TimestampType(fsp or 0, with_timezone=isinstance(t, sqltypes.TIMESTAMP))
    if family == "postgresql":
        precision = getattr(t, "precision", None)
        return TimestampType(6 if precision is None else precision, with_timezone=bool(t.timezone))
    return TimestampType(6, with_timezone=bool(t.timezone))


_UNRECOGNISED = re.compile(r"Did not recognize type '(?P<type>[^']*)' of (?:column )?'(?P<column>[^']*)'")


def reflect_table(
    bind: Engine | Connection, schema: str | None, table: str, key: Sequence[str] | None = None
) -> TableSchema:
    """The neutral description of a live table: columns in order, nullability, database types, key."""
    dialect = bind.dialect
    family = _dialect_family(dialect.name)
    inspector = sa.inspect(bind)
    if family == "sqlite" and schema == "main":
        schema = None
    resolved_schema = schema if schema is not None or family == "sqlite" else inspector.default_schema_name
    qualified = f"{resolved_schema}.{table}" if resolved_schema else table
    if family == "sqlite" and schema == "temp":
        # SQLAlchemy does not list SQLite's temp schema; unqualified lookups search it first
        schema = None
    if not inspector.has_table(table, schema=schema):
        raise SchemaError(
            f"table {qualified} not found in {_database_name(bind)}; check `tables:` (names are schema.table)"
        )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", sa_exc.SAWarning)
        reflected = inspector.get_columns(table, schema=schema)
    unrecognised: dict[str, str] = {}
    for warning in caught:
        match = _UNRECOGNISED.search(str(warning.message))
        if match:
            unrecognised[match["column"]] = match["type"]

    json_columns = _mariadb_json_columns(bind, resolved_schema, table) if _is_mariadb(dialect) else set()
    columns = []
    for info in reflected:
        name = info["name"]
        sa_type = info["type"]
        type_name = unrecognised.get(name, "")
        neutral = neutral_type(sa_type, dialect=family, table=qualified, column=name, type_name=type_name)
        db_type = type_name if isinstance(sa_type, sqltypes.NullType) else type_label(sa_type, family)
        if name in json_columns and isinstance(neutral, StringType):
            neutral, db_type = JsonType(), "JSON"
        columns.append(Column(name, neutral, nullable=bool(info.get("nullable", True)), db_type=db_type))

    names = [c.name for c in columns]
    primary_key = tuple(inspector.get_pk_constraint(table, schema=schema).get("constrained_columns") or ())
    if family == "sqlite" and len(primary_key) == 1:
        # INTEGER PRIMARY KEY is the rowid: never NULL, though SQLite's pragma reports it nullable
        index = names.index(primary_key[0])
        rowid = columns[index]
        if rowid.db_type == "INTEGER":
            columns[index] = Column(rowid.name, rowid.type, nullable=False, db_type=rowid.db_type)
    if key:
        missing = [k for k in key if k not in names]
        if missing:
            raise SchemaError(
                f"table {qualified}: key column(s) {', '.join(missing)} not found; columns are {', '.join(names)}"
            )
    key_columns = tuple(key) if key else primary_key
    if not key_columns:
        raise SchemaError(
            f"table {qualified} has no primary key; name key columns with `key: [...]` in the source config"
        )
    return TableSchema(schema=resolved_schema, name=table, columns=tuple(columns), key=key_columns)


def _is_mariadb(dialect: sa.engine.Dialect) -> bool:
    return bool(getattr(dialect, "is_mariadb", False))


_JSON_CHECK = re.compile(r"json_valid\(`((?:[^`]|``)+)`\)")


def _mariadb_json_columns(bind: Engine | Connection, schema: str | None, table: str) -> set[str]:
    """Columns declared JSON on MariaDB: it stores them as LONGTEXT with a `json_valid(col)` column check."""
    query = sa.text(
        "SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS "
        "WHERE CONSTRAINT_SCHEMA = :schema AND TABLE_NAME = :table AND LEVEL = 'Column'"
    )
    params = {"schema": schema, "table": table}
    if isinstance(bind, Connection):
        clauses = bind.execute(query, params).scalars().all()
    else:
        with bind.connect() as conn:
            clauses = conn.execute(query, params).scalars().all()
    return {m[1].replace("``", "`") for c in clauses if (m := _JSON_CHECK.fullmatch(str(c)))}


def _database_name(bind: Engine | Connection) -> str:
    url = bind.engine.url
    if url.get_backend_name() == "sqlite":
        return f"SQLite database {url.database}" if url.database else "the in-memory SQLite database"
    return f"database {url.database}" if url.database else "the database"
