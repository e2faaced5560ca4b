"""Reflect real PostgreSQL 15 and MariaDB 10.11 tables holding every type, then carry a row of extreme values
through SQLAlchemy -> DatumConverter -> Confluent-framed Avro -> fastavro and compare it with the source."""

from __future__ import annotations

import struct
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

import fastavro
import pytest
import sqlalchemy as sa

from liberator.avro import AvroDecoder, AvroEncoder, DatumConverter, key_schema, value_schema
from liberator.errors import SchemaError
from liberator.schema import (
    ArrayType,
    BitsType,
    BoolType,
    BytesType,
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
from liberator.sqltypes import reflect_table

INT64_MAX = 2**63 - 1


def float32(value: float) -> float:
    return float(struct.unpack("<f", struct.pack("<f", value))[0])


def round_trip(table: TableSchema, row: Mapping[Any, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(key, value) as a consumer decodes them, after checking fastavro parses both schemas."""
    value_avro, key_avro = value_schema(table, "liberator.test"), key_schema(table, "liberator.test")
    fastavro.parse_schema(value_avro)
    value = AvroEncoder(value_avro, 2).encode(DatumConverter(table).convert(row))
    key = AvroEncoder(key_avro, 1).encode(DatumConverter.for_key(table).convert(row))
    return AvroDecoder(key_avro, 1).decode(key), AvroDecoder(value_avro, 2).decode(value)


def assert_model(table: TableSchema, expected: dict[str, tuple[ColumnType, bool]]) -> None:
    assert [c.name for c in table.columns] == list(expected)
    for column in table.columns:
        assert (column.type, column.nullable) == expected[column.name], column.name
        assert column.db_type, column.name


# --- PostgreSQL ------------------------------------------------------------------------------------

PG_DDL = [
    "CREATE TYPE mood AS ENUM ('happy', 'sad')",
    "CREATE DOMAIN posint AS integer CHECK (VALUE > 0)",
    """CREATE TABLE everything (
        id bigint PRIMARY KEY, s smallint, i integer, b8 bigint,
        n numeric(38, 10), nneg numeric(10, 2), nu numeric, nnan numeric,
        r real, d double precision, bo boolean,
        vc varchar(20), ch char(3), tx text NOT NULL, ba bytea,
        dt date, dt2 date, tm time, ttz timetz, ts timestamp, ts0 timestamp(0), tstz timestamptz,
        iv interval, iv2 interval, u uuid, j json, jb jsonb, m mood, ma mood[], ia integer[], ta text[],
        bt bit(5), vb varbit, ine inet, ci cidr, mac macaddr, r4 int4range, tsr tstzrange, x xml,
        dom posint, o oid)""",
]

PG_MODEL: dict[str, tuple[ColumnType, bool]] = {
    "id": (IntType(64), False),
    "s": (IntType(16), True),
    "i": (IntType(32), True),
    "b8": (IntType(64), True),
    "n": (DecimalType(38, 10), True),
    "nneg": (DecimalType(10, 2), True),
    "nu": (DecimalType(None, None), True),
    "nnan": (DecimalType(None, None), True),
    "r": (FloatType(32), True),
    "d": (FloatType(64), True),
    "bo": (BoolType(), True),
    "vc": (StringType(20), True),
    "ch": (StringType(3, fixed=True), True),
    "tx": (StringType(), False),
    "ba": (BytesType(), True),
    "dt": (DateType(), True),
    "dt2": (DateType(), True),
    "tm": (TimeType(6), True),
    "ttz": (TimeType(6, with_timezone=True), True),
    "ts": (TimestampType(6), True),
    "ts0": (TimestampType(0), True),
    "tstz": (TimestampType(6, with_timezone=True), True),
    "iv": (IntervalType(), True),
    "iv2": (IntervalType(), True),
    "u": (UuidType(), True),
    "j": (JsonType(), True),
    "jb": (JsonType(), True),
    "m": (EnumType(("happy", "sad"), "mood"), True),
    "ma": (ArrayType(EnumType(("happy", "sad"), "mood")), True),
    "ia": (ArrayType(IntType(32)), True),
    "ta": (ArrayType(StringType()), True),
    "bt": (BitsType(5), True),
    "vb": (BitsType(0, varying=True), True),
    "ine": (TextRepr("inet"), True),
    "ci": (TextRepr("cidr"), True),
    "mac": (TextRepr("macaddr"), True),
    "r4": (TextRepr("int4range"), True),
    "tsr": (TextRepr("tstzrange"), True),
    "x": (TextRepr("xml"), True),
    "dom": (IntType(32), True),
    "o": (IntType(32, unsigned=True), True),
}

PG_ROW = """INSERT INTO everything VALUES (
    9223372036854775807, -32768, -2147483648, -9223372036854775808,
    9999999999999999999999999999.9999999999, -12345678.90,
    123456789012345678901234567890.000000000000000000001, 'NaN',
    3.4028235e38, 1.7976931348623157e308, true,
    'żółw 🐢', 'ab', '', '\\x00ff',
    '0001-01-01', '9999-12-31', '23:59:59.999999', '12:00:00.5+05:30',
    '9999-12-31 23:59:59.999999', '0001-01-01 00:00:00', '2000-01-01 00:00:00.123456+02',
    '1 year 2 mons -3 days 04:05:06.789', '-178000000 years 2147483647 days 2562047788:00:54.775807',
    'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"b": [1, 2.5], "a": "é"}', '{"x": null}',
    'sad', '{happy,sad,NULL}', '{1,NULL,-2147483648}', '{"a,b","",NULL,"\\"q\\""}',
    B'00101', B'1', '10.0.0.1/8', '10.0.0.0/8', '08:00:2b:01:02:03', '[1,10)',
    '["2020-01-01 00:00:00+00","2020-01-02 00:00:00+00")', '<a>é</a>', 5, 4294967295)"""

PG_EXPECTED: dict[str, Any] = {
    "id": INT64_MAX,
    "s": -32768,
    "i": -(2**31),
    "b8": -(2**63),
    "n": Decimal("9999999999999999999999999999.9999999999"),
    "nneg": Decimal("-12345678.90"),
    "nu": "123456789012345678901234567890.000000000000000000001",
    "nnan": "NaN",
    "r": float32(3.4028235e38),
    "d": 1.7976931348623157e308,
    "bo": True,
    "vc": "żółw 🐢",
    "ch": "ab ",
    "tx": "",
    "ba": b"\x00\xff",
    "dt": date(1, 1, 1),
    "dt2": date(9999, 12, 31),
    "tm": time(23, 59, 59, 999999),
    "ttz": "12:00:00.500000+05:30",
    "ts": datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    "ts0": datetime(1, 1, 1, tzinfo=UTC),
    "tstz": datetime(1999, 12, 31, 22, 0, 0, 123456, tzinfo=UTC),
    "iv": {"months": 14, "days": -3, "micros": 14_706_789_000},
    "iv2": {"months": -2_136_000_000, "days": 2**31 - 1, "micros": INT64_MAX},
    "u": uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
    "j": '{"b":[1,2.5],"a":"é"}',
    "jb": '{"x":null}',
    "m": "sad",
    "ma": ["happy", "sad", None],
    "ia": [1, None, -(2**31)],
    "ta": ["a,b", "", None, '"q"'],
    "bt": "00101",
    "vb": "1",
    "ine": "10.0.0.1/8",
    "ci": "10.0.0.0/8",
    "mac": "08:00:2b:01:02:03",
    "r4": "[1,10)",
    "tsr": '["2020-01-01 00:00:00+00:00","2020-01-02 00:00:00+00:00")',
    "x": "<a>é</a>",
    "dom": 5,
    "o": 2**32 - 1,
}


@pytest.fixture
def pg_engine(pg_url: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(pg_url)
    yield engine
    engine.dispose()


def test_postgresql_types_reflect_and_round_trip_exactly(pg_engine: sa.Engine) -> None:
    from psycopg.types.string import TextLoader

    with pg_engine.begin() as conn:
        for statement in PG_DDL:
            conn.exec_driver_sql(statement)
        conn.exec_driver_sql(PG_ROW)
    table = reflect_table(pg_engine, None, "everything")
    assert (table.schema, table.name, table.key) == ("public", "everything", ("id",))
    assert_model(table, PG_MODEL)
    db_types = {c.name: c.db_type for c in table.columns}
    assert db_types["n"] == "NUMERIC(38, 10)"
    assert db_types["tstz"] == "TIMESTAMP WITH TIME ZONE"
    assert db_types["m"] == "mood"
    assert db_types["x"] == "xml"

    with pg_engine.connect() as conn:
        # exact intervals: psycopg's default loader folds months into 30-day days
        conn.connection.driver_connection.adapters.register_loader("interval", TextLoader)  # type: ignore[union-attr]
        row = conn.execute(sa.text("SELECT * FROM everything")).mappings().one()
    key, value = round_trip(table, row)
    assert key == {"id": INT64_MAX}
    assert value == PG_EXPECTED
    assert {name: type(v) for name, v in value.items()} == {name: type(v) for name, v in PG_EXPECTED.items()}


def test_postgresql_unknown_types_and_missing_tables_name_the_fix(pg_engine: sa.Engine, pg_url: str) -> None:
    with pg_engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE shapes (id int PRIMARY KEY, p point, cash money)")
        conn.exec_driver_sql("CREATE TABLE nokey (a int)")
    with pytest.raises(SchemaError) as raised:
        reflect_table(pg_engine, "public", "shapes")
    assert str(raised.value) == (
        "table public.shapes column p: type POINT has no exact Avro mapping; "
        "leave the column out with `tables: [{table: public.shapes, exclude: [p]}]` or cast it in a `query:` entry"
    )
    database = sa.make_url(pg_url).database
    with pytest.raises(SchemaError) as raised:
        reflect_table(pg_engine, "public", "nope")
    assert str(raised.value) == (
        f"table public.nope not found in database {database}; check `tables:` (names are schema.table)"
    )
    with pytest.raises(SchemaError, match=r"table public\.nokey has no primary key"):
        reflect_table(pg_engine, None, "nokey")
    assert reflect_table(pg_engine, None, "nokey", key=["a"]).key == ("a",)


# --- MariaDB ---------------------------------------------------------------------------------------

MY_DDL = """CREATE TABLE everything (
    id bigint unsigned PRIMARY KEY, ti tinyint, tb tinyint(1), tu tinyint unsigned, si smallint,
    su smallint unsigned, mi mediumint, mu mediumint unsigned, i int, iu int unsigned, bi bigint,
    d decimal(65, 30), d0 decimal, f float, db double, ch char(3), vc varchar(20), tx text NOT NULL,
    bn binary(4), vb varbinary(8), bl blob, dt date, dt2 date, tm time, tm6 time(6), dtm datetime,
    dtm6 datetime(6), ts timestamp(6) NULL, yr year, j json, e enum('small', 'big'),
    e2 enum('in progress', 'done'), st set('a', 'b', 'c'), b1 bit(1), b64 bit(64), u uuid, i6 inet6)"""

MY_MODEL: dict[str, tuple[ColumnType, bool]] = {
    "id": (IntType(64, unsigned=True), False),
    "ti": (IntType(8), True),
    "tb": (IntType(8), True),
    "tu": (IntType(8, unsigned=True), True),
    "si": (IntType(16), True),
    "su": (IntType(16, unsigned=True), True),
    "mi": (IntType(24), True),
    "mu": (IntType(24, unsigned=True), True),
    "i": (IntType(32), True),
    "iu": (IntType(32, unsigned=True), True),
    "bi": (IntType(64), True),
    "d": (DecimalType(65, 30), True),
    "d0": (DecimalType(10, 0), True),
    "f": (FloatType(32), True),
    "db": (FloatType(64), True),
    "ch": (StringType(3, fixed=True), True),
    "vc": (StringType(20), True),
    "tx": (StringType(), False),
    "bn": (BytesType(4, fixed=True), True),
    "vb": (BytesType(8), True),
    "bl": (BytesType(), True),
    "dt": (DateType(), True),
    "dt2": (DateType(), True),
    "tm": (DurationType(0), True),
    "tm6": (DurationType(6), True),
    "dtm": (TimestampType(0), True),
    "dtm6": (TimestampType(6), True),
    "ts": (TimestampType(6, with_timezone=True), True),
    "yr": (IntType(16), True),
    "j": (JsonType(), True),
    "e": (EnumType(("small", "big")), True),
    "e2": (EnumType(("in progress", "done")), True),
    "st": (SetType(("a", "b", "c")), True),
    "b1": (BitsType(1), True),
    "b64": (BitsType(64), True),
    "u": (UuidType(), True),
    "i6": (TextRepr("inet6"), True),
}

D65 = "99999999999999999999999999999999999.999999999999999999999999999999"

MY_ROW = f"""INSERT INTO everything VALUES (
    18446744073709551615, -128, 2, 255, -32768, 65535, -8388608, 16777215, -2147483648, 4294967295,
    -9223372036854775808, -{D65}, 9999999999, -0.5, 1.7976931348623157e308, 'ab', 'é🐢', '',
    x'00010203', x'ff', '', '0001-01-01', '9999-12-31', '23:59:59', '00:00:00.000001',
    '9999-12-31 23:59:59', '0001-01-01 00:00:00.000001', '2038-01-19 03:14:07.999999', 2155,
    '{{"a": [1, 2.5], "é": null}}', 'big', 'in progress', 'c,a', b'1', x'8000000000000001',
    'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '::1')"""

MY_EXPECTED: dict[str, Any] = {
    "id": Decimal(2**64 - 1),
    "ti": -128,
    "tb": 2,  # TINYINT(1) is an int8: legacy "booleans" holding 2 survive
    "tu": 255,
    "si": -32768,
    "su": 65535,
    "mi": -8388608,
    "mu": 16777215,
    "i": -(2**31),
    "iu": 2**32 - 1,
    "bi": -(2**63),
    "d": Decimal(f"-{D65}"),
    "d0": Decimal(9999999999),
    "f": -0.5,
    "db": 1.7976931348623157e308,
    "ch": "ab",
    "vc": "é🐢",
    "tx": "",
    "bn": b"\x00\x01\x02\x03",
    "vb": b"\xff",
    "bl": b"",
    "dt": date(1, 1, 1),
    "dt2": date(9999, 12, 31),
    "tm": 86_399_000_000,  # MySQL TIME is a duration: signed microseconds
    "tm6": 1,
    "dtm": datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC),
    "dtm6": datetime(1, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
    "ts": datetime(2038, 1, 19, 3, 14, 7, 999999, tzinfo=UTC),
    "yr": 2155,
    "j": '{"a": [1, 2.5], "é": null}',  # MariaDB keeps JSON text as written: passed through untouched
    "e": "big",
    "e2": "in progress",
    "st": ["a", "c"],
    "b1": "1",
    "b64": "1" + "0" * 62 + "1",
    "u": uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
    "i6": "::1",
}


@pytest.fixture
def mysql_engine(mysql_url: str) -> Iterator[sa.Engine]:
    # TIMESTAMP is stored in UTC and read in the session zone: read it in UTC (see liberator.sqltypes)
    engine = sa.create_engine(mysql_url, connect_args={"init_command": "SET time_zone = '+00:00'"})
    yield engine
    engine.dispose()


def test_mariadb_types_reflect_and_round_trip_exactly(mysql_engine: sa.Engine, mysql_url: str) -> None:
    with mysql_engine.begin() as conn:
        conn.exec_driver_sql(MY_DDL)
        conn.exec_driver_sql(MY_ROW)
    table = reflect_table(mysql_engine, None, "everything")
    assert (table.schema, table.key) == (sa.make_url(mysql_url).database, ("id",))
    assert_model(table, MY_MODEL)
    db_types = {c.name: c.db_type for c in table.columns}
    assert db_types["id"] == "BIGINT(20) UNSIGNED"
    assert db_types["j"] == "JSON"
    assert db_types["e2"] == "ENUM('in progress','done')"

    with mysql_engine.connect() as conn:
        row = conn.execute(sa.text("SELECT * FROM everything")).mappings().one()
    key, value = round_trip(table, row)
    assert key == {"id": Decimal(2**64 - 1)}
    assert value == MY_EXPECTED
    assert {name: type(v) for name, v in value.items()} == {name: type(v) for name, v in MY_EXPECTED.items()}


def test_mariadb_durations_map_and_types_without_exact_mapping_are_refused(mysql_engine: sa.Engine) -> None:
    with mysql_engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE durations (id int PRIMARY KEY, tm time)")
        conn.exec_driver_sql("INSERT INTO durations VALUES (1, '-838:59:59')")
        conn.exec_driver_sql("CREATE TABLE shapes (id int PRIMARY KEY, g geometry)")
    table = reflect_table(mysql_engine, None, "durations")
    with mysql_engine.connect() as conn:
        row = conn.execute(sa.text("SELECT * FROM durations")).mappings().one()
    assert DatumConverter(table).convert(row)["tm"] == -3_020_399_000_000
    with pytest.raises(SchemaError, match=r"column g: type GEOMETRY has no exact Avro mapping"):
        reflect_table(mysql_engine, None, "shapes")
