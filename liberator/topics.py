"""Whether topics already hold records: a source's evidence that it ran before, when its position is missing.

Read with a consumer from the start of every partition, not with ListOffsets: some Kafka-protocol brokers
(Tansu) answer "latest" wrongly, and the data itself is what counts.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from liberator.errors import TransientSourceError

PROBE_TIMEOUT = 15.0


def first_with_records(settings: dict[str, Any], topics: Sequence[str], timeout: float = PROBE_TIMEOUT) -> str | None:
    """The first of `topics` that holds at least one record (a tombstone counts), or None when none does."""
    consumer = Consumer(
        {
            **settings,
            "group.id": f"liberator-probe-{uuid.uuid4().hex[:12]}",  # nothing is committed
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "fetch.wait.max.ms": 10,
        }
    )
    try:
        metadata = consumer.list_topics(timeout=10).topics
        partitions = [
            TopicPartition(topic, p, OFFSET_BEGINNING)
            for topic in topics
            if topic in metadata and metadata[topic].error is None
            for p in metadata[topic].partitions
        ]
        pending = {(tp.topic, tp.partition) for tp in partitions}
        if not pending:
            return None
        consumer.assign(partitions)
        deadline = time.monotonic() + timeout
        while pending:
            if time.monotonic() > deadline:
                raise TransientSourceError(
                    f"could not read {', '.join(sorted({t for t, _ in pending}))} within {timeout:.0f}s to tell "
                    "whether the source ran before; check the broker"
                )
            message = consumer.poll(0.2)
            if message is None:
                continue
            error = message.error()
            if error is None:
                return message.topic()
            if error.code() == KafkaError._PARTITION_EOF:
                pending.discard((message.topic() or "", message.partition() or 0))
            elif not error.retriable():
                raise TransientSourceError(f"could not read topic {message.topic()}: {error.str()}")
        return None
    finally:
        consumer.close()
