"""Turns ChangeEvents into Kafka records: registers schemas, serialises, produces, tracks delivery."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

from liberator.avro import AvroEncoder
from liberator.capture import CapturedTable, TableCodec
from liberator.config import KafkaConfig, RegistryConfig
from liberator.errors import IncompatibleSchemaError, SchemaError
from liberator.events import ChangeEvent, Stream
from liberator.kafkalog import with_kafka_logger
from liberator.registry.client import RegistryClient
from liberator.registry.subjects import subject_name
from liberator.topics import TopicManager

log = logging.getLogger("liberator.publisher")


def producer_settings(app: str, kafka: KafkaConfig) -> dict[str, Any]:
    """Safe defaults first, the operator's `kafka.settings` last so they can override any of them."""
    return with_kafka_logger(
        {
            "bootstrap.servers": kafka.bootstrap_servers,
            "client.id": f"liberator-{app}",
            "enable.idempotence": True,
            "acks": "all",
            # 0 = retry until the broker answers: an outage becomes backpressure, never a dropped event.
            "message.timeout.ms": 0,
            "linger.ms": 10,
            # The source's in-flight window (kafka.max_in_flight) bounds what waits for acknowledgement; the
            # producer's own queue only has to hold that window.
            "queue.buffering.max.messages": max(100_000, 2 * kafka.max_in_flight),
            "compression.type": "lz4",
            **kafka.settings,
        }
    )


@dataclass(frozen=True, slots=True)
class Record:
    """An event serialised for Kafka, not yet handed to the producer."""

    topic: str
    key: bytes | None
    value: bytes | None
    timestamp_ms: int
    headers: list[tuple[str, str | bytes | None]] | None

    @property
    def size(self) -> int:
        return (len(self.key) if self.key is not None else 0) + (len(self.value) if self.value is not None else 0)


@dataclass(frozen=True)
class PreparedStream:
    key: AvroEncoder
    value: AvroEncoder | None  # None: values arrive pre-encoded


class Publisher:
    """Schemas and topics for every source of a daemon: registers (and so checks) a stream's schemas and makes
    its topic before the first record; thread-safe. Each source produces through its own producer."""

    def __init__(
        self,
        registry: RegistryClient,
        registry_config: RegistryConfig,
        topics: TopicManager,
    ) -> None:
        self.registry = registry
        self.registry_config = registry_config
        self.topics = topics
        self._prepared: dict[tuple[str, str, str], PreparedStream] = {}
        self._lock = threading.Lock()

    def prepare(self, stream: Stream, stop: threading.Event) -> PreparedStream:
        """Create the topic if needed and register (and so check) both schemas before the first event that
        uses them is published."""
        prepared = self._prepared.get(stream.fingerprint)
        if prepared is not None:
            return prepared
        with self._lock:
            self.topics.ensure(stream.topic, stop)
            subjects = self.registry_config
            key_subject = subject_name(subjects.key_subject, stream.topic, stream.key_schema, "key")
            key_id = self._register(key_subject, stream.key_schema)
            value: AvroEncoder | None = None
            if stream.value_schema is not None:
                value_subject = subject_name(subjects.value_subject, stream.topic, stream.value_schema, "value")
                value_id = self._register(value_subject, stream.value_schema)
                value = AvroEncoder(stream.value_schema, value_id)
            prepared = PreparedStream(AvroEncoder(stream.key_schema, key_id), value)
            self._prepared[stream.fingerprint] = prepared
            log.info(
                "schemas for %s registered (key id %d, value %s)",
                stream.topic,
                key_id,
                f"id {value.schema_id}" if value is not None else "pre-encoded by the application",
            )
            return prepared

    def prepare_table(self, table: CapturedTable, stop: threading.Event, topic: str | None = None) -> TableCodec:
        """Register (and so check) a captured table's schemas, then encode its records with their ids; `topic`:
        one the table's rows are routed to (its subjects are registered before its first event)."""
        stream = table.stream if topic is None or topic == table.stream.topic else table.stream_to(topic)
        try:
            prepared = self.prepare(stream, stop)
        except IncompatibleSchemaError as exc:  # the subject alone does not say which table changed
            raise IncompatibleSchemaError(f"table {table.name}: {exc}") from exc
        assert prepared.value is not None
        return TableCodec(table, prepared.key.schema_id, prepared.value.schema_id, stream.topic)

    def encode_event(self, event: ChangeEvent, stop: threading.Event) -> tuple[bytes | None, bytes | None]:
        """(key, value) of a record a connector made itself (an outbox event), in the wire format."""
        prepared = self.prepare(event.stream, stop)
        key = event.key
        if key is not None and not isinstance(key, bytes):
            key = prepared.key.encode(key)
        return key, self._value(event, prepared)

    def _register(self, subject: str, schema: dict[str, Any]) -> int:
        wanted = self.registry_config.compatibility
        if wanted is not None and not self.registry.subject_exists(subject):
            # Only a new subject gets our level: an operator's later choice on an existing one stands.
            self.registry.set_compatibility(subject, wanted)
        return self.registry.register(subject, schema)

    @staticmethod
    def _value(event: ChangeEvent, prepared: PreparedStream) -> bytes | None:
        datum = event.value
        if datum is None or isinstance(datum, bytes):
            if datum is not None and prepared.value is not None:
                raise SchemaError(f"topic {event.stream.topic}: a pre-encoded value for a stream with a schema")
            return datum
        if prepared.value is None:
            raise SchemaError(f"topic {event.stream.topic}: a datum for a stream of pre-encoded values")
        return prepared.value.encode(datum)
