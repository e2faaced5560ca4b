"""Asking the broker about topics: is it there (cluster metadata), does a topic exist (else create it), and
do topics already hold records (a source's evidence that it ran before, when its position is missing).

A broker that is down, hung or unreachable is an outage like any other: metadata and creation raise
BrokerUnavailable, which the runtime retries with backoff, and they give up waiting as soon as the
daemon is asked to stop (librdkafka's calls block, so they are made in short slices).

Records are looked for with a consumer from the start of every partition, not with ListOffsets: some
Kafka-protocol brokers (Tansu) answer "latest" wrongly, and the data itself is what counts.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

# NewTopic is re-exported without being listed in the package stubs' __all__.
from confluent_kafka.admin import AdminClient, ClusterMetadata, NewTopic  # type: ignore[attr-defined]

from liberator.config import KafkaConfig
from liberator.errors import FatalSourceError, LiberatorError, TransientSourceError
from liberator.kafkalog import with_kafka_logger

log = logging.getLogger("liberator.publisher")

PROBE_TIMEOUT = 15.0
METADATA_TIMEOUT = 10.0
CREATE_TIMEOUT = 30.0
_SLICE = 0.5  # longest uninterruptible wait on librdkafka; bounds how long a stop request waits

# Errors of a broker that is away or busy rather than of a request it refuses (KafkaError.retriable()
# does not cover the client-side ones).
_AWAY = {
    KafkaError._TRANSPORT,
    KafkaError._TIMED_OUT,
    KafkaError._ALL_BROKERS_DOWN,
    KafkaError._RESOLVE,
    KafkaError._WAIT_COORD,
    KafkaError.REQUEST_TIMED_OUT,
    KafkaError.BROKER_NOT_AVAILABLE,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.NOT_CONTROLLER,
}


class BrokerUnavailable(TransientSourceError):
    """The Kafka broker did not answer (down, hung, unreachable); waiting and retrying may succeed."""


class StoppedWaiting(LiberatorError):
    """Stop was requested while waiting for the broker; nothing was published."""


def broker_away(error: KafkaError) -> bool:
    return error.code() in _AWAY or error.retriable()


def admin_settings(kafka: KafkaConfig) -> dict[str, Any]:
    """What an AdminClient takes from the daemon's Kafka settings: the address and the security settings."""
    security = {k: v for k, v in kafka.settings.items() if k.startswith(("security.", "sasl.", "ssl."))}
    return with_kafka_logger({"bootstrap.servers": kafka.bootstrap_servers, **security})


def cluster_metadata(
    admin: AdminClient, bootstrap: str, stop: threading.Event, timeout: float = METADATA_TIMEOUT
) -> ClusterMetadata:
    """The cluster's metadata (all topics); BrokerUnavailable when it does not answer within `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        if stop.is_set():
            raise StoppedWaiting("stopped while waiting for the Kafka broker")
        try:
            return admin.list_topics(timeout=max(0.05, min(_SLICE, deadline - time.monotonic())))
        except KafkaException as exc:
            error = exc.args[0]
            admin.poll(0)  # serves librdkafka's queued log lines (with a logger they wait for a poll)
            if time.monotonic() >= deadline or not broker_away(error):
                raise BrokerUnavailable(
                    f"cannot reach the Kafka broker at {bootstrap} ({error.str()}); waiting for it; "
                    "check kafka.bootstrap_servers and that the broker runs"
                ) from None


class TopicManager:
    def __init__(self, kafka: KafkaConfig, settings: dict[str, Any]) -> None:
        self.kafka = kafka
        self._admin = AdminClient(settings)
        self._known: set[str] = set()
        self._lock = threading.Lock()

    def wait_for_broker(self, stop: threading.Event) -> None:
        """Return once the broker answers; BrokerUnavailable after METADATA_TIMEOUT."""
        cluster_metadata(self._admin, self.kafka.bootstrap_servers, stop)

    def names(self, stop: threading.Event) -> set[str]:
        """The names of every topic on the broker (BrokerUnavailable when it does not answer)."""
        return set(cluster_metadata(self._admin, self.kafka.bootstrap_servers, stop).topics)

    def ensure(self, topic: str, stop: threading.Event) -> None:
        with self._lock:
            if topic in self._known:
                return
            if self.kafka.create_topics:
                metadata = cluster_metadata(self._admin, self.kafka.bootstrap_servers, stop)
                if topic not in metadata.topics:
                    self._create(topic, stop)
            self._known.add(topic)

    def _create(self, topic: str, stop: threading.Event) -> None:
        defaults = self.kafka.topic_defaults
        new = NewTopic(topic, defaults.partitions, defaults.replication_factor, config=dict(defaults.config))
        future = self._admin.create_topics([new], request_timeout=CREATE_TIMEOUT)[topic]
        deadline = time.monotonic() + CREATE_TIMEOUT
        while True:
            if stop.is_set():
                raise StoppedWaiting(f"stopped while creating topic {topic}")
            try:
                future.result(timeout=_SLICE)
                log.info("created topic %s (%d partitions)", topic, defaults.partitions)
                return
            except concurrent.futures.TimeoutError:
                if time.monotonic() >= deadline:
                    raise BrokerUnavailable(
                        f"the Kafka broker at {self.kafka.bootstrap_servers} did not confirm creating topic "
                        f"{topic} within {CREATE_TIMEOUT:.0f}s; waiting for it"
                    ) from None
            except KafkaException as exc:
                error = exc.args[0]
                if error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                    return
                if broker_away(error):
                    raise BrokerUnavailable(
                        f"cannot create topic {topic}: the Kafka broker at {self.kafka.bootstrap_servers} "
                        f"did not answer ({error.str()}); waiting for it"
                    ) from None
                raise FatalSourceError(
                    f"cannot create topic {topic}: {error.str()}; create it yourself "
                    "or give liberator's principal CreateTopics"
                ) from None


def end_reader(settings: dict[str, Any], purpose: str) -> Consumer:
    """A consumer for partitions assigned by hand and read to their end (partition EOF); it commits nothing."""
    return Consumer(
        {
            **settings,
            "group.id": f"liberator-{purpose}-{uuid.uuid4().hex[:12]}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "fetch.wait.max.ms": 10,
        }
    )


def first_with_records(settings: dict[str, Any], topics: Sequence[str], timeout: float = PROBE_TIMEOUT) -> str | None:
    """The first of `topics` that holds at least one record (a tombstone counts), or None when none does."""
    found = with_records(settings, topics, timeout, first_only=True)
    return found[0] if found else None


def with_records(
    settings: dict[str, Any], topics: Sequence[str], timeout: float = PROBE_TIMEOUT, first_only: bool = False
) -> list[str]:
    """Those of `topics` that hold at least one record (a tombstone counts), in their order; with
    `first_only`, at most the first found. One consumer reads the start of every partition."""
    consumer = end_reader(settings, "probe")
    try:
        metadata = consumer.list_topics(timeout=10).topics
        partitions = [
            TopicPartition(topic, p, OFFSET_BEGINNING)
            for topic in topics
            if topic in metadata and metadata[topic].error is None
            for p in metadata[topic].partitions
        ]
        pending = {(tp.topic, tp.partition) for tp in partitions}
        found: set[str] = set()
        if pending:
            consumer.assign(partitions)
        deadline = time.monotonic() + timeout
        while pending:
            if time.monotonic() > deadline:
                raise TransientSourceError(
                    f"could not read {', '.join(sorted({t for t, _ in pending}))} within {timeout:.0f}s to tell "
                    "whether the source published to them before; check the broker"
                )
            message = consumer.poll(0.2)
            if message is None:
                continue
            error = message.error()
            topic = message.topic() or ""
            if error is None:
                found.add(topic)
                if first_only:
                    break
                pending = {(t, p) for t, p in pending if t != topic}
            elif error.code() == KafkaError._PARTITION_EOF:
                pending.discard((topic, message.partition() or 0))
            elif not error.retriable():
                raise TransientSourceError(f"could not read topic {topic}: {error.str()}")
        return [t for t in topics if t in found]
    finally:
        consumer.close()
