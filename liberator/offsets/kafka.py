"""Positions in a compacted Kafka topic, keyed by app and source (as Kafka Connect does).

Reading takes the whole topic up to the end reported by fetch responses: some Kafka-protocol brokers
(Tansu) answer ListOffsets "latest" wrongly, and fetch watermarks are what the data itself says.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

# NewTopic is re-exported without being listed in the package stubs' __all__.
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from liberator.errors import LiberatorError, one_line
from liberator.kafkalog import with_kafka_logger
from liberator.offsets.base import CorruptOffsets, OffsetStore, StoredOffset

_READ_TIMEOUT = 30.0


class OffsetStoreUnavailable(LiberatorError):
    pass


class KafkaOffsetStore(OffsetStore):
    needs_broker = True

    def __init__(
        self,
        bootstrap_servers: str,
        settings: dict[str, Any],
        topic: str,
        app: str,
        create_topic: bool = True,
    ) -> None:
        self.topic = topic
        self.app = app
        self._base = with_kafka_logger({"bootstrap.servers": bootstrap_servers, **settings})
        self._create_topic = create_topic
        self._producer: Producer | None = None
        self._lock = threading.Lock()
        self._ensured = False

    def describe(self) -> str:
        return f"Kafka topic {self.topic}"

    def _key(self, source: str) -> bytes:
        return f"{self.app}/{source}".encode()

    def _ensure_topic(self) -> None:
        if self._ensured:
            return
        try:
            self._create_missing_topic()
        except KafkaException as exc:
            raise OffsetStoreUnavailable(
                f"cannot look up or create offsets topic {self.topic} on the Kafka broker ({exc.args[0].str()}); "
                "check kafka.bootstrap_servers and that the broker runs"
            ) from None
        self._ensured = True

    def _create_missing_topic(self) -> None:
        admin = AdminClient(self._base)
        metadata = admin.list_topics(timeout=10)
        if self.topic not in metadata.topics:
            if not self._create_topic:
                raise OffsetStoreUnavailable(
                    f"offsets topic {self.topic} does not exist; create it compacted with 1 partition "
                    "or set kafka.create_topics: true"
                )
            config = {"cleanup.policy": "compact"}
            futures = admin.create_topics([NewTopic(self.topic, 1, -1, config=config)])
            for future in futures.values():
                try:
                    future.result(timeout=10)
                except KafkaException as exc:
                    if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                        raise

    def load_all(self) -> dict[str, StoredOffset]:
        self._ensure_topic()
        consumer = Consumer(
            {
                **self._base,
                "group.id": f"liberator-offsets-reader-{self.app}",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                "fetch.wait.max.ms": 10,
            }
        )
        prefix = f"{self.app}/".encode()
        latest: dict[str, tuple[bytes, int]] = {}  # the last record per source wins, as compaction keeps it
        try:
            try:
                partitions = consumer.list_topics(self.topic, timeout=10).topics[self.topic].partitions
            except KafkaException as exc:
                raise OffsetStoreUnavailable(f"reading offsets topic {self.topic}: {exc.args[0].str()}") from None
            pending = {p for p in partitions}
            consumer.assign([TopicPartition(self.topic, p, 0) for p in partitions])
            deadline = time.monotonic() + _READ_TIMEOUT
            while pending:
                if time.monotonic() > deadline:
                    raise OffsetStoreUnavailable(
                        f"could not read offsets topic {self.topic} to its end within {_READ_TIMEOUT:.0f}s; "
                        "check the broker"
                    )
                message = consumer.poll(0.5)
                if message is None:
                    continue
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        pending.discard(message.partition())
                        continue
                    raise OffsetStoreUnavailable(f"reading offsets topic {self.topic}: {error.str()}")
                key = message.key() or b""
                if not key.startswith(prefix):
                    continue
                source = key[len(prefix) :].decode("utf-8", "replace")
                value = message.value()
                if value is None:
                    latest.pop(source, None)
                else:
                    latest[source] = (value, message.offset() or 0)
        finally:
            consumer.close()
        return {source: self._decode(source, value, offset) for source, (value, offset) in latest.items()}

    def _decode(self, source: str, value: bytes, offset: int) -> StoredOffset:
        try:
            return StoredOffset.from_json(json.loads(value))
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors too
            raise CorruptOffsets(
                f"offsets topic {self.topic}: the position of source {source!r} (offset {offset}) is damaged "
                f"({one_line(exc, 120)}); run `liberator offsets reset CONFIG --source {source}` to start it "
                f"over, or `liberator offsets set CONFIG --source {source} POSITION` to give it one",
                source=source,
            ) from None

    def _producer_instance(self) -> Producer:
        if self._producer is None:
            self._producer = Producer(
                {
                    **self._base,
                    "enable.idempotence": True,
                    "acks": "all",
                    "client.id": f"liberator-{self.app}-offsets",
                }
            )
        return self._producer

    def _write(self, source: str, value: bytes | None) -> None:
        with self._lock:
            self._ensure_topic()
            producer = self._producer_instance()
            outcome: list[KafkaError | None] = []
            producer.produce(
                self.topic,
                key=self._key(source),
                value=value,
                on_delivery=lambda err, _msg: outcome.append(err),
            )
            remaining = producer.flush(_READ_TIMEOUT)
            if remaining or not outcome:
                raise OffsetStoreUnavailable(
                    f"the broker did not acknowledge the position of {source} within {_READ_TIMEOUT:.0f}s; "
                    "it is kept in memory and retried"
                )
            if outcome[0] is not None:
                raise OffsetStoreUnavailable(f"storing the position of {source} failed: {outcome[0].str()}")

    def save(self, offset: StoredOffset) -> None:
        self._write(offset.source, json.dumps(offset.to_json(), sort_keys=True).encode())

    def reset(self, source: str) -> None:
        self._write(source, None)

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(10)
            self._producer = None
