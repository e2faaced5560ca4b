"""Avro fields -> target columns: what a field means, and the column type to create for it.

A field's meaning ("kind") comes from its Avro type and liberator's markers (`liberator.type`,
`liberator.symbols`, logical types). The column type to create is the field's `liberator.db_type` when the
target understands that spelling (verified after creation: the created column must map back to the very same
Avro type, see `avro_shape`), else a mapping from the kind (`fallback_type`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite

from liberator.avro import DURATION_MICROS, PROP_COLUMN, PROP_DB_TYPE, PROP_SYMBOLS, PROP_TYPE
from liberator.sink import FatalSinkError

# liberator.type values whose string is a PostgreSQL type's canonical text (TextRepr kinds and timetz).
_PG_TEXT_KINDS = {
    "inet",
    "cidr",
    "macaddr",
    "macaddr8",
    "tsvector",
    "tsquery",
    "xml",
    "int4range",
    "int8range",
    "numrange",
    "tsrange",
    "tstzrange",
    "daterange",
    "int4multirange",
    "int8multirange",
    "nummultirange",
    "tsmultirange",
    "tstzmultirange",
    "datemultirange",
}


# How SQLAlchemy spells PostgreSQL types that reflection lists under their long names.
_PG_SPELLINGS = {"varchar", "char", "decimal", "int", "xml", "timestamptz", "timetz", "float4", "float8", "bool"}

_MARIADB_TYPES = {"inet4", "inet6"}  # MariaDB types SQLAlchemy does not know


@dataclass(frozen=True)
class Kind:
    """What an Avro field holds, independent of any database."""

    name: str  # int long float double boolean string bytes decimal numeric date time duration timestamp
    # local_timestamp uuid json enum set bits interval timetz text array record map
    precision: int = 0
    scale: int = 0
    symbols: tuple[str, ...] = ()
    text_kind: str = ""  # for "text": inet, int4range, ...
    item: Kind | None = None  # for arrays
    item_nullable: bool = True


@dataclass(frozen=True)
class FieldColumn:
    field: str  # Avro field name
    column: str  # column name (liberator.column when the field name had to be sanitised)
    kind: Kind
    nullable: bool
    db_type: str
    avro: Any  # the field's Avro type without the null branch


def _strip_null(avro: Any, where: str) -> tuple[Any, bool]:
    if isinstance(avro, list):
        branches = [b for b in avro if b != "null"]
        if len(branches) != 1:
            raise FatalSinkError(
                f"{where}: a union of {avro} has no single column type; "
                "only [null, T] unions can be written (map the field in the producer)"
            )
        return branches[0], len(branches) < len(avro)
    return avro, False


def kind_of(avro: Any, named: dict[str, Any], where: str) -> Kind:
    """The kind of a (non-union) Avro type; `named` collects named types so references resolve."""
    if isinstance(avro, str):
        if avro in named:
            return kind_of(named[avro], named, where)
        if avro in ("int", "long", "float", "double", "boolean", "string", "bytes"):
            return Kind(avro)
        raise FatalSinkError(f"{where}: Avro type {avro!r} has no column mapping; map the field in the producer")
    if isinstance(avro, list):
        inner, _ = _strip_null(avro, where)
        return kind_of(inner, named, where)
    base = avro.get("type")
    if "name" in avro and base in ("enum", "record", "fixed"):
        named[avro["name"]] = avro
        if "namespace" in avro:
            named[f"{avro['namespace']}.{avro['name']}"] = avro
    logical = avro.get("logicalType")
    marker = avro.get(PROP_TYPE)
    if logical == "decimal" and base in ("bytes", "fixed"):
        return Kind("decimal", precision=int(avro["precision"]), scale=int(avro.get("scale", 0)))
    if logical == "date":
        return Kind("date")
    if logical in ("time-micros", "time-millis"):
        return Kind("time")
    if logical in ("timestamp-micros", "timestamp-millis"):
        return Kind("timestamp")
    if logical in ("local-timestamp-micros", "local-timestamp-millis"):
        return Kind("local_timestamp")
    if logical == "uuid":
        return Kind("uuid")
    if base == "long" and marker == DURATION_MICROS:
        return Kind("duration")
    if base == "string":
        if marker == "decimal":
            return Kind("numeric")
        if marker == "json":
            return Kind("json")
        if marker == "enum":
            return Kind("enum", symbols=tuple(avro.get(PROP_SYMBOLS, ())))
        if marker == "bits":
            return Kind("bits")
        if marker == "timetz":
            return Kind("timetz")
        if marker:
            return Kind("text", text_kind=str(marker))
        return Kind("string")
    if base == "enum":
        return Kind("enum", symbols=tuple(avro["symbols"]))
    if base == "array":
        if marker == "set":
            return Kind("set", symbols=tuple(avro.get(PROP_SYMBOLS, ())))
        item, item_nullable = _strip_null(avro["items"], where)
        return Kind("array", item=kind_of(item, named, where), item_nullable=item_nullable)
    if base == "record":
        if marker == "interval":
            return Kind("interval")
        return Kind("record")
    if base == "map":
        return Kind("map")
    if base == "fixed":
        return Kind("bytes")
    if isinstance(base, str | dict | list):
        return kind_of(base, named, where)
    raise FatalSinkError(f"{where}: Avro type {avro!r} has no column mapping")  # pragma: no cover


def field_columns(record: dict[str, Any], where: str) -> list[FieldColumn]:
    """The columns of a (Value) record schema, in field order."""
    named: dict[str, Any] = {}
    out = []
    for field in record.get("fields", []):
        avro, nullable = _strip_null(field["type"], f"{where} field {field['name']}")
        kind = kind_of(avro, named, f"{where} field {field['name']}")
        out.append(
            FieldColumn(
                field=field["name"],
                column=str(field.get(PROP_COLUMN, field["name"])),
                kind=kind,
                nullable=nullable,
                db_type=str(field.get(PROP_DB_TYPE, "")),
                avro=avro,
            )
        )
    return out


# -- column types ---------------------------------------------------------------------------------------

_ARGS = re.compile(r"\([^)]*\)")


def db_type_usable(db_type: str, dialect: str) -> bool:
    """Whether the target may understand `db_type` as written (confirmed after creating the table)."""
    if not db_type:
        return False
    if dialect == "sqlite":
        return True  # any declared type is accepted; its affinity decides, and the check after creation judges
    base = _ARGS.sub("", db_type).lower().replace(" unsigned", "").replace(" zerofill", "").strip()
    if dialect == "postgresql" and base.endswith("[]"):
        base = base[:-2].strip()
    names = (postgresql.dialect() if dialect == "postgresql" else mysql.dialect()).ischema_names  # type: ignore[no-untyped-call]
    return base in names or base in (_PG_SPELLINGS if dialect == "postgresql" else _MARIADB_TYPES)


def fallback_type(kind: Kind, dialect: str, in_key: bool, enum_name: str) -> Any:
    """A column type for `kind` when the field's own db_type cannot be used."""
    k = kind.name
    my = dialect in ("mysql", "mariadb")
    pg = dialect == "postgresql"
    if k == "int":
        return sa.Integer()
    if k == "long":
        return sa.BigInteger()
    if k == "float":
        return sa.REAL() if not my else mysql.FLOAT()
    if k == "double":
        return sa.Double()
    if k == "boolean":
        return sa.Boolean()
    if k == "decimal":
        if my and kind.precision > 65:
            return sa.Text()  # beyond MySQL's DECIMAL: exact as text
        return sa.Numeric(kind.precision, kind.scale)
    if k == "numeric":
        return postgresql.NUMERIC() if pg else sa.Numeric(65, 30) if my else sqlite.NUMERIC()
    if k == "date":
        return sa.Date()
    if k == "time":
        return postgresql.TIME(precision=6) if pg else mysql.TIME(fsp=6) if my else sa.Time()
    if k == "duration":
        return mysql.TIME(fsp=6) if my else sa.BigInteger()  # elsewhere: the microseconds
    if k in ("timestamp", "local_timestamp"):
        aware = k == "timestamp"
        if pg:
            return postgresql.TIMESTAMP(timezone=aware, precision=6)
        return mysql.DATETIME(fsp=6) if my else sa.DateTime()
    if k == "uuid":
        return postgresql.UUID() if pg else sa.String(36)
    if k == "json":
        return postgresql.JSONB() if pg else mysql.JSON() if my else sa.JSON()
    if k == "enum":
        if pg and enum_name:
            return postgresql.ENUM(*kind.symbols, name=enum_name, create_type=False)
        if my and kind.symbols:
            return mysql.ENUM(*kind.symbols)
        return sa.String(max((len(s) for s in kind.symbols), default=1) or 1)
    if k == "set":
        return mysql.SET(*kind.symbols) if my and kind.symbols else postgresql.ARRAY(sa.Text()) if pg else sa.Text()
    if k == "bits":
        return postgresql.BIT(varying=True) if pg else sa.String(64) if in_key else sa.Text()
    if k == "timetz":
        return postgresql.TIME(timezone=True) if pg else sa.String(40)
    if k == "interval":
        return postgresql.INTERVAL() if pg else sa.JSON()
    if k == "text":
        if pg and kind.text_kind in _PG_TEXT_KINDS:
            return _Named(kind.text_kind)
        return sa.Text() if not in_key else sa.String(255)
    if k == "array":
        if pg and kind.item is not None:
            return postgresql.ARRAY(fallback_type(kind.item, dialect, False, enum_name))
        return sa.JSON()
    if k in ("record", "map"):
        return sa.JSON()
    if k == "bytes":
        return postgresql.BYTEA() if pg else mysql.VARBINARY(255) if my and in_key else sa.LargeBinary()
    # string
    if my:
        return sa.String(255) if in_key else mysql.LONGTEXT()
    return sa.Text()


class _Named(sa.types.UserDefinedType[Any]):
    """A PostgreSQL type spelled by name (inet, int4range, ...)."""

    cache_ok = True

    def __init__(self, name: str = "text") -> None:
        self.type_name = name

    def get_col_spec(self, **_kw: Any) -> str:
        return self.type_name


def normalised(avro: Any, named: dict[str, Any] | None = None) -> Any:
    """An Avro type with names, docs and liberator's column markers removed, references resolved: two
    types are the same shape exactly when their normalised forms are equal."""
    named = {} if named is None else named
    if isinstance(avro, str):
        return normalised(named[avro], named) if avro in named else avro
    if isinstance(avro, list):
        return [normalised(b, named) for b in avro]
    if isinstance(avro, dict):
        if "name" in avro and avro.get("type") in ("enum", "record", "fixed"):
            named[avro["name"]] = avro
        out: dict[str, Any] = {}
        for key, value in avro.items():
            if key in ("name", "namespace", "doc", "aliases", "default", PROP_DB_TYPE, PROP_COLUMN):
                continue
            if key == "fields":
                out[key] = [{"name": f["name"], "type": normalised(f["type"], named)} for f in value]
            elif key in ("type", "items", "values"):
                out[key] = normalised(value, named)
            else:
                out[key] = value
        return out
    return avro
