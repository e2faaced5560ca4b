"""ChangeWriter: the change envelope from pre-encoded parts, byte for byte fastavro's of `change_value`."""

from __future__ import annotations

import io
import time
from typing import Any

import fastavro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from liberator.avro import (
    AvroDecoder,
    AvroEncoder,
    ChangeWriter,
    DatumConverter,
    RowEncoder,
    change_context,
    value_schema,
)
from liberator.envelope import Op, SourceInfo, change_schema, change_value
from liberator.errors import SchemaError
from liberator.schema import Column, IntType, StringType, TableSchema
from tests.unit.avro_strategies import INT64_MAX, INT64_MIN, tables_and_rows

LONGS = st.one_of(st.integers(INT64_MIN, INT64_MAX), st.integers(-5, 2**41), st.sampled_from([INT64_MIN, INT64_MAX, 0]))
PARTS = st.text(max_size=12)  # without lone surrogates, which no string field can hold
INFOS = st.builds(SourceInfo, PARTS, PARTS, PARTS, PARTS, PARTS)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    tables_and_rows(max_columns=4, rows=2, valid=True),
    st.sampled_from(list(Op)),
    INFOS,
    st.fixed_dictionaries(
        {
            "position": st.one_of(st.none(), PARTS, st.just("mysql-bin.000003:4711 żółw")),
            "commit_ms": st.one_of(st.none(), LONGS),
            "snapshot": st.booleans(),
            "transaction_id": st.one_of(st.none(), st.text(max_size=20)),
        }
    ),
    LONGS,
    LONGS,
    st.sampled_from(["both", "before", "after", "neither"]),
)
def test_envelope_bytes_are_fastavros(
    case: tuple[TableSchema, list[list[Any]]],
    op: Op,
    info: SourceInfo,
    shared: dict[str, Any],
    order: int,
    ts_ms: int,
    images: str,
) -> None:
    table, (old, new) = case
    converter, encoder = DatumConverter(table), RowEncoder(table)
    before = None if images in ("after", "neither") else old
    after = None if images in ("before", "neither") else new
    before_datum = None if before is None else converter.convert_values(before)
    after_datum = None if after is None else converter.convert_values(after)
    before_body = None if before is None else encoder.encode(before)
    after_body = None if after is None else encoder.encode(after)
    schema = change_schema(value_schema(table, "liberator.s.t"))
    datum = change_value(op, before_datum, after_datum, info, order=order, ts_ms=ts_ms, **shared)
    expected = fastavro_body(schema, datum)
    context = change_context(**shared)
    assert ChangeWriter(info).write(op, before_body, after_body, context, order, ts_ms) == expected
    framed = ChangeWriter(info, schema_id=12).write(op, before_body, after_body, context, order, ts_ms)
    assert framed == AvroEncoder(schema, 12).encode(datum)


def fastavro_body(schema: dict[str, Any], datum: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, fastavro.parse_schema(schema), datum)
    return buffer.getvalue()


TABLE = TableSchema("shop", "orders", (Column("id", IntType(64), False), Column("note", StringType())), ("id",))
INFO = SourceInfo("postgres_wal", "shop", "db:5432", "shop", "orders")


def test_one_context_serves_every_row_of_a_transaction_and_every_table() -> None:
    context = change_context(position="0/16B3748", commit_ms=1_700_000_000_000, transaction_id="761")
    other = SourceInfo("postgres_wal", "shop", "db:5432", "shop", "customers")
    encoder = RowEncoder(TABLE)
    schema = change_schema(value_schema(TABLE, "ns"))
    for order, info in enumerate((INFO, other, INFO), start=1):
        after = [order, "n"]
        body = ChangeWriter(info).write(Op.create, None, encoder.encode(after), context, order, 5)
        datum = change_value(
            Op.create,
            None,
            DatumConverter(TABLE).convert_values(after),
            info,
            position="0/16B3748",
            commit_ms=1_700_000_000_000,
            transaction_id="761",
            order=order,
            ts_ms=5,
        )
        assert body == fastavro_body(schema, datum)


def test_ts_ms_defaults_to_now_and_truncates_have_no_images() -> None:
    schema = change_schema(value_schema(TABLE, "ns"))
    before = int(time.time() * 1000)
    data = ChangeWriter(INFO, schema_id=3).write(Op.truncate, None, None, change_context())
    decoded = AvroDecoder(schema, 3).decode(data)
    assert before <= decoded["ts_ms"] <= int(time.time() * 1000)
    assert decoded == change_value(Op.truncate, None, None, INFO, ts_ms=decoded["ts_ms"])


@pytest.mark.parametrize(
    "shared",
    [{"position": 5}, {"commit_ms": "soon"}, {"commit_ms": True}, {"commit_ms": 2**63}, {"transaction_id": b"x"}],
)
def test_wrong_shared_parts_are_one_line_schema_errors(shared: dict[str, Any]) -> None:
    with pytest.raises(SchemaError, match="cannot encode a change envelope's source or transaction"):
        change_context(**shared)


@pytest.mark.parametrize(("op", "order", "ts_ms"), [("x", 1, 1), (Op.create, 2**63, 1), (Op.create, 1, -(2**63) - 1)])
def test_wrong_row_parts_are_one_line_schema_errors(op: Any, order: int, ts_ms: int) -> None:
    context = change_context(transaction_id="t")
    with pytest.raises(SchemaError, match=r"cannot encode a change envelope of shop\.orders"):
        ChangeWriter(INFO).write(op, None, None, context, order, ts_ms)


def test_one_writer_over_many_rows_keeps_every_ts_ms_and_order_exact() -> None:
    """The writer keeps the last ts_ms's varint: a change of ts_ms (or of its class) must not reuse it."""
    writer, encoder = ChangeWriter(INFO), RowEncoder(TABLE)
    schema = change_schema(value_schema(TABLE, "ns"))
    context = change_context(position="p", transaction_id="t")
    steps = [(5, 1), (5, 2), (6, 8191), (5, 8192), (True, 2**40), (1, -1), (2**62, 0), (2**62, 2**63 - 1)]
    for ts_ms, order in steps:
        after = [order, None]
        datum = change_value(
            Op.create, None, DatumConverter(TABLE).convert_values(after), INFO, position="p", transaction_id="t",
            order=order, ts_ms=ts_ms,
        )  # fmt: skip
        assert writer.write(Op.create, None, encoder.encode(after), context, order, ts_ms) == fastavro_body(
            schema, datum
        )
