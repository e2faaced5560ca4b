"""A row encoder specialised for one table shape: values in column order -> the Avro binary body.

`DatumConverter` + fastavro cost about 7 µs for a flat six-field row, most of it fastavro's generic
union and logical-type dispatch on a dict it first has to be given. `RowEncoder` generates, once per
(table, columns), a Python function that takes the values as the connector hands them over and writes
the bytes directly (`liberator.avro.rowcode`), with DatumConverter + fastavro kept as the fallback for
any value it does not take, so the output and the errors stay exactly the reference's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from liberator.avro.convert import DatumConverter
from liberator.avro.rowcode import record_function_source
from liberator.avro.schemas import record_schema
from liberator.avro.wire import HEADER_SIZE, AvroEncoder, frame
from liberator.schema import Column, TableSchema


class RowEncoder:
    """Encodes rows of one table, or of some of its columns, to Avro binary bodies.

    ``encode(values)`` takes the values in column order (what `DatumConverter.convert_values` takes) and
    returns exactly the bytes of ``fastavro.schemaless_writer(parsed record schema,
    DatumConverter(table, columns).convert_values(values))``: the record schema is that of
    `value_schema` (all columns) or `key_schema` (`for_key`); their names do not reach the bytes. A value
    that does not fit raises the same `DatumError`, with the same message; a datum fastavro refuses
    raises `SchemaError` as `AvroEncoder` does (naming `record`).

    With `schema_id` the output is the framed Confluent message (header included), ready to produce;
    without, the body alone (to go into an envelope). Shareable between threads; `slow_rows` counts the
    rows that took the reference path (a statistic, not exact under threads).
    """

    encode: Callable[[Sequence[Any]], bytes]

    def __init__(
        self,
        table: TableSchema,
        columns: Sequence[Column] | None = None,
        *,
        schema_id: int | None = None,
        record: str = "Value",
    ) -> None:
        self.table = table
        self.columns = tuple(table.columns if columns is None else columns)
        self.schema_id = schema_id
        self.slow_rows = 0
        self._converter = DatumConverter(table, self.columns)
        # names and namespace do not reach the bytes; the record's name is in fastavro's error messages
        self._reference = AvroEncoder(record_schema(table, self.columns, record, ""), schema_id or 0)
        self._cut = 0 if schema_id is not None else HEADER_SIZE
        header = b"" if schema_id is None else frame(schema_id, b"")
        generated = record_function_source(self.columns, header)
        generated.names["_slow"] = self._slow
        self.source = generated.source()  # the generated function, for the curious and for tests
        exec(compile(self.source, f"<RowEncoder {table.qualified_name}>", "exec"), generated.names)
        self.encode = generated.names["encode"]

    @classmethod
    def for_key(cls, table: TableSchema, *, schema_id: int | None = None) -> RowEncoder:
        """The encoder of the table's Key record: takes the key columns' values, in key order."""
        return cls(table, table.key_columns, schema_id=schema_id, record="Key")

    def encode_many(self, rows: Iterable[Sequence[Any]]) -> list[bytes]:
        encode = self.encode
        return [encode(values) for values in rows]

    def _slow(self, values: Sequence[Any]) -> bytes:
        """The reference path for a row the generated code did not take: raises its errors, or writes its bytes."""
        self.slow_rows += 1
        data = self._reference.encode(self._converter.convert_values(values))
        return data[self._cut :] if self._cut else data
