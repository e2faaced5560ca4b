"""The keys a topic holds a live record for: its latest record per key is not a tombstone.

Sources that cannot see deletes in their database's log (the query source) find them by comparing this
set with the keys still in the table (`deletes: reconcile`). The topic is the record of what consumers
were told, so it is where the set comes from: nothing to keep on local disk, and a standby that takes over
reads the same set. The first refresh reads the topic from the beginning; later ones only what was
appended since. Keys are the record keys' Avro bodies (the 5-byte Confluent header cut off, so a key
written under an older key schema id still matches), each with the key schema id of its latest record:
a tombstone must carry exactly that record's key bytes for compaction to drop the record (`framed_key`).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from liberator.avro.wire import HEADER_SIZE, FramingError, frame, framed_schema_id
from liberator.errors import TransientSourceError
from liberator.topics import end_reader

READ_TIMEOUT = 600.0  # a refresh that makes no progress for this long is a broker problem


class TopicKeys:
    def __init__(self, settings: dict[str, Any], topic: str, timeout: float = READ_TIMEOUT) -> None:
        self.topic = topic
        self._settings = settings
        self._timeout = timeout
        self._next: dict[int, int] = {}  # partition -> the offset the next refresh reads from
        self.live: dict[bytes, int] = {}  # key body -> the key schema id of its latest record
        self._ids: dict[int, int] = {}  # one int object per schema id: 1M keys share a few

    @staticmethod
    def framed_key(body: bytes, schema_id: int) -> bytes:
        return frame(schema_id, body)

    def refresh(self, stop: threading.Event) -> dict[bytes, int]:
        """Read what the topic gained since the last refresh (everything, the first time); the live keys."""
        consumer = end_reader(self._settings, "keys")
        try:
            metadata = consumer.list_topics(self.topic, timeout=10).topics.get(self.topic)
            if metadata is None or metadata.error is not None:
                return self.live  # not created yet: nothing was published
            start = self._next
            partitions = [TopicPartition(self.topic, p, start.get(p, OFFSET_BEGINNING)) for p in metadata.partitions]
            consumer.assign(partitions)
            self._read_to_end(consumer, {tp.partition for tp in partitions}, stop)
            return self.live
        finally:
            consumer.close()

    def _read_to_end(self, consumer: Consumer, pending: set[int], stop: threading.Event) -> None:
        live, following, ids = self.live, self._next, self._ids
        progress = time.monotonic()
        while pending and not stop.is_set():
            messages = consumer.consume(1000, 0.2)
            if not messages:
                if time.monotonic() - progress > self._timeout:
                    raise TransientSourceError(
                        f"could not read topic {self.topic} to its end within {self._timeout:.0f}s; check the broker"
                    )
                continue
            progress = time.monotonic()
            for message in messages:
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        pending.discard(message.partition() or 0)
                    elif not error.retriable():
                        raise TransientSourceError(f"could not read topic {self.topic}: {error.str()}")
                    continue
                key = message.key()
                following[message.partition() or 0] = (message.offset() or 0) + 1
                if key is None or len(key) < HEADER_SIZE:
                    continue  # a keyless record (a truncate) names no row
                body = key[HEADER_SIZE:]
                if message.value() is None:
                    live.pop(body, None)
                else:
                    try:
                        schema_id = framed_schema_id(key)
                    except FramingError:
                        continue  # not a key liberator wrote: no row of ours
                    live[body] = ids.setdefault(schema_id, schema_id)
