"""The neutral column model in Avro: record schemas, row -> datum conversion, the Confluent wire format.

Representation (docs/types.md is the user-facing copy of this table):

=====================  ==================================================================================
neutral type           Avro
=====================  ==================================================================================
IntType                "int" when every value fits 32 signed bits (signed <= 32 bits, unsigned <= 24);
                       "long" for signed 64 and unsigned 32; unsigned 64 -> bytes decimal(20, 0)
FloatType              32 bits -> "float", 64 -> "double"
DecimalType(p, s)      bytes decimal(p, s). PostgreSQL's negative scale widens to decimal(p - s, 0) and a
                       scale above the precision to decimal(s, s): same values, exactly
DecimalType(None)      (unconstrained numeric) a string with ``"liberator.type": "decimal"``: plain notation
                       keeping the stored scale ("1.50", "100000"), and "NaN", "Infinity", "-Infinity".
                       Never a float. fastavro (and so the registry's Python tooling) has no big-decimal.
BoolType               "boolean"
StringType             "string" (CHAR(n) values as the driver returns them, padded or not)
BytesType              "bytes" (BINARY(n) too)
DateType               int / date
TimeType               long / time-micros: a time of day (PostgreSQL time, SQLite TIME)
DurationType           long with ``"liberator.type": "duration-micros"``: signed microseconds (MySQL TIME,
                       -838:59:59 .. 838:59:59; Debezium's io.debezium.time.MicroTime is the same number)
TimeType(tz)           a string with ``"liberator.type": "timetz"``: ISO 8601 text, "12:30:00.25+02:00"
TimestampType          long / timestamp-micros. Aware values are encoded as the instant (micros since the
                       epoch, UTC). Naive values -- columns without time zone -- are wall-clock readings,
                       encoded as if they were UTC: 2024-01-01 12:00 becomes 2024-01-01T12:00Z whatever
                       the server's or the daemon's time zone.
UuidType               string / uuid (lower-case hyphenated)
JsonType               a string with ``"liberator.type": "json"``: the JSON text. A str from the driver
                       is taken as JSON text, as is; values the driver decoded (dict, list, numbers) are
                       re-encoded compactly (no spaces, non-ASCII kept)
EnumType               an Avro enum named ``<Record>_<db type name or field>`` when every symbol is a valid
                       Avro name; otherwise a string with ``"liberator.type": "enum"`` and the allowed values
                       in ``"liberator.symbols"``
SetType                array of strings (members in the set's declared order), with
                       ``"liberator.type": "set"`` and the members in ``"liberator.symbols"``
BitsType               a string of '0'/'1' with ``"liberator.type": "bits"``, as long as the column (BIT(n)
                       keeps its leading zeros)
IntervalType           record ``<Record>_Interval`` {months: int, days: int, micros: long} with
                       ``"liberator.type": "interval"`` (Avro's duration is unsigned and in millis)
ArrayType              array of the item type; nullable items as ["null", item]
TextRepr(kind)         a string with ``"liberator.type": kind`` (inet, cidr, macaddr, ranges, ...)
=====================  ==================================================================================

Nullable columns are ``["null", T]`` with ``"default": null``; NOT NULL columns are ``T`` with no default.
Fields keep the column's database type in ``"liberator.db_type"`` and, when the column name is not a valid
Avro name, the original name in ``"liberator.column"`` (see `liberator.avro.names` for the renaming rule).
Named types (enums, intervals) are prefixed with their record's name, so the Key and Value records of a
table never clash; two columns of the same enum type share one definition.

Our own markers are a ``liberator.type`` property rather than a custom ``logicalType``: Avro readers
ignore both, but the Python `avro` library warns on every unknown logical type.

Two ways to the same bytes: `DatumConverter` makes datums (dicts) that `AvroEncoder` writes with fastavro;
`RowEncoder` (generated per table shape) writes a row's values straight to the same bytes, and
`ChangeWriter` + `change_context` assemble the change envelope around such bodies from pre-encoded parts.
The second is several times faster (bench/encoder.py) and falls back to the first for any value it does
not take exactly, so the bytes and the errors are the same.
"""

from liberator.avro.changewriter import ChangeContext, ChangeWriter, change_context
from liberator.avro.convert import DatumConverter, DatumError
from liberator.avro.names import namespace_for, sanitize_name
from liberator.avro.pgtext import parse_pg_array, parse_pg_interval, pg_range_text
from liberator.avro.rowencoder import RowEncoder
from liberator.avro.schemas import (
    DURATION_MICROS,
    PROP_COLUMN,
    PROP_DB_TYPE,
    PROP_SYMBOLS,
    PROP_TYPE,
    key_schema,
    record_schema,
    value_schema,
)
from liberator.avro.wire import (
    HEADER_SIZE,
    AvroDecoder,
    AvroEncoder,
    FramingError,
    decode,
    frame,
    framed_schema_id,
    unframe,
)

__all__ = [
    "DURATION_MICROS",
    "HEADER_SIZE",
    "PROP_COLUMN",
    "PROP_DB_TYPE",
    "PROP_SYMBOLS",
    "PROP_TYPE",
    "AvroDecoder",
    "AvroEncoder",
    "ChangeContext",
    "ChangeWriter",
    "DatumConverter",
    "DatumError",
    "FramingError",
    "RowEncoder",
    "change_context",
    "decode",
    "frame",
    "framed_schema_id",
    "key_schema",
    "namespace_for",
    "parse_pg_array",
    "parse_pg_interval",
    "pg_range_text",
    "record_schema",
    "sanitize_name",
    "unframe",
    "value_schema",
]
