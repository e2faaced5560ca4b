"""Outbox rows -> Kafka records: topic from the aggregate type, key = aggregate id, the event id and type
as headers, event time = occurred_at, the payload checked against the registry (and encoded, for JSON).

A row that cannot be published is never skipped silently: under the source's `on_error: stop` it raises
FatalSourceError (the source stops before it, nothing behind it is published out of order); under
`dead_letter` or `skip` it becomes a `PoisonRow` holding the original row and the reason, which the capture
core sends to the dead-letter topic or counts (liberator.capture.rowerrors), as for every source.
"""

from __future__ import annotations

import io
import operator
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import fastavro

from liberator.avro import AvroEncoder, FramingError, frame, unframe
from liberator.capture.rowerrors import HEADER_ERROR as HEADER_ERROR  # re-exported: one name for every reason header
from liberator.capture.rowerrors import INVALID, OnError, PoisonRow
from liberator.errors import ConfigError, FatalSourceError, SchemaError
from liberator.events import ChangeEvent, Stream
from liberator.outbox import values
from liberator.outbox.jsonavro import JsonToAvro, PayloadMismatch
from liberator.outbox.jsonwriter import JsonAvroWriter
from liberator.outbox.routing import OutboxRouting
from liberator.outbox.values import InvalidRow
from liberator.positions import Position
from liberator.registry.client import RegistryClient, RegistryRequestError

NAMESPACE = "liberator.outbox"
# The aggregate id as a plain Avro string, as Debezium's outbox router keys its events: consumers
# partition, join and compact by it without unwrapping a record.
KEY_SCHEMA: dict[str, Any] = {"type": "string"}
# Header names liberator sets; a row's own headers may not override them.
HEADER_ID = "id"
HEADER_EVENT_TYPE = "event_type"
HEADER_AGGREGATE_TYPE = "aggregate_type"
RESERVED_HEADERS = frozenset({HEADER_ID, HEADER_EVENT_TYPE, HEADER_AGGREGATE_TYPE, HEADER_ERROR})
# A payload that fails validation against a cached schema re-reads the subject at most this often.
_RECHECK_AFTER = 2.0
# Topics and subjects remembered per (aggregate type, event type), at most this many.
_DESTINATIONS_KEPT = 10_000


@dataclass(frozen=True)
class _SubjectSchema:
    fetched_at: float
    encoder: AvroEncoder
    writer: JsonAvroWriter  # the JSON payload's framed Avro bytes, generated for this schema


class OutboxRouter:
    """Turns one outbox row at a time into the records to publish. Not thread-safe: one per reading thread."""

    def __init__(
        self,
        routing: OutboxRouting,
        source_name: str,
        registry: RegistryClient | None,
        *,
        on_error: OnError = "stop",
        table: str = "outbox",
    ) -> None:
        if routing.payload == "json" and registry is None:
            raise ConfigError(
                f"source {source_name}: payload: json needs the schema registry to validate against; "
                "configure schema_registry or use payload: avro"
            )
        self.routing = routing
        self.source_name = source_name
        self.registry = registry
        self.columns = routing.columns
        self._streams: dict[str, Stream] = {}
        self._destinations: dict[tuple[str, str], tuple[Stream, str]] = {}
        self._subjects: dict[str, _SubjectSchema] = {}
        self._writer_schemas: dict[int, Any] = {}
        self.table = table
        # One C call for the four text columns: four lookups through Python were a sixth of the routing.
        self._text_columns = operator.itemgetter(
            self.columns.id, self.columns.aggregate_type, self.columns.aggregate_id, self.columns.event_type
        )
        # The outbox's own older settings win over the source's, where given.
        self.on_error: OnError = routing.on_invalid or on_error
        template = routing.dead_letter_topic
        self.dead_letter_topic = None if template is None else template.format(source=source_name)

    # -- public -------------------------------------------------------------------------------------

    def route(self, row: Mapping[str, Any], position: Position | None) -> list[ChangeEvent | PoisonRow]:
        try:
            return [self._domain_event(row, position)]
        except InvalidRow as exc:
            reason = f"source {self.source_name}: outbox row {self.describe(row)} cannot be published: {exc}"
        if self.on_error == "stop":
            raise FatalSourceError(
                f"{reason}; fix or delete that row (nothing after it is published until then), "
                "or set on_error: dead_letter or skip to divert such rows"
            )
        return [self._poison(row, reason)]

    def describe(self, row: Mapping[str, Any]) -> str:
        """`id=42 (order/17)`: enough to find the row, nothing of its payload."""
        ident = values.column_text(row.get(self.columns.id))
        aggregate = f"{row.get(self.columns.aggregate_type)}/{row.get(self.columns.aggregate_id)}"
        return f"{self.columns.id}={ident} ({aggregate})"

    def stream(self, topic: str) -> Stream:
        stream = self._streams.get(topic)
        if stream is None:
            # Values are pre-encoded: the application (avro) or the subject's registered schema (json)
            # owns the value schema; the runtime registers only the key schema.
            stream = Stream(topic, KEY_SCHEMA, None, f"outbox of {self.source_name}")
            self._streams[topic] = stream
        return stream

    # -- domain events ------------------------------------------------------------------------------

    def _domain_event(self, row: Mapping[str, Any], position: Position | None) -> ChangeEvent:
        cols = self.columns
        event_id, aggregate_type, aggregate_id, event_type = self._texts(row)
        if cols.occurred_at is not None:
            timestamp_ms = values.epoch_ms(self._get(row, cols.occurred_at), cols.occurred_at)
        else:
            timestamp_ms = int(time.time() * 1000)
        destination = self._destinations.get((aggregate_type, event_type))
        if destination is None:
            destination = self._destination(aggregate_type, event_type)
        stream, subject = destination
        headers = [
            (HEADER_ID, event_id.encode()),
            (HEADER_EVENT_TYPE, event_type.encode()),
            (HEADER_AGGREGATE_TYPE, aggregate_type.encode()),
        ]
        if cols.headers is not None:
            extra = values.header_pairs(self._get(row, cols.headers), cols.headers)
            clash = [name for name, _ in extra if name in RESERVED_HEADERS]
            if clash:
                raise InvalidRow(f"{cols.headers} sets the reserved header {clash[0]!r}; rename it")
            headers += extra
        payload = self._get(row, cols.payload)
        if self.routing.payload == "avro":
            value = self._checked_avro(row, payload)
        else:
            value = self._encoded_json(subject, payload)
        return ChangeEvent(stream, aggregate_id, value, timestamp_ms, position, tuple(headers))

    def _texts(self, row: Mapping[str, Any]) -> tuple[str, str, str, str]:
        """The id, aggregate type, aggregate id and event type as text. Plain non-empty strings are the usual
        case; anything else is checked and printed by text_of."""
        cols = self.columns
        try:
            event_id, aggregate_type, aggregate_id, event_type = self._text_columns(row)
        except KeyError:
            for column in (cols.id, cols.aggregate_type, cols.aggregate_id, cols.event_type):
                self._get(row, column)  # raises, naming the missing column
            raise
        if not (event_id.__class__ is str and event_id):
            event_id = values.text_of(event_id, cols.id)
        if not (aggregate_type.__class__ is str and aggregate_type):
            aggregate_type = values.text_of(aggregate_type, cols.aggregate_type)
        if not (aggregate_id.__class__ is str and aggregate_id):
            aggregate_id = values.text_of(aggregate_id, cols.aggregate_id)
        if not (event_type.__class__ is str and event_type):
            event_type = values.text_of(event_type, cols.event_type)
        return event_id, aggregate_type, aggregate_id, event_type

    def _destination(self, aggregate_type: str, event_type: str) -> tuple[Stream, str]:
        """(stream, JSON payloads' subject) of an aggregate type and event type; remembered."""
        fields = {"aggregate_type": aggregate_type, "event_type": event_type, "source": self.source_name}
        topic = values.check_topic(self.routing.topic.format(**fields))
        destination = self.stream(topic), self.routing.subject.format(topic=topic, **fields)
        if len(self._destinations) >= _DESTINATIONS_KEPT:
            self._destinations.clear()  # bounded whatever the application writes
        self._destinations[(aggregate_type, event_type)] = destination
        return destination

    def _get(self, row: Mapping[str, Any], column: str) -> Any:
        try:
            return row[column]
        except KeyError:
            raise FatalSourceError(
                f"source {self.source_name}: the outbox rows have no column {column!r} (they have "
                f"{', '.join(map(str, row))}); fix the `columns` mapping"
            ) from None

    def _checked_avro(self, row: Mapping[str, Any], payload: Any) -> bytes:
        cols = self.columns
        data = values.payload_bytes(payload, cols.payload)
        declared = None
        if cols.schema_id is not None:
            stated = self._get(row, cols.schema_id)
            # NULL: nothing to cross-check in wire format; raw bodies cannot do without it.
            if stated is not None or self.routing.avro_framing == "raw":
                declared = values.schema_id_of(stated, cols.schema_id)
        if self.routing.avro_framing == "raw":
            assert declared is not None
            schema_id, body, data = declared, data, frame(declared, data)
        else:
            try:
                schema_id, body = unframe(data)
            except FramingError as exc:
                raise InvalidRow(f"{cols.payload} is not in the Confluent wire format ({exc})") from None
            if declared is not None and declared != schema_id:
                raise InvalidRow(f"{cols.payload} carries schema id {schema_id} but {cols.schema_id} says {declared}")
        writer = self._writer_schema(schema_id)
        if writer is not None:
            buffer = io.BytesIO(body)
            try:
                fastavro.schemaless_reader(buffer, writer, None)
            except Exception as exc:  # fastavro raises many kinds on corrupt input
                raise InvalidRow(
                    f"{cols.payload} does not decode with schema id {schema_id} ({type(exc).__name__})"
                ) from None
            if buffer.tell() != len(body):
                raise InvalidRow(
                    f"{cols.payload} has {len(body) - buffer.tell()} bytes left after a schema id {schema_id} record"
                )
        return data

    def _writer_schema(self, schema_id: int) -> Any:
        """The parsed schema of a registry id (ids never change, so cached for good); None without a registry."""
        if self.registry is None:
            return None
        parsed = self._writer_schemas.get(schema_id)
        if parsed is None:
            try:
                schema = self.registry.get_schema(schema_id)
            except RegistryRequestError as exc:
                if exc.status == 404:
                    raise InvalidRow(f"schema id {schema_id} is not in the schema registry") from None
                raise
            parsed = fastavro.parse_schema(schema)
            self._writer_schemas[schema_id] = parsed
        return parsed

    def _encoded_json(self, subject: str, payload: Any) -> bytes:
        document = values.payload_json(payload, self.columns.payload)
        cached = self._subject_schema(subject, refresh=False)
        try:
            return self._encode(cached, document)
        except InvalidRow:
            # The application may have registered a newer version since we looked: check once more.
            if time.monotonic() - cached.fetched_at < _RECHECK_AFTER:
                raise
            fresh = self._subject_schema(subject, refresh=True)
            if fresh.encoder.schema_id == cached.encoder.schema_id:
                raise
            return self._encode(fresh, document)

    def _encode(self, subject_schema: _SubjectSchema, document: Any) -> bytes:
        try:
            return subject_schema.writer.write(document)
        except (PayloadMismatch, SchemaError) as exc:
            raise InvalidRow(f"{exc} (schema id {subject_schema.encoder.schema_id})") from None

    def _subject_schema(self, subject: str, refresh: bool) -> _SubjectSchema:
        cached = self._subjects.get(subject)
        now = time.monotonic()
        if cached is not None and not refresh and now - cached.fetched_at < self.routing.schema_refresh:
            return cached
        assert self.registry is not None
        latest = self.registry.latest(subject)
        if latest is None:
            raise InvalidRow(
                f"subject {subject!r} has no schema in the registry to validate the JSON payload against; "
                "register the event's Avro schema under it"
            )
        schema_id, _version, schema = latest
        if cached is not None and cached.encoder.schema_id == schema_id:
            fresh = _SubjectSchema(now, cached.encoder, cached.writer)
        else:
            encoder = AvroEncoder(schema, schema_id)
            fresh = _SubjectSchema(now, encoder, JsonAvroWriter(schema, encoder, JsonToAvro(schema)))
        self._subjects[subject] = fresh
        return fresh

    # -- poison rows --------------------------------------------------------------------------------

    def _poison(self, row: Mapping[str, Any], reason: str) -> PoisonRow:
        """The row as it was read, for the core's on_error policy (dead-letter topic, or skipped and counted)."""
        cols = self.columns
        try:
            timestamp_ms = values.epoch_ms(row.get(cols.occurred_at), "occurred_at") if cols.occurred_at else None
        except InvalidRow:
            timestamp_ms = None
        return PoisonRow(
            self.table,
            reason,
            on_error=self.on_error,
            after={str(name): value for name, value in row.items()},
            key={cols.id: row.get(cols.id)},
            timestamp_ms=timestamp_ms,
            kind=INVALID,
            topic=self.dead_letter_topic,
        )
