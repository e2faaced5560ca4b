"""Neutral column model -> Avro record schemas (the representation rules are in the package docstring)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from liberator.avro.names import field_names, is_valid_name, sanitize_name
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

# Field / type properties. Consumers and sinks read these; Avro ignores them.
PROP_TYPE = "liberator.type"  # what a string/array/record means when the Avro type alone does not say
PROP_SYMBOLS = "liberator.symbols"  # allowed values of an enum kept as string, or of a SET
PROP_COLUMN = "liberator.column"  # the original column name when the field name had to be sanitised
PROP_DB_TYPE = "liberator.db_type"  # the database's own spelling of the column type

# MySQL TIME: signed microseconds in a long (Debezium's io.debezium.time.MicroTime is the same number)
DURATION_MICROS = "duration-micros"

UINT64_PRECISION = 20  # 18446744073709551615 has 20 digits

INTERVAL_FIELDS: list[dict[str, Any]] = [
    {"name": "months", "type": "int"},
    {"name": "days", "type": "int"},
    {"name": "micros", "type": "long"},
]


def avro_decimal(precision: int, scale: int | None) -> tuple[int, int]:
    """The Avro (precision, scale) holding every value of a SQL DECIMAL(precision, scale) exactly.

    Avro needs 0 <= scale <= precision; PostgreSQL also allows a negative scale (rounds to tens, hundreds..)
    and a scale above the precision (only digits after the point), which widen to an equivalent decimal.
    """
    s = scale or 0
    if s < 0:
        return precision - s, 0
    if s > precision:
        return s, s
    return precision, s


def enum_is_avro(enum: EnumType) -> bool:
    """Whether an enum can be an Avro enum: every symbol a valid Avro name (and at least one)."""
    return bool(enum.symbols) and all(is_valid_name(s) for s in enum.symbols)


class _RecordTypes:
    """Builds field types for one record, giving its named types unique names (prefixed by the record)."""

    def __init__(self, record: str) -> None:
        self.record = record
        self.defined: dict[str, dict[str, Any]] = {}

    def named(self, base: str, body: dict[str, Any]) -> dict[str, Any] | str:
        """Define a named type, or refer to an identical one already defined in this record."""
        stem = f"{self.record}_{sanitize_name(base)}"
        name, n = stem, 1
        while name in self.defined:
            if self.defined[name] == body:
                return name  # same enum / interval again: Avro wants a reference, not a redefinition
            n += 1
            name = f"{stem}_{n}"
        self.defined[name] = body
        return {"type": body["type"], "name": name, **{k: v for k, v in body.items() if k != "type"}}

    def avro_type(self, ctype: ColumnType, hint: str) -> Any:
        match ctype:
            case IntType(bits=bits, unsigned=unsigned):
                if unsigned and bits >= 64:
                    return {
                        "type": "bytes",
                        "logicalType": "decimal",
                        "precision": UINT64_PRECISION,
                        "scale": 0,
                    }
                width = bits + 1 if unsigned else bits
                return "int" if width <= 32 else "long"
            case FloatType(bits=bits):
                return "float" if bits <= 32 else "double"
            case DecimalType(precision=None):
                return {"type": "string", PROP_TYPE: "decimal"}
            case DecimalType(precision=int() as precision, scale=scale):
                p, s = avro_decimal(precision, scale)
                return {"type": "bytes", "logicalType": "decimal", "precision": p, "scale": s}
            case BoolType():
                return "boolean"
            case StringType():
                return "string"
            case BytesType():
                return "bytes"
            case DateType():
                return {"type": "int", "logicalType": "date"}
            case TimeType(with_timezone=True):
                return {"type": "string", PROP_TYPE: "timetz"}
            case TimeType():
                return {"type": "long", "logicalType": "time-micros"}
            case DurationType():
                return {"type": "long", PROP_TYPE: DURATION_MICROS}
            case TimestampType():
                return {"type": "long", "logicalType": "timestamp-micros"}
            case UuidType():
                return {"type": "string", "logicalType": "uuid"}
            case JsonType():
                return {"type": "string", PROP_TYPE: "json"}
            case EnumType() as enum:
                if enum_is_avro(enum):
                    return self.named(enum.name or hint, {"type": "enum", "symbols": list(enum.symbols)})
                return {"type": "string", PROP_TYPE: "enum", PROP_SYMBOLS: list(enum.symbols)}
            case SetType(members=members):
                return {"type": "array", "items": "string", PROP_TYPE: "set", PROP_SYMBOLS: list(members)}
            case BitsType():
                return {"type": "string", PROP_TYPE: "bits"}
            case IntervalType():
                return self.named("Interval", {"type": "record", PROP_TYPE: "interval", "fields": INTERVAL_FIELDS})
            case ArrayType(item=item, item_nullable=item_nullable):
                items = self.avro_type(item, hint)
                return {"type": "array", "items": ["null", items] if item_nullable else items}
            case TextRepr(kind=kind):
                return {"type": "string", PROP_TYPE: kind}
        raise SchemaError(f"no Avro mapping for neutral type {ctype!r}")  # pragma: no cover - exhaustive


def column_field_names(table: TableSchema, columns: Sequence[Column] = ()) -> dict[str, str]:
    """Column name -> Avro field name; assigned over the whole table so key and value records agree."""
    names = [c.name for c in table.columns]
    known = set(names)
    names += [c.name for c in columns if c.name not in known]
    return field_names(names)


def record_schema(table: TableSchema, columns: Sequence[Column], name: str, namespace: str) -> dict[str, Any]:
    """An Avro record schema for `columns` of `table`, with the narrowest exact type for each."""
    if not is_valid_name(name):
        raise SchemaError(f"{name!r} is not a valid Avro record name")
    names = column_field_names(table, columns)
    types = _RecordTypes(name)
    fields: list[dict[str, Any]] = []
    for column in columns:
        field_name = names[column.name]
        avro = types.avro_type(column.type, field_name)
        field: dict[str, Any] = {"name": field_name}
        if column.nullable:
            field["type"] = ["null", avro]
            field["default"] = None
        else:
            field["type"] = avro
        if field_name != column.name:
            field[PROP_COLUMN] = column.name
        if column.db_type:
            field[PROP_DB_TYPE] = column.db_type
        fields.append(field)
    schema: dict[str, Any] = {"type": "record", "name": name}
    if namespace:
        schema["namespace"] = namespace
    schema["fields"] = fields
    return schema


def key_schema(table: TableSchema, namespace: str) -> dict[str, Any]:
    """The record "Key" of the table's key columns."""
    if not table.key:
        raise SchemaError(
            f"table {table.qualified_name} has no primary key; name key columns with `key: [...]` in the source config"
        )
    return record_schema(table, table.key_columns, "Key", namespace)


def value_schema(table: TableSchema, namespace: str) -> dict[str, Any]:
    """The record "Value" of all the table's columns."""
    return record_schema(table, table.columns, "Value", namespace)
