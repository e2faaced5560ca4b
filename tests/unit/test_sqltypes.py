"""SQLAlchemy type objects, as each dialect reflects them -> the neutral model; SQLite reflection."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import types as sqltypes
from sqlalchemy.dialects import mysql, postgresql, sqlite

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
    TextRepr,
    TimestampType,
    TimeType,
    UuidType,
)
from liberator.sqltypes import neutral_type, reflect_table


def neutral(sa_type: Any, dialect: str) -> ColumnType:
    return neutral_type(sa_type, dialect=dialect, table="public.t", column="c")


@pytest.mark.parametrize(
    ("sa_type", "expected"),
    [
        (postgresql.SMALLINT(), IntType(16)),
        (postgresql.INTEGER(), IntType(32)),
        (postgresql.BIGINT(), IntType(64)),
        (postgresql.OID(), IntType(32, unsigned=True)),
        (postgresql.NUMERIC(10, 2), DecimalType(10, 2)),
        (postgresql.NUMERIC(), DecimalType(None, None)),
        (postgresql.NUMERIC(5), DecimalType(5, 0)),
        (postgresql.REAL(), FloatType(32)),
        (postgresql.DOUBLE_PRECISION(precision=53), FloatType(64)),
        (postgresql.FLOAT(), FloatType(64)),
        (postgresql.FLOAT(10), FloatType(32)),
        (postgresql.BOOLEAN(), BoolType()),
        (postgresql.VARCHAR(20), StringType(20)),
        (postgresql.CHAR(3), StringType(3, fixed=True)),
        (postgresql.TEXT(), StringType()),
        (postgresql.CITEXT(), StringType()),
        (sqltypes.String(), StringType()),  # PostgreSQL's "name" and "char" reflect as plain String
        (postgresql.BYTEA(), BytesType()),
        (postgresql.DATE(), DateType()),
        (postgresql.TIME(timezone=False), TimeType(6)),
        (postgresql.TIME(timezone=False, precision=0), TimeType(0)),
        (postgresql.TIME(timezone=True, precision=3), TimeType(3, with_timezone=True)),
        (postgresql.TIMESTAMP(timezone=False), TimestampType(6)),
        (postgresql.TIMESTAMP(timezone=True, precision=3), TimestampType(3, with_timezone=True)),
        (postgresql.INTERVAL(), IntervalType()),
        (postgresql.INTERVAL(fields="day to second", precision=3), IntervalType()),
        (postgresql.UUID(), UuidType()),
        (postgresql.JSON(), JsonType()),
        (postgresql.JSONB(), JsonType()),
        (postgresql.ENUM("happy", "sad", name="mood"), EnumType(("happy", "sad"), "mood")),
        (postgresql.ARRAY(postgresql.INTEGER()), ArrayType(IntType(32))),
        (postgresql.ARRAY(postgresql.ENUM("a", name="e"), dimensions=1), ArrayType(EnumType(("a",), "e"))),
        (postgresql.BIT(3), BitsType(3)),
        (postgresql.BIT(), BitsType(1)),
        (postgresql.BIT(varying=True), BitsType(0, varying=True)),
        (postgresql.BIT(8, varying=True), BitsType(8, varying=True)),
        (postgresql.INET(), TextRepr("inet")),
        (postgresql.CIDR(), TextRepr("cidr")),
        (postgresql.MACADDR(), TextRepr("macaddr")),
        (postgresql.MACADDR8(), TextRepr("macaddr8")),
        (postgresql.TSVECTOR(), TextRepr("tsvector")),
        (postgresql.INT4RANGE(), TextRepr("int4range")),
        (postgresql.TSTZMULTIRANGE(), TextRepr("tstzmultirange")),
        (postgresql.DOMAIN("positive", postgresql.INTEGER()), IntType(32)),
    ],
)
def test_postgresql(sa_type: Any, expected: ColumnType) -> None:
    assert neutral(sa_type, "postgresql") == expected


@pytest.mark.parametrize(
    ("sa_type", "expected"),
    [
        (mysql.TINYINT(), IntType(8)),
        (mysql.TINYINT(display_width=1), IntType(8)),  # BOOL/BOOLEAN: an int8, not a boolean
        (mysql.TINYINT(unsigned=True), IntType(8, unsigned=True)),
        (mysql.SMALLINT(), IntType(16)),
        (mysql.SMALLINT(unsigned=True), IntType(16, unsigned=True)),
        (mysql.MEDIUMINT(), IntType(24)),
        (mysql.MEDIUMINT(unsigned=True), IntType(24, unsigned=True)),
        (mysql.INTEGER(), IntType(32)),
        (mysql.INTEGER(unsigned=True), IntType(32, unsigned=True)),
        (mysql.BIGINT(), IntType(64)),
        (mysql.BIGINT(unsigned=True), IntType(64, unsigned=True)),
        (mysql.YEAR(), IntType(16)),
        (mysql.DECIMAL(10, 2), DecimalType(10, 2)),
        (mysql.DECIMAL(65, 30, unsigned=True), DecimalType(65, 30)),
        (mysql.DECIMAL(precision=10, scale=0), DecimalType(10, 0)),
        (mysql.FLOAT(), FloatType(32)),
        (mysql.FLOAT(7, 4), FloatType(32)),
        (mysql.DOUBLE(), FloatType(64)),
        (mysql.REAL(), FloatType(64)),
        (mysql.CHAR(2), StringType(2, fixed=True)),
        (mysql.NCHAR(2), StringType(2, fixed=True)),
        (mysql.VARCHAR(255), StringType(255)),
        (mysql.NVARCHAR(5), StringType(5)),
        (mysql.TINYTEXT(), StringType()),
        (mysql.TEXT(), StringType()),
        (mysql.MEDIUMTEXT(), StringType()),
        (mysql.LONGTEXT(), StringType()),
        (mysql.BINARY(16), BytesType(16, fixed=True)),
        (mysql.VARBINARY(10), BytesType(10)),
        (mysql.TINYBLOB(), BytesType()),
        (mysql.BLOB(), BytesType()),
        (mysql.MEDIUMBLOB(), BytesType()),
        (mysql.LONGBLOB(), BytesType()),
        (mysql.DATE(), DateType()),
        (mysql.TIME(), DurationType(0)),
        (mysql.TIME(fsp=6), DurationType(6)),
        (mysql.DATETIME(), TimestampType(0)),
        (mysql.DATETIME(fsp=3), TimestampType(3)),
        (mysql.TIMESTAMP(), TimestampType(0, with_timezone=True)),  # stored in UTC, an instant
        (mysql.TIMESTAMP(fsp=6), TimestampType(6, with_timezone=True)),
        (mysql.JSON(), JsonType()),
        (sqltypes.UUID(), UuidType()),  # MariaDB 10.7+
        (mysql.ENUM("small", "big"), EnumType(("small", "big"))),
        (mysql.ENUM("in progress", "done"), EnumType(("in progress", "done"))),
        (mysql.SET("a", "b"), SetType(("a", "b"))),
        (mysql.BIT(1), BitsType(1)),
        (mysql.BIT(64), BitsType(64)),
    ],
)
def test_mysql(sa_type: Any, expected: ColumnType) -> None:
    assert neutral(sa_type, "mysql") == expected
    assert neutral(sa_type, "mariadb") == expected


@pytest.mark.parametrize(
    ("sa_type", "expected"),
    [
        (sqlite.INTEGER(), IntType(64)),  # every SQLite integer is 64-bit
        (sqltypes.SMALLINT(), IntType(64)),
        (sqlite.REAL(), FloatType(64)),
        (sqltypes.FLOAT(), FloatType(64)),
        (sqlite.NUMERIC(10, 2), DecimalType(10, 2)),
        (sqlite.NUMERIC(), DecimalType(None, None)),
        (sqlite.TEXT(), StringType()),
        (sqlite.BLOB(), BytesType()),
        (sqlite.BOOLEAN(), BoolType()),
        (sqlite.DATE(), DateType()),  # type: ignore[no-untyped-call]
        (sqlite.DATETIME(), TimestampType(6)),  # type: ignore[no-untyped-call]
        (sqlite.TIME(), TimeType(6)),  # type: ignore[no-untyped-call]
        (sqlite.JSON(), JsonType()),
    ],
)
def test_sqlite(sa_type: Any, expected: ColumnType) -> None:
    assert neutral(sa_type, "sqlite") == expected


def test_unknown_types_raise_one_line_naming_the_fix() -> None:
    with pytest.raises(SchemaError) as raised:
        neutral_type(
            sqltypes.NullType(),
            dialect="postgresql",
            table="public.orders",
            column="geom",
            type_name="geometry",
        )
    assert str(raised.value) == (
        "table public.orders column geom: type GEOMETRY has no exact Avro mapping; leave the column out with "
        "`tables: [{table: public.orders, exclude: [geom]}]` or cast it in a `query:` entry"
    )
    with pytest.raises(SchemaError, match=r"column m: type MONEY has no exact Avro mapping"):
        neutral_type(postgresql.MONEY(), dialect="postgresql", table="public.orders", column="m")
    with pytest.raises(SchemaError, match=r"column h: type HSTORE has no exact"):
        neutral_type(postgresql.HSTORE(), dialect="postgresql", table="t", column="h")
    with pytest.raises(SchemaError, match=r"column a: type GEOMETRY has no exact"):  # inside an array
        neutral_type(
            postgresql.ARRAY(sqltypes.NullType()),
            dialect="postgresql",
            table="t",
            column="a",
            type_name="geometry",
        )


def test_types_sqlalchemy_does_not_know_but_we_do() -> None:
    assert neutral_type(sqltypes.NullType(), dialect="postgresql", table="t", column="x", type_name="xml") == (
        TextRepr("xml")
    )
    assert neutral_type(sqltypes.NullType(), dialect="mariadb", table="t", column="x", type_name="inet6") == (
        TextRepr("inet6")
    )


SQLITE_DDL = """
CREATE TABLE orders (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    amount NUMERIC(10,2),
    created DATETIME,
    paid BOOLEAN,
    blob BLOB,
    code VARCHAR(20),
    ratio REAL,
    "order date" DATE
)
"""


def test_sqlite_reflection_of_a_real_table(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'shop.db'}")
    with engine.begin() as conn:
        conn.exec_driver_sql(SQLITE_DDL)
        conn.exec_driver_sql("CREATE TABLE log (at DATETIME, msg TEXT)")
        conn.exec_driver_sql("CREATE TABLE geo (id INTEGER PRIMARY KEY, shape)")
    table = reflect_table(engine, None, "orders")
    assert table.schema is None
    assert table.name == "orders"
    assert table.key == ("id",)
    assert table.columns == (
        Column("id", IntType(64), nullable=False, db_type="INTEGER"),  # the rowid: never NULL
        Column("name", StringType(), nullable=False, db_type="TEXT"),
        Column("amount", DecimalType(10, 2), db_type="NUMERIC(10, 2)"),
        Column("created", TimestampType(6), db_type="DATETIME"),
        Column("paid", BoolType(), db_type="BOOLEAN"),
        Column("blob", BytesType(), db_type="BLOB"),
        Column("code", StringType(20), db_type="VARCHAR(20)"),
        Column("ratio", FloatType(64), db_type="REAL"),
        Column("order date", DateType(), db_type="DATE"),
    )
    assert reflect_table(engine, "main", "orders") == table

    with engine.connect() as conn:  # a Connection works as well as an Engine
        log = reflect_table(conn, None, "log", key=["at", "msg"])
    assert log.key == ("at", "msg")
    assert log.column("at").nullable

    with pytest.raises(SchemaError) as raised:
        reflect_table(engine, None, "log")
    assert str(raised.value) == (
        "table log has no primary key; name key columns with `key: [...]` in the source config"
    )
    with pytest.raises(SchemaError, match=r"table log: key column\(s\) nope not found; columns are at, msg"):
        reflect_table(engine, None, "log", key=["nope"])
    with pytest.raises(SchemaError) as raised:
        reflect_table(engine, None, "missing")
    assert str(raised.value) == (
        f"table missing not found in SQLite database {tmp_path / 'shop.db'}; check `tables:` (names are schema.table)"
    )
    with pytest.raises(SchemaError, match=r"table geo column shape: type \(none declared\) has no exact"):
        reflect_table(engine, None, "geo")
    engine.dispose()


def test_sqlite_temp_views_reflect_with_declared_types() -> None:
    engine = sa.create_engine("sqlite://")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (id INTEGER PRIMARY KEY, amount NUMERIC(10,2))")
        conn.exec_driver_sql("CREATE TEMPORARY VIEW v AS SELECT id, amount FROM t")
        view = reflect_table(conn, "temp", "v", key=["id"])
        assert (view.schema, view.key) == ("temp", ("id",))
        assert [(c.name, c.type) for c in view.columns] == [
            ("id", IntType(64)),
            ("amount", DecimalType(10, 2)),
        ]
    engine.dispose()
