"""What Avro fields mean to the SQL sink, and which column types may hold them."""

from __future__ import annotations

import pytest

from liberator.avro import value_schema
from liberator.schema import (
    ArrayType,
    BitsType,
    Column,
    DecimalType,
    DurationType,
    EnumType,
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
from liberator.sink import FatalSinkError
from liberator.sinks.sql.columns import Kind, db_type_usable, field_columns, kind_of, normalised
from liberator.sinks.sql.config import SqlSinkConfig
from liberator.sinks.sql.tables import holds
from liberator.sinks.sql.values import to_column

TABLE = TableSchema(
    "public",
    "t",
    (
        Column("id", IntType(64, unsigned=True), nullable=False, db_type="BIGINT UNSIGNED"),
        Column("d", DecimalType(10, 2), db_type="NUMERIC(10, 2)"),
        Column("nu", DecimalType(None, None)),
        Column("ts", TimestampType(with_timezone=True)),
        Column("tt", TimeType(with_timezone=True)),
        Column("du", DurationType(6), db_type="TIME(6)"),
        Column("u", UuidType()),
        Column("j", JsonType()),
        Column("e", EnumType(("a", "b"), "mood")),
        Column("e2", EnumType(("in progress",))),
        Column("s", SetType(("x", "y"))),
        Column("b", BitsType(3)),
        Column("iv", IntervalType()),
        Column("ia", ArrayType(IntType(32))),
        Column("ip", TextRepr("inet")),
        Column("my col", StringType(20), db_type="VARCHAR(20)"),
    ),
    ("id",),
)


def test_every_liberator_field_has_a_kind_and_keeps_its_column_name() -> None:
    fields = field_columns(value_schema(TABLE, "app.src.public.t"), "t")
    kinds = {f.column: f.kind for f in fields}
    assert kinds["id"] == Kind("decimal", 20, 0) and not fields[0].nullable
    assert kinds["d"] == Kind("decimal", 10, 2)
    assert [kinds[c].name for c in ("nu", "ts", "tt", "u", "j", "e", "e2", "s", "b", "iv", "ip")] == [
        "numeric", "timestamp", "timetz", "uuid", "json", "enum", "enum", "set", "bits", "interval", "text",
    ]  # fmt: skip
    assert kinds["ia"] == Kind("array", item=Kind("int"))
    assert kinds["du"] == Kind("duration")
    assert kinds["e2"].symbols == ("in progress",) and kinds["s"].symbols == ("x", "y")
    renamed = fields[-1]
    assert (renamed.field, renamed.column, renamed.db_type) == ("my_col", "my col", "VARCHAR(20)")


def test_mysql_time_goes_to_mysql_as_time_text_keeping_the_sign() -> None:
    to_mysql = to_column(Kind("duration"), "mariadb", None)
    assert to_mysql(-1) == "-00:00:00.000001"  # pymysql's own timedelta literal says '-1:59:59.999999'
    assert to_mysql(-3_020_399_000_000) == "-838:59:59.000000"
    assert to_mysql(45_296_789_012) == "12:34:56.789012"
    assert to_column(Kind("duration"), "postgresql", None)(-1) == -1  # a BIGINT of microseconds
    assert holds("long", {"type": "long", "liberator.type": "duration-micros"})


def test_unions_of_several_types_stop_with_the_field_named() -> None:
    with pytest.raises(FatalSinkError, match="field x: a union"):
        field_columns({"type": "record", "name": "R", "fields": [{"name": "x", "type": ["int", "string"]}]}, "t")
    assert kind_of({"type": "long", "logicalType": "local-timestamp-micros"}, {}, "t") == Kind("local_timestamp")


def test_holds_allows_widening_only() -> None:
    dec = {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}
    assert holds("long", "int") and not holds("int", "long")
    assert holds({**dec, "precision": 12}, dec) and not holds({**dec, "precision": 8}, dec)
    assert not holds({**dec, "scale": 1}, dec)
    assert holds(["null", "string"], "string") and not holds("string", ["null", "string"])
    assert not holds("bytes", "string")
    assert holds("string", normalised({"type": "enum", "name": "E", "symbols": ["a"]}))


def test_db_types_are_tried_only_where_the_dialect_knows_the_spelling() -> None:
    assert db_type_usable("VARCHAR(20)", "postgresql") and db_type_usable("TIMESTAMP WITH TIME ZONE", "postgresql")
    assert db_type_usable("INTEGER[]", "postgresql") and not db_type_usable("mood", "postgresql")
    assert db_type_usable("BIGINT UNSIGNED", "mysql") and db_type_usable("INET6", "mariadb")
    assert not db_type_usable("", "sqlite") and db_type_usable("anything", "sqlite")


def test_config_rejects_bad_patterns_and_placeholders() -> None:
    base = {"name": "s", "type": "sql", "url": "sqlite://"}
    assert SqlSinkConfig.model_validate({**base, "topics": "^a\\..*"}).topics == "^a\\..*"
    with pytest.raises(ValueError, match="not a regular expression"):
        SqlSinkConfig.model_validate({**base, "topics": "a("})
    with pytest.raises(ValueError, match="unknown placeholder"):
        SqlSinkConfig.model_validate({**base, "topics": ["a"], "table": "{nope}"})
    with pytest.raises(ValueError, match="at least one topic"):
        SqlSinkConfig.model_validate({**base, "topics": []})
