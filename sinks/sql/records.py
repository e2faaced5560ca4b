"""Consumed records -> changes: decode through the registry (writer schema by id) and read the envelope.

Three value shapes are understood: liberator's change envelope (`is_change_schema`: `after` for c/u/r, a
delete for d, t empties the table when `truncate: true`, see docs/sql_sink.md), a row state (liberator's
Value record, or any producer's Avro record: an upsert) and a tombstone (a delete by key).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import fastavro

from liberator.avro import FramingError, unframe
from liberator.envelope import is_change_schema
from liberator.registry.client import RegistryClient, RegistryRequestError
from liberator.sink import SinkRecord, TransientSinkError

LIBERATOR_RECORDS = ("Value", "Envelope", "Key")


class BadRecord(Exception):
    """A record that cannot be applied; the message is the one-line reason."""


@dataclass(frozen=True)
class Decoded:
    schema_id: int
    schema: dict[str, Any]
    datum: Any


@dataclass(frozen=True)
class Change:
    """One record, understood: what to do to which table's row."""

    record: SinkRecord
    op: str  # upsert | delete | truncate | skip
    table_hint: tuple[str, str]  # ({table}, {schema}) for the table template
    key: Decoded | None
    row: dict[str, Any] | None  # the Value datum for upserts (field name -> datum value)
    row_schema: dict[str, Any] | None  # the Value record schema of `row`
    value_id: int = 0  # the writer schema id of the value (0 for tombstones)
    before: dict[str, Any] | None = None  # the image before a delete, when the envelope has it
    reason: str = ""  # why op is skip


class SchemaCache:
    """Writer schemas by id, parsed once."""

    def __init__(self, registry: RegistryClient) -> None:
        self.registry = registry
        self._parsed: dict[int, tuple[dict[str, Any], Any]] = {}

    def decode(self, data: bytes, what: str) -> Decoded:
        try:
            schema_id, body = unframe(data)
        except FramingError as exc:
            raise BadRecord(f"the {what} is not Avro in the Confluent wire format ({exc})") from None
        entry = self._parsed.get(schema_id)
        if entry is None:
            try:
                schema = self.registry.get_schema(schema_id)
            except RegistryRequestError as exc:
                if exc.status == 404:
                    raise BadRecord(f"the {what}'s schema id {schema_id} is not in the registry") from None
                raise TransientSinkError(f"schema registry: {exc}") from None
            entry = (schema, fastavro.parse_schema(schema))
            self._parsed[schema_id] = entry
        try:
            datum = fastavro.schemaless_reader(io.BytesIO(body), entry[1], None)
        except Exception as exc:  # fastavro raises many kinds on corrupt input
            raise BadRecord(f"the {what} does not decode with schema id {schema_id} ({type(exc).__name__})") from None
        return Decoded(schema_id, entry[0], datum)


def table_hint(schema: dict[str, Any] | None, topic: str) -> tuple[str, str]:
    """({table}, {schema}) for the template: liberator's records carry `<app>.<source>.<schema>.<table>` as
    their namespace; other producers' records are named by the topic's last dot-separated part."""
    if isinstance(schema, dict) and schema.get("name") in LIBERATOR_RECORDS and schema.get("namespace"):
        parts = str(schema["namespace"]).split(".")
        return parts[-1], parts[-2] if len(parts) > 1 else ""
    return topic.rsplit(".", 1)[-1], ""


def interpret(record: SinkRecord, cache: SchemaCache) -> Change:
    """Decode one record into a change; raises BadRecord with the reason."""
    key = cache.decode(record.key, "key") if record.key is not None else None
    if record.value is None:
        hint = table_hint(key.schema if key else None, record.topic)
        if key is None:
            raise BadRecord("a tombstone without a key: nothing says which row to delete")
        return Change(record, "delete", hint, key, None, None)
    value = cache.decode(record.value, "value")
    schema = value.schema
    if not isinstance(schema, dict) or schema.get("type") != "record":
        raise BadRecord(f"the value's schema (id {value.schema_id}) is not a record; a table row needs one")
    hint = table_hint(schema, record.topic)
    if is_change_schema(schema):
        datum = value.datum
        op = datum.get("op")
        row_schema = _envelope_value_schema(schema)
        if op in ("c", "u", "r"):
            if datum.get("after") is None:
                raise BadRecord(f"a change event with op {op!r} has no `after` image")
            return Change(record, "upsert", hint, key, datum["after"], row_schema, value.schema_id)
        if op == "d":
            return Change(record, "delete", hint, key, None, row_schema, value.schema_id, before=datum.get("before"))
        if op == "t":
            return Change(record, "truncate", hint, key, None, row_schema, value.schema_id)
        raise BadRecord(f"a change event with unknown op {op!r}")
    return Change(record, "upsert", hint, key, value.datum, schema, value.schema_id)


def _envelope_value_schema(envelope: dict[str, Any]) -> dict[str, Any]:
    for field in envelope.get("fields", []):
        if field.get("name") in ("before", "after"):
            for branch in field["type"] if isinstance(field["type"], list) else [field["type"]]:
                if isinstance(branch, dict) and branch.get("type") == "record":
                    return branch
    raise BadRecord("the change envelope carries no row record in before/after")
