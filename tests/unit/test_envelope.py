"""The change envelope: a valid Avro schema around a table's Value record, round-tripping its datums."""

from __future__ import annotations

import io
from decimal import Decimal

import fastavro
import pytest

from liberator.avro import AvroDecoder, AvroEncoder, DatumConverter, value_schema
from liberator.avro.wire import HEADER_SIZE
from liberator.envelope import Op, SourceInfo, change_schema, change_value, is_change_schema
from liberator.errors import SchemaError
from liberator.schema import Column, DecimalType, EnumType, IntType, StringType, TableSchema

TABLE = TableSchema(
    "shop",
    "orders",
    (
        Column("id", IntType(64, False), False, "bigint"),
        Column("total", DecimalType(10, 2), True, "decimal(10,2)"),
        Column("state", EnumType(("new", "paid")), False, "enum"),
        Column("note", StringType(), True, "text"),
    ),
    ("id",),
)
INFO = SourceInfo("mysql_binlog", "shop", "1", "shop", "orders")


def test_change_envelope_round_trips_before_and_after() -> None:
    schema = change_schema(value_schema(TABLE, "liberator.shop.orders"))
    assert is_change_schema(schema)
    convert = DatumConverter(TABLE)
    before = convert.convert({"id": 1, "total": Decimal("9.99"), "state": "new", "note": None})
    after = convert.convert({"id": 1, "total": Decimal("10.00"), "state": "paid", "note": "x"})
    datum = change_value(
        Op.update, before, after, INFO, position="0-1-7", commit_ms=5, transaction_id="0-1-7", order=2, ts_ms=9
    )
    decoded = AvroDecoder(schema).decode(AvroEncoder(schema, 3).encode(datum))
    assert decoded == datum
    assert decoded["transaction"] == {"id": "0-1-7", "order": 2}


def test_delete_envelope_has_no_after_and_state_values_are_not_envelopes() -> None:
    values = value_schema(TABLE, "liberator.shop.orders")
    schema = change_schema(values)
    before = DatumConverter(TABLE).convert({"id": 1, "total": None, "state": "new", "note": None})
    datum = change_value(Op.delete, before, None, INFO, ts_ms=1)
    assert AvroDecoder(schema).decode(AvroEncoder(schema, 1).encode(datum))["after"] is None
    assert not is_change_schema(values)


def test_naming_the_record_branches_writes_the_same_bytes_as_plain_fastavro() -> None:
    """The encoder names the branch of before/after/transaction for speed; the bytes must not change,
    the caller's datum must not be touched, and a bad nested value is still refused in one line."""
    schema = change_schema(value_schema(TABLE, "liberator.shop.orders"))
    convert = DatumConverter(TABLE)
    after = convert.convert({"id": 7, "total": Decimal("1.50"), "state": "paid", "note": "n"})
    for datum in (
        change_value(Op.create, None, after, INFO, position="p", transaction_id="t", order=1, ts_ms=3),
        change_value(Op.update, after, after, INFO, ts_ms=3),
        change_value(Op.delete, after, None, INFO, ts_ms=3),
    ):
        original = dict(datum)
        plain = io.BytesIO()
        fastavro.schemaless_writer(plain, fastavro.parse_schema(schema), datum)
        assert AvroEncoder(schema, 1).encode(datum)[HEADER_SIZE:] == plain.getvalue()
        assert datum == original
    bad = change_value(Op.create, None, {**after, "state": "lost"}, INFO, ts_ms=3)
    with pytest.raises(SchemaError, match=r"cannot encode a datum of record Envelope .* on field after"):
        AvroEncoder(schema, 1).encode(bad)
