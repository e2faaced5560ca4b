"""The Confluent wire format: magic byte 0, the schema id as 4 big-endian bytes, the Avro binary body."""

from __future__ import annotations

import io
import struct
from typing import Any

import fastavro
from avro.constants import PRIMITIVE_TYPES

from liberator.avro.binary import string_bytes
from liberator.errors import LiberatorError, SchemaError

MAGIC_BYTE = 0
_HEADER = struct.Struct(">bI")
HEADER_SIZE = _HEADER.size


class FramingError(LiberatorError, ValueError):
    """Bytes that are not a Confluent-framed Avro message."""


def _header(schema_id: int) -> bytes:
    if not 0 <= schema_id < 2**31:  # the registry's ids are Java ints
        raise FramingError(f"schema id {schema_id} is out of range")
    return _HEADER.pack(MAGIC_BYTE, schema_id)


def frame(schema_id: int, payload: bytes) -> bytes:
    return _header(schema_id) + payload


def framed_schema_id(data: bytes) -> int:
    """The schema id of a framed message, whose Avro body starts at HEADER_SIZE (read in place, no copy)."""
    if len(data) < HEADER_SIZE:
        raise FramingError(f"message of {len(data)} bytes is too short for the Confluent wire format")
    magic, schema_id = _HEADER.unpack_from(data)
    if magic != MAGIC_BYTE:
        raise FramingError(
            f"unknown magic byte {data[0]} (expected {MAGIC_BYTE}): not Avro in the Confluent wire format"
        )
    return int(schema_id)


def unframe(data: bytes) -> tuple[int, bytes]:
    """(schema id, Avro body) of a framed message."""
    return framed_schema_id(data), bytes(data[HEADER_SIZE:])


class AvroEncoder:
    """Encodes datums of one schema into framed bytes; shareable between threads (no reused buffer,
    which measured no faster)."""

    def __init__(self, schema: dict[str, Any], schema_id: int) -> None:
        self.schema = schema
        self.schema_id = schema_id
        self._parsed = fastavro.parse_schema(schema)
        self._header = _header(schema_id)
        self._record_unions = _nullable_record_fields(self._parsed)
        # A plain string schema (the outbox's keys) is written here: fastavro's writer with its buffer cost
        # five times as much for the few bytes of a key.
        self._plain_string = schema in ("string", {"type": "string"})

    def encode(self, datum: Any) -> bytes:
        if self._plain_string and datum.__class__ is str:
            try:
                return self._header + string_bytes(datum)
            except UnicodeEncodeError:
                pass  # fastavro's error below names the schema
        if self._record_unions and isinstance(datum, dict):
            # Name the branch of ["null", record] fields (fastavro's tuple notation): otherwise fastavro
            # validates the whole nested record against the branch before writing it, which made a change
            # envelope (before/after/transaction) half again as slow to encode.
            named = None
            for field, branch in self._record_unions:
                value = datum.get(field)
                if value is not None and not isinstance(value, tuple):
                    if named is None:
                        named = dict(datum)
                    named[field] = (branch, value)
            if named is not None:
                try:
                    return self._write(named)
                except SchemaError:
                    pass  # write it again unnamed: fastavro's message then names the field that failed
        return self._write(datum)

    def _write(self, datum: Any) -> bytes:
        buffer = io.BytesIO()
        buffer.write(self._header)
        try:
            fastavro.schemaless_writer(buffer, self._parsed, datum)
        except (ValueError, TypeError, OverflowError) as exc:
            name = self.schema.get("name", "?") if isinstance(self.schema, dict) else "?"
            message = " ".join(str(exc).split())
            raise SchemaError(
                f"cannot encode a datum of record {name} (schema id {self.schema_id}): {message}"
            ) from None
        return buffer.getvalue()


def _nullable_record_fields(parsed: Any) -> tuple[tuple[str, str], ...]:
    """(field, full record name) for each top-level field of type ["null", record] in a parsed schema."""
    if not isinstance(parsed, dict) or parsed.get("type") != "record":
        return ()
    found: list[tuple[str, str]] = []
    for field in parsed.get("fields", []):
        branches = field.get("type")
        if not isinstance(branches, list) or len(branches) != 2 or "null" not in branches:
            continue
        other = branches[1] if branches[0] == "null" else branches[0]
        if isinstance(other, dict) and other.get("type") == "record":
            found.append((field["name"], other["name"]))  # parse_schema made the name full
        elif isinstance(other, str) and other not in PRIMITIVE_TYPES:
            found.append((field["name"], other))  # a reference to a type named earlier, already full
    return tuple(found)


class AvroDecoder:
    """Decodes framed bytes written with `schema` (the writer's schema; ids are only checked if given)."""

    def __init__(self, schema: dict[str, Any], schema_id: int | None = None) -> None:
        self._parsed = fastavro.parse_schema(schema)
        self.schema_id = schema_id

    def decode(self, data: bytes) -> Any:
        schema_id, body = unframe(data)
        if self.schema_id is not None and schema_id != self.schema_id:
            raise FramingError(f"message has schema id {schema_id}, expected {self.schema_id}")
        return fastavro.schemaless_reader(io.BytesIO(body), self._parsed, None)


def decode(data: bytes, schema: dict[str, Any]) -> tuple[int, Any]:
    """(schema id, datum) of one framed message, for tests and `tail`."""
    schema_id, body = unframe(data)
    return schema_id, fastavro.schemaless_reader(io.BytesIO(body), fastavro.parse_schema(schema), None)
