"""MySQL/MariaDB columns -> liberator's neutral types, and binlog/driver values -> what DatumConverter takes.

Two readers describe the same column: `information_schema` (snapshot, and the nicer type spelling) and the
TableMapEvent of the binlog (binlog_row_metadata=FULL carries names, signedness, ENUM/SET values, key). Both
become a `ColumnSpec`; `ColumnSpec.wire` is what they must agree on. Values from pymysql (snapshot) and from
mysql-replication (stream) differ in places; `normalizer` brings both to the same value:

* zero dates ('0000-00-00', also partial zeros) and the zero TIMESTAMP -> NULL (so those columns are always
  nullable in Avro); YEAR 0000 stays 0 (mysql-replication reads it as 1900, which YEAR cannot hold)
* TIMESTAMP is an instant: both readers give UTC wall-clock readings (the snapshot session runs in UTC)
* BINARY(n) keeps its trailing zero bytes (the binlog drops them); an empty binary value is b'' (the binlog
  reader makes it ''); spatial values become WKB (the 4-byte SRID that MySQL stores in front is dropped);
  MySQL's binary JSON becomes compact JSON text
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Sequence
from typing import Any

from pymysqlreplication.constants import FIELD_TYPE

from liberator.connectors.mysql_binlog.history import ColumnSpec, TableDef
from liberator.errors import SchemaError
from liberator.schema import (
    BitsType,
    BytesType,
    Column,
    ColumnType,
    DateType,
    DecimalType,
    DurationType,
    EnumType,
    FloatType,
    IntType,
    JsonType,
    SetType,
    StringType,
    TableSchema,
    TimestampType,
    UuidType,
)

_INT_BITS = {"tinyint": 8, "smallint": 16, "mediumint": 24, "int": 32, "integer": 32, "bigint": 64}
_SIMPLE = {
    "date": "date",
    "datetime": "datetime",
    "timestamp": "timestamp",
    "time": "time",
    "year": "year",
    "char": "string",
    "varchar": "string",
    "tinytext": "string",
    "text": "string",
    "mediumtext": "string",
    "longtext": "string",
    "varbinary": "bytes",
    "tinyblob": "bytes",
    "blob": "bytes",
    "mediumblob": "bytes",
    "longblob": "bytes",
    "binary": "binary",
    "bit": "bit",
    "enum": "enum",
    "set": "set",
    "uuid": "uuid",
}
_SPATIAL = {
    "geometry",
    "point",
    "linestring",
    "polygon",
    "multipoint",
    "multilinestring",
    "multipolygon",
    "geometrycollection",
    "geomcollection",
}
_QUOTED = re.compile(r"'((?:[^']|'')*)'")

# information_schema.COLUMNS columns read by `spec_from_info`, in this order.
INFO_COLUMNS = (
    "COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE, NUMERIC_PRECISION, NUMERIC_SCALE, "
    "DATETIME_PRECISION, CHARACTER_OCTET_LENGTH, CHARACTER_SET_NAME"
)


def _symbols(column_type: str) -> tuple[str, ...]:
    inner = column_type[column_type.index("(") + 1 : column_type.rindex(")")]
    return tuple(m.replace("''", "'").replace("\\\\", "\\") for m in _QUOTED.findall(inner))


def spec_from_info(row: Sequence[Any], json_columns: set[str], mysql: bool) -> ColumnSpec:
    """A column from its information_schema.COLUMNS row (see INFO_COLUMNS)."""
    name, data_type, column_type, is_nullable, precision, scale, dt_precision, octets, charset = row
    data_type = str(data_type).lower()
    column_type = str(column_type)
    nullable = str(is_nullable).upper() == "YES"
    # ENUM/SET values keep their case: only the type name is upper-cased
    db_type = (
        column_type.upper() if data_type not in ("enum", "set") else data_type.upper() + column_type[len(data_type) :]
    )
    unsigned = "unsigned" in column_type.lower()
    common: dict[str, Any] = {"name": str(name), "nullable": nullable, "db_type": db_type}
    if data_type in _INT_BITS:
        return ColumnSpec(kind="int", unsigned=unsigned, size=_INT_BITS[data_type], **common)
    if data_type in ("float", "double", "real"):
        return ColumnSpec(kind="float", size=32 if data_type == "float" else 64, **common)
    if data_type in ("decimal", "numeric"):
        return ColumnSpec(kind="decimal", precision=int(precision), scale=int(scale or 0), **common)
    if data_type == "json":
        return ColumnSpec(kind="mysqljson" if mysql else "json", **common)
    if data_type in _SPATIAL:
        return ColumnSpec(kind="geometry", **common)
    kind = _SIMPLE.get(data_type)
    if kind is None:
        raise SchemaError(f"column {name}: type {column_type.upper()} has no exact Avro mapping in the binlog source")
    if kind == "string" and str(name) in json_columns:
        kind, common["db_type"] = "json", "JSON"
    if kind in ("string", "bytes") and data_type.endswith(("char", "text")) and charset == "binary":
        kind = "bytes"
    size = 0
    if kind in ("datetime", "timestamp", "time"):
        size = int(dt_precision or 0)
    elif kind == "binary":
        size = int(octets)
    elif kind == "bit":
        size = int(precision)
    symbols = _symbols(column_type) if kind in ("enum", "set") else ()
    return ColumnSpec(kind=kind, size=size, symbols=symbols, **common)


_BINLOG_INT = {
    FIELD_TYPE.TINY: 8,
    FIELD_TYPE.SHORT: 16,
    FIELD_TYPE.INT24: 24,
    FIELD_TYPE.LONG: 32,
    FIELD_TYPE.LONGLONG: 64,
}
_BINLOG_SIMPLE = {
    FIELD_TYPE.DATE: "date",
    FIELD_TYPE.NEWDATE: "date",
    FIELD_TYPE.YEAR: "year",
    FIELD_TYPE.GEOMETRY: "geometry",
    FIELD_TYPE.JSON: "mysqljson",
    FIELD_TYPE.ENUM: "enum",
    FIELD_TYPE.SET: "set",
    FIELD_TYPE.BIT: "bit",
}
_BINLOG_TIME = {
    FIELD_TYPE.DATETIME: "datetime",
    FIELD_TYPE.DATETIME2: "datetime",
    FIELD_TYPE.TIMESTAMP: "timestamp",
    FIELD_TYPE.TIMESTAMP2: "timestamp",
    FIELD_TYPE.TIME: "time",
    FIELD_TYPE.TIME2: "time",
}
_GENERIC_INT = {8: "TINYINT", 16: "SMALLINT", 24: "MEDIUMINT", 32: "INT", 64: "BIGINT"}


def specs_from_table_map(event: Any) -> tuple[tuple[ColumnSpec, ...], tuple[str, ...]]:
    """Columns and primary key from a TableMapEvent (binlog_row_metadata=FULL), spelled generically."""
    specs: list[ColumnSpec] = []
    nullmask: bytes = event.null_bitmask
    for index, col in enumerate(event.columns):
        nullable = bool(nullmask[index // 8] & (1 << (index % 8)))
        name = col.name or f"UNKNOWN_COL{index}"
        code = col.type
        binary = getattr(col, "character_set_name", None) == "binary"
        if code in _BINLOG_INT:
            bits = _BINLOG_INT[code]
            spec = ColumnSpec(
                name,
                "int",
                nullable,
                bool(col.unsigned),
                bits,
                db_type=_GENERIC_INT[bits] + (" UNSIGNED" if col.unsigned else ""),
            )
        elif code in (FIELD_TYPE.FLOAT, FIELD_TYPE.DOUBLE):
            bits = 32 if code == FIELD_TYPE.FLOAT else 64
            spec = ColumnSpec(name, "float", nullable, size=bits, db_type="FLOAT" if bits == 32 else "DOUBLE")
        elif code == FIELD_TYPE.NEWDECIMAL:
            spec = ColumnSpec(
                name,
                "decimal",
                nullable,
                precision=col.precision,
                scale=col.decimals,
                db_type=f"DECIMAL({col.precision},{col.decimals})",
            )
        elif code in _BINLOG_TIME:
            kind = _BINLOG_TIME[code]
            fsp = int(getattr(col, "fsp", 0) or 0)
            spec = ColumnSpec(name, kind, nullable, size=fsp, db_type=kind.upper() + (f"({fsp})" if fsp else ""))
        elif code in (FIELD_TYPE.VARCHAR, FIELD_TYPE.VAR_STRING, FIELD_TYPE.BLOB):
            spec = ColumnSpec(name, "bytes" if binary else "string", nullable, db_type="BLOB" if binary else "TEXT")
        elif code == FIELD_TYPE.STRING:
            if binary:
                spec = ColumnSpec(name, "binary", nullable, size=col.max_length, db_type=f"BINARY({col.max_length})")
            else:
                spec = ColumnSpec(name, "string", nullable, db_type="CHAR")
        elif code in _BINLOG_SIMPLE:
            kind = _BINLOG_SIMPLE[code]
            symbols: tuple[str, ...] = ()
            size = 0
            if kind == "enum":
                symbols = tuple((col.enum_values or [""])[1:])
            elif kind == "set":
                symbols = tuple(col.set_values or ())
            elif kind == "bit":
                size = col.bits
            db_type = {"mysqljson": "JSON", "geometry": "GEOMETRY"}.get(kind, kind.upper())
            spec = ColumnSpec(name, kind, nullable, size=size, symbols=symbols, db_type=db_type)
        else:
            raise SchemaError(f"column {name}: binlog column type {code} has no exact Avro mapping")
        specs.append(spec)
    names = [s.name for s in specs]
    key_indexes = list(event.optional_metadata.simple_primary_key_list or [])
    key_indexes += list((event.optional_metadata.primary_keys_with_prefix or {}).keys())
    return tuple(specs), tuple(names[i] for i in key_indexes)


def column_type(spec: ColumnSpec) -> ColumnType:
    match spec.kind:
        case "int":
            return IntType(spec.size, spec.unsigned)
        case "year":
            return IntType(16)
        case "float":
            return FloatType(spec.size)
        case "decimal":
            return DecimalType(spec.precision, spec.scale)
        case "string":
            return StringType()
        case "bytes" | "geometry":
            return BytesType()
        case "binary":
            return BytesType(spec.size, fixed=True)
        case "json" | "mysqljson":
            return JsonType()
        case "date":
            return DateType()
        case "datetime":
            return TimestampType(spec.size, with_timezone=False)
        case "timestamp":
            return TimestampType(spec.size, with_timezone=True)
        case "time":  # a signed duration, -838:59:59 .. 838:59:59
            return DurationType(spec.size)
        case "enum":
            return EnumType(spec.symbols)
        case "set":
            return SetType(spec.symbols)
        case "bit":
            return BitsType(spec.size)
        case "uuid":
            return UuidType()
    raise SchemaError(f"column {spec.name}: no mapping for {spec.db_type}")


# Temporal columns can hold MySQL's zero dates, which become NULL (docs/types.md): always nullable.
_ZERO_DATE_KINDS = frozenset({"date", "datetime", "timestamp"})


def table_schema(table: TableDef) -> TableSchema:
    columns = tuple(
        Column(s.name, column_type(s), s.nullable or s.kind in _ZERO_DATE_KINDS, s.db_type) for s in table.columns
    )
    return TableSchema(table.database, table.table, columns, table.key)


# --- values ------------------------------------------------------------------------------------------

Normalize = Callable[[Any], Any]
_ZERO_TIMESTAMP = dt.datetime(1970, 1, 1)


def _temporal(value: Any) -> Any:
    return None if isinstance(value, str) else value  # pymysql hands back zero dates as their text


def _timestamp(value: Any) -> Any:
    if isinstance(value, str) or value == _ZERO_TIMESTAMP:  # the zero TIMESTAMP is 0 seconds in the binlog
        return None
    return value.replace(tzinfo=dt.UTC) if isinstance(value, dt.datetime) and value.tzinfo is None else value


def _year(value: Any) -> Any:
    return 0 if value == 1900 else value  # mysql-replication adds 1900 to the stored 0 of YEAR 0000


def _bytes(value: Any) -> Any:
    # mysql-replication decodes binary values with the codec "binary", which does not exist; Python decodes
    # an empty value before it looks the codec up, so an empty binary value comes as the text ''.
    return b"" if value == "" else value


def _binary(size: int) -> Normalize:
    def pad(value: Any) -> Any:
        value = _bytes(value)
        return value.ljust(size, b"\0") if isinstance(value, bytes) and len(value) < size else value

    return pad


def _geometry(value: Any) -> Any:
    return bytes(value[4:]) if isinstance(value, bytes | bytearray) and len(value) >= 4 else value


def _plain_json(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, dict):
        return {_plain_json(k): _plain_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain_json(v) for v in value]
    return value


def _mysql_json(value: Any) -> Any:
    # Snapshot: MySQL's JSON text ("{"a": 1}"); binlog: the decoded value. Both -> compact text.
    if isinstance(value, str):
        value = json.loads(value)
    return json.dumps(_plain_json(value), separators=(",", ":"), ensure_ascii=False)


def normalizer(spec: ColumnSpec) -> Normalize | None:
    match spec.kind:
        case "date" | "datetime":
            return _temporal
        case "timestamp":
            return _timestamp
        case "year":
            return _year
        case "bytes":
            return _bytes
        case "binary":
            return _binary(spec.size)
        case "geometry":
            return _geometry
        case "mysqljson":
            return _mysql_json
    return None


def key_is_ordered(table: TableDef) -> bool:
    """Whether Python orders the key like the server does (numbers, temporals, bytes; not collated text)."""
    kinds = {table.columns[[c.name for c in table.columns].index(k)].kind for k in table.key}
    return kinds <= {"int", "decimal", "date", "datetime", "timestamp", "year", "binary", "bytes"}
