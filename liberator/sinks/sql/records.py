"""Consumed bytes -> datums: the writer schema by id from the registry, decoded by a reader generated for it.

Three value shapes are understood: liberator's change envelope (`is_change_schema`: `after` for c/u/r, a
delete for d, t empties the table when `truncate: true`, see docs/sql_sink.md), a row state (liberator's
Value record, or any producer's Avro record: an upsert) and a tombstone (a delete by key).

What only depends on a writer schema -- its parse, its generated `DatumReader`, whether it is an envelope,
which record holds the row -- is worked out once per schema id (`Writer`); per record only the bytes are read.
"""

from __future__ import annotations

from typing import Any

from liberator.avro import HEADER_SIZE, FramingError, framed_schema_id
from liberator.avro.datumreader import DatumReader
from liberator.envelope import is_change_schema
from liberator.registry.client import RegistryClient, RegistryRequestError
from liberator.sink import TransientSinkError

LIBERATOR_RECORDS = ("Value", "Envelope", "Key")


class BadRecord(Exception):
    """A record that cannot be applied; the message is the one-line reason."""


class Writer:
    """One writer schema (by registry id): how its bodies are read and what their datums hold."""

    def __init__(self, schema_id: int, schema: Any) -> None:
        self.schema_id = schema_id
        self.schema = schema
        self.reader = DatumReader(schema)
        self.is_record = isinstance(schema, dict) and schema.get("type") == "record"
        self.envelope = self.is_record and is_change_schema(schema)
        # The record of a row: the schema itself, or the envelope's before/after branch (None: it has none).
        self.row_schema: dict[str, Any] | None = (
            _envelope_value_schema(schema) if self.envelope else schema if self.is_record else None
        )

    def read(self, data: bytes, what: str) -> Any:
        """The datum of a framed key or value of this writer."""
        try:
            return self.reader.read(data, HEADER_SIZE)
        except Exception as exc:  # fastavro raises many kinds on corrupt input
            raise BadRecord(
                f"the {what} does not decode with schema id {self.schema_id} ({type(exc).__name__})"
            ) from None


class SchemaCache:
    """Writer schemas by id, fetched and prepared once."""

    def __init__(self, registry: RegistryClient) -> None:
        self.registry = registry
        self._writers: dict[int, Writer] = {}

    def writer(self, data: bytes, what: str) -> Writer:
        """The writer of a Confluent-framed key or value (whose body `Writer.read` reads in place)."""
        try:
            schema_id = framed_schema_id(data)
        except FramingError as exc:
            raise BadRecord(f"the {what} is not Avro in the Confluent wire format ({exc})") from None
        writer = self._writers.get(schema_id)
        if writer is None:
            writer = self._writers[schema_id] = Writer(schema_id, self._fetch(schema_id, what))
        return writer

    def _fetch(self, schema_id: int, what: str) -> Any:
        try:
            return self.registry.get_schema(schema_id)
        except RegistryRequestError as exc:
            if exc.status == 404:
                raise BadRecord(f"the {what}'s schema id {schema_id} is not in the registry") from None
            raise TransientSinkError(f"schema registry: {exc}") from None


def table_hint(schema: Any, topic: str) -> tuple[str, str]:
    """({table}, {schema}) for the template: liberator's records carry `<app>.<source>.<schema>.<table>` as
    their namespace; other producers' records are named by the topic's last dot-separated part."""
    if isinstance(schema, dict) and schema.get("name") in LIBERATOR_RECORDS and schema.get("namespace"):
        parts = str(schema["namespace"]).split(".")
        return parts[-1], parts[-2] if len(parts) > 1 else ""
    return topic.rsplit(".", 1)[-1], ""


def _envelope_value_schema(envelope: dict[str, Any]) -> dict[str, Any] | None:
    for field in envelope.get("fields", []):
        if field.get("name") in ("before", "after"):
            for branch in field["type"] if isinstance(field["type"], list) else [field["type"]]:
                if isinstance(branch, dict) and branch.get("type") == "record":
                    return branch
    return None
