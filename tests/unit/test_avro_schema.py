"""Neutral model -> Avro schemas: one mapping per type, nullability, names, and fastavro accepting them."""

from __future__ import annotations

import json
import warnings
from typing import Any

import avro.schema
import fastavro
import pytest

from liberator.avro import PROP_COLUMN, PROP_DB_TYPE, key_schema, namespace_for, record_schema, value_schema
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

INTERVAL_RECORD = {
    "type": "record",
    "name": "Value_Interval",
    "liberator.type": "interval",
    "fields": [
        {"name": "months", "type": "int"},
        {"name": "days", "type": "int"},
        {"name": "micros", "type": "long"},
    ],
}


def table_of(*columns: Column, key: tuple[str, ...] = ()) -> TableSchema:
    return TableSchema("public", "t", tuple(columns), key)


def field_type(ctype: ColumnType) -> Any:
    schema = value_schema(table_of(Column("c", ctype, nullable=False)), "ns")
    fastavro.parse_schema(schema)
    return schema["fields"][0]["type"]


@pytest.mark.parametrize(
    ("ctype", "expected"),
    [
        (IntType(8), "int"),
        (IntType(16), "int"),
        (IntType(24), "int"),
        (IntType(32), "int"),
        (IntType(64), "long"),
        (IntType(8, unsigned=True), "int"),
        (IntType(16, unsigned=True), "int"),
        (IntType(24, unsigned=True), "int"),
        (IntType(32, unsigned=True), "long"),
        (
            IntType(64, unsigned=True),
            {"type": "bytes", "logicalType": "decimal", "precision": 20, "scale": 0},
        ),
        (FloatType(32), "float"),
        (FloatType(64), "double"),
        (DecimalType(10, 2), {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}),
        (DecimalType(38, 10), {"type": "bytes", "logicalType": "decimal", "precision": 38, "scale": 10}),
        (DecimalType(12, None), {"type": "bytes", "logicalType": "decimal", "precision": 12, "scale": 0}),
        # PostgreSQL's negative scale and scale above precision widen to an equivalent Avro decimal
        (DecimalType(2, -3), {"type": "bytes", "logicalType": "decimal", "precision": 5, "scale": 0}),
        (DecimalType(3, 5), {"type": "bytes", "logicalType": "decimal", "precision": 5, "scale": 5}),
        (DecimalType(None, None), {"type": "string", "liberator.type": "decimal"}),
        (BoolType(), "boolean"),
        (StringType(), "string"),
        (StringType(3, fixed=True), "string"),
        (BytesType(), "bytes"),
        (BytesType(16, fixed=True), "bytes"),
        (DateType(), {"type": "int", "logicalType": "date"}),
        (TimeType(), {"type": "long", "logicalType": "time-micros"}),
        (TimeType(3), {"type": "long", "logicalType": "time-micros"}),
        (TimeType(with_timezone=True), {"type": "string", "liberator.type": "timetz"}),
        (DurationType(0), {"type": "long", "liberator.type": "duration-micros"}),
        (TimestampType(), {"type": "long", "logicalType": "timestamp-micros"}),
        (TimestampType(0, with_timezone=True), {"type": "long", "logicalType": "timestamp-micros"}),
        (UuidType(), {"type": "string", "logicalType": "uuid"}),
        (JsonType(), {"type": "string", "liberator.type": "json"}),
        (EnumType(("a", "b_2"), "mood"), {"type": "enum", "name": "Value_mood", "symbols": ["a", "b_2"]}),
        (EnumType(("a", "b")), {"type": "enum", "name": "Value_c", "symbols": ["a", "b"]}),
        (
            EnumType(("in progress", "done"), "state"),
            {"type": "string", "liberator.type": "enum", "liberator.symbols": ["in progress", "done"]},
        ),
        (EnumType((), "empty"), {"type": "string", "liberator.type": "enum", "liberator.symbols": []}),
        (
            SetType(("x", "y z")),
            {"type": "array", "items": "string", "liberator.type": "set", "liberator.symbols": ["x", "y z"]},
        ),
        (BitsType(5), {"type": "string", "liberator.type": "bits"}),
        (BitsType(0, varying=True), {"type": "string", "liberator.type": "bits"}),
        (IntervalType(), INTERVAL_RECORD),
        (ArrayType(IntType(32)), {"type": "array", "items": ["null", "int"]}),
        (ArrayType(StringType(), item_nullable=False), {"type": "array", "items": "string"}),
        (
            ArrayType(ArrayType(DecimalType(5, 1), item_nullable=False)),
            {
                "type": "array",
                "items": [
                    "null",
                    {
                        "type": "array",
                        "items": {"type": "bytes", "logicalType": "decimal", "precision": 5, "scale": 1},
                    },
                ],
            },
        ),
        (TextRepr("inet"), {"type": "string", "liberator.type": "inet"}),
    ],
)
def test_each_neutral_type_maps_to_its_narrowest_exact_avro_type(ctype: ColumnType, expected: Any) -> None:
    assert field_type(ctype) == expected


def test_nullable_columns_are_unions_with_null_default_and_not_null_ones_have_no_default() -> None:
    schema = value_schema(table_of(Column("a", IntType(), nullable=True), Column("b", IntType(), nullable=False)), "ns")
    assert schema["fields"] == [
        {"name": "a", "type": ["null", "int"], "default": None},
        {"name": "b", "type": "int"},
    ]


def test_record_layout_and_db_type_property() -> None:
    table = table_of(Column("id", IntType(64), nullable=False, db_type="bigint"), key=("id",))
    assert value_schema(table, "liberator.shop.public.t") == {
        "type": "record",
        "name": "Value",
        "namespace": "liberator.shop.public.t",
        "fields": [{"name": "id", "type": "long", PROP_DB_TYPE: "bigint"}],
    }
    assert key_schema(table, "")["name"] == "Key"
    assert "namespace" not in key_schema(table, "")


def test_key_schema_uses_key_columns_in_key_order() -> None:
    table = table_of(
        Column("a", IntType(), nullable=False),
        Column("b", StringType(), nullable=False),
        Column("c", BoolType()),
        key=("b", "a"),
    )
    assert [f["name"] for f in key_schema(table, "ns")["fields"]] == ["b", "a"]
    assert [f["name"] for f in value_schema(table, "ns")["fields"]] == ["a", "b", "c"]


def test_key_schema_without_key_names_the_fix() -> None:
    with pytest.raises(SchemaError) as raised:
        key_schema(table_of(Column("a", IntType())), "ns")
    assert str(raised.value) == (
        "table public.t has no primary key; name key columns with `key: [...]` in the source config"
    )


def test_invalid_column_names_are_sanitised_deterministically_and_keep_the_original() -> None:
    table = table_of(
        Column("order id", IntType()),
        Column("order_id", IntType()),  # valid: keeps its name, the renamed one moves aside
        Column("1st", IntType()),
        Column("größe", IntType()),
        Column("a-b", IntType()),
        Column("a.b", IntType()),
    )
    fields = value_schema(table, "ns")["fields"]
    assert [(f["name"], f.get(PROP_COLUMN)) for f in fields] == [
        ("order_id_2", "order id"),
        ("order_id", None),
        ("_1st", "1st"),
        ("gr__e", "größe"),
        ("a_b", "a-b"),
        ("a_b_2", "a.b"),
    ]
    fastavro.parse_schema(value_schema(table, "ns"))


def test_key_and_value_records_name_a_column_the_same_way() -> None:
    table = table_of(Column("a b", IntType(), nullable=False), Column("a-b", IntType(), nullable=False), key=("a-b",))
    assert [f["name"] for f in value_schema(table, "ns")["fields"]] == ["a_b", "a_b_2"]
    assert [f["name"] for f in key_schema(table, "ns")["fields"]] == ["a_b_2"]


def test_named_types_are_prefixed_by_record_and_shared_when_identical() -> None:
    mood = EnumType(("happy", "sad"), "mood")
    table = table_of(
        Column("m1", mood, nullable=False),
        Column("m2", mood),
        Column("other", EnumType(("x",), "mood"), nullable=False),  # same db name, other symbols
        Column("i1", IntervalType(), nullable=False),
        Column("i2", ArrayType(IntervalType())),
        Column("tags", ArrayType(EnumType(("a", "b")))),
        key=("m1", "i1"),
    )
    fields = {f["name"]: f["type"] for f in value_schema(table, "ns")["fields"]}
    assert fields["m1"] == {"type": "enum", "name": "Value_mood", "symbols": ["happy", "sad"]}
    assert fields["m2"] == ["null", "Value_mood"]
    assert fields["other"] == {"type": "enum", "name": "Value_mood_2", "symbols": ["x"]}
    assert fields["i1"]["name"] == "Value_Interval"
    assert fields["i2"] == ["null", {"type": "array", "items": ["null", "Value_Interval"]}]
    assert fields["tags"][1]["items"][1]["name"] == "Value_tags"
    key_fields = {f["name"]: f["type"] for f in key_schema(table, "ns")["fields"]}
    assert key_fields["m1"]["name"] == "Key_mood"
    assert key_fields["i1"]["name"] == "Key_Interval"
    fastavro.parse_schema(value_schema(table, "ns"))
    fastavro.parse_schema(key_schema(table, "ns"))


def test_record_schema_for_a_subset_of_columns() -> None:
    table = table_of(Column("a", IntType()), Column("b", StringType()))
    schema = record_schema(table, [table.column("b")], "Before", "ns")
    assert schema["name"] == "Before"
    assert [f["name"] for f in schema["fields"]] == ["b"]
    with pytest.raises(SchemaError):
        record_schema(table, [], "not valid", "ns")


def test_namespace_for_sanitises_each_part() -> None:
    assert namespace_for("liberator", "shop", "public") == "liberator.shop.public"
    assert namespace_for("liberator", "my-app", "1db", "dbo.Orders") == "liberator.my_app._1db.dbo.Orders"
    assert namespace_for("a", "", "..b..") == "a.b"


ALL_TYPES: list[ColumnType] = [
    IntType(8),
    IntType(64, unsigned=True),
    FloatType(32),
    DecimalType(10, 2),
    DecimalType(None, None),
    BoolType(),
    StringType(),
    BytesType(),
    DateType(),
    TimeType(),
    TimeType(with_timezone=True),
    DurationType(),
    TimestampType(),
    UuidType(),
    JsonType(),
    EnumType(("a", "b"), "e"),
    EnumType(("a b",), "e2"),
    SetType(("x", "y")),
    BitsType(3),
    IntervalType(),
    ArrayType(EnumType(("a", "b"), "e")),
    TextRepr("cidr"),
]


def test_every_schema_is_accepted_by_fastavro_and_the_avro_library_without_warnings() -> None:
    columns = [Column(f"c{i}", t, nullable=i % 2 == 0, db_type="x") for i, t in enumerate(ALL_TYPES)]
    table = table_of(*columns, key=("c1", "c3"))
    for schema in (value_schema(table, "a.b"), key_schema(table, "a.b")):
        fastavro.parse_schema(schema)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # unknown logicalTypes would warn: we use properties instead
            parsed = avro.schema.parse(json.dumps(schema))
        assert getattr(parsed, "fullname", None) == f"a.b.{schema['name']}"


def test_schemas_are_deterministic() -> None:
    columns = [Column(f"c{i}", t) for i, t in enumerate(ALL_TYPES)]
    first = json.dumps(value_schema(table_of(*columns), "ns"))
    assert json.dumps(value_schema(table_of(*columns), "ns")) == first
