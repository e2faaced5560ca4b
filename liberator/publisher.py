"""Turns ChangeEvents into Kafka records: registers schemas, serialises, produces, tracks delivery."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from liberator.avro import AvroEncoder
from liberator.config import KafkaConfig, RegistryConfig
from liberator.errors import FatalSourceError, SchemaError
from liberator.events import ChangeEvent, Stream
from liberator.kafkalog import with_kafka_logger
from liberator.registry.client import RegistryClient
from liberator.topics import StoppedWaiting, TopicManager

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
            # Events waiting for acknowledgement are held in memory with their positions: keep that bounded.
            "queue.buffering.max.messages": 20000,
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
    """Shared by all sources of a daemon; thread-safe (confluent_kafka's Producer is)."""

    def __init__(
        self,
        producer: Producer,
        registry: RegistryClient,
        registry_config: RegistryConfig,
        topics: TopicManager,
    ) -> None:
        self.producer = producer
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
            key_id = self._register(f"{stream.topic}-key", stream.key_schema)
            value: AvroEncoder | None = None
            if stream.value_schema is not None:
                value_id = self._register(f"{stream.topic}-value", stream.value_schema)
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

    def _register(self, subject: str, schema: dict[str, Any]) -> int:
        wanted = self.registry_config.compatibility
        if wanted is not None and not self.registry.subject_exists(subject):
            # Only a new subject gets our level: an operator's later choice on an existing one stands.
            self.registry.set_compatibility(subject, wanted)
        return self.registry.register(subject, schema)

    def encode(self, event: ChangeEvent, stop: threading.Event) -> Record:
        """Register the event's schemas if they are new and serialise it. Hands nothing to Kafka, so
        whatever this raises (registry or broker down, a bad datum) leaves nothing behind to acknowledge."""
        prepared = self.prepare(event.stream, stop)
        # A keyless event (a truncate) is produced with a null key; the key schema stays registered for the stream.
        key = prepared.key.encode(event.key) if event.key is not None else None
        value = self._value(event, prepared)
        return Record(event.stream.topic, key, value, event.timestamp_ms, list(event.headers) or None)

    def produce(
        self, record: Record, on_delivery: Callable[[KafkaError | None, Message], None], stop: threading.Event
    ) -> None:
        """Hand one record to the producer; blocks (serving callbacks) while its queue is full.

        Either the record is queued and `on_delivery` will hear about it, or this raises and it never will."""
        while True:
            try:
                self.producer.produce(
                    record.topic,
                    key=record.key,
                    value=record.value,
                    timestamp=record.timestamp_ms,
                    headers=record.headers,
                    on_delivery=on_delivery,
                )
                return
            except BufferError:
                # The broker is slow or away: wait for room instead of dropping or buffering without bound.
                self.producer.poll(0.1)
                if stop.is_set():
                    raise StoppedWaiting("stopped while the producer queue was full") from None
            except KafkaException as exc:  # refused before queueing, e.g. larger than message.max.bytes
                raise FatalSourceError(
                    f"the Kafka producer refused an event for topic {record.topic} ({record.size} bytes): "
                    f"{exc.args[0].str()}; fix kafka.settings or the topic"
                ) from None

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
