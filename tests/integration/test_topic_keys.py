"""liberator.topickeys against the broker: the live keys of a topic, read from the start and then tailed."""

from __future__ import annotations

import threading

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from liberator.avro.wire import frame
from liberator.topickeys import TopicKeys
from liberator_testbed import unique_name
from tests.support import wait_for


def test_live_keys_follow_tombstones_across_partitions_and_refreshes(kafka_bootstrap: str) -> None:
    topic = unique_name("keys")
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])[topic].result(30)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})

    def send(key: bytes | None, value: bytes | None, partition: int = 0) -> None:
        producer.produce(topic, key=key, value=value, partition=partition)

    send(frame(1, b"a"), b"v")
    send(frame(1, b"b"), b"v", partition=1)
    send(frame(1, b"c"), b"v")
    send(frame(1, b"b"), None, partition=1)  # deleted
    send(None, b"a truncate: keyless")
    send(b"x", b"someone else's key, too short to be framed")
    send(b"\x07" + b"\x00" * 8, b"a key in another format")
    producer.flush(30)

    keys = TopicKeys({"bootstrap.servers": kafka_bootstrap}, topic)
    stop = threading.Event()
    assert keys.refresh(stop) == {b"a": 1, b"c": 1}

    send(frame(2, b"a"), None)  # a tombstone under a newer key schema id still names body a
    send(frame(2, b"b"), b"v", partition=1)  # back, under the new id
    producer.flush(30)
    assert wait_for(lambda: keys.refresh(stop) == {b"c": 1, b"b": 2}, what="the tail of the topic")
    assert TopicKeys.framed_key(b"b", 2) == frame(2, b"b")


def test_a_topic_that_does_not_exist_yet_has_no_live_keys(kafka_bootstrap: str) -> None:
    keys = TopicKeys({"bootstrap.servers": kafka_bootstrap}, unique_name("absent"))
    assert keys.refresh(threading.Event()) == {}
