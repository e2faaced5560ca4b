"""Runs one sink: a consumer group member that applies batches and commits Kafka offsets after them.

Order of durability, per batch: the sink applies the records and stores the highest applied offset per
partition in its target in one transaction; only then are the Kafka offsets committed (for lag tools and
as a fallback start). On assignment every partition is sought to the sink's own stored offset + 1, so a
crash between the two commits, or a rebalance, resumes exactly where the target stands.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from confluent_kafka import (
    OFFSET_STORED,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from liberator import plugins
from liberator.config import AppConfig
from liberator.errors import ConfigError, LiberatorError, TransientSourceError
from liberator.instance import kafka_id
from liberator.kafkalog import with_kafka_logger
from liberator.metrics import SinkStatus
from liberator.registry.client import RegistryClient, RegistryUnavailable
from liberator.sink import AnySink, DeadLetter, SinkConfig, SinkContext, SinkRecord, TransientSinkError
from liberator.supervisor import Backoff, Supervisor

# A lost target, a lock conflict, a registry away: the same batch (or the group) again after a backoff.
TRANSIENT = (TransientSinkError, TransientSourceError, RegistryUnavailable)
DEAD_LETTER_TIMEOUT = 30.0
TOPIC_REFRESH_MS = 5000
LAG_INTERVAL = 1.0  # seconds between lag updates while records keep arriving


def group_instance_id(app: str, sink: SinkConfig, instance: str) -> str | None:
    """The sink's static group membership id (None: a dynamic member): its own, or one derived from the config
    name, the sink name and this daemon's instance id (liberator.instance), the same after every restart."""
    if not sink.static_membership:
        return None
    return sink.group_instance_id or kafka_id(f"liberator-{app}-{sink.name}-{instance}")


def consumer_settings(config: AppConfig, sink: AnySink, instance: str) -> dict[str, Any]:
    consuming = sink.consuming
    member = group_instance_id(config.name, sink.config, instance)
    security = {k: v for k, v in config.kafka.settings.items() if k.startswith(("security.", "sasl.", "ssl."))}
    return with_kafka_logger(
        {
            "bootstrap.servers": config.kafka.bootstrap_servers,
            "client.id": f"liberator-{config.name}-{sink.config.name}",
            "group.id": consuming.group_id,
            "enable.auto.commit": False,  # committed by us, after the target committed
            "auto.offset.reset": consuming.start,
            "isolation.level": "read_committed",
            # librdkafka looks for new topics of a subscription only at each metadata refresh (5 min by
            # default): a topic created after the sink subscribed (its source starts later, a pattern gains a
            # table) would sit unread that long. One metadata request every few seconds is cheap next to that.
            "topic.metadata.refresh.interval.ms": TOPIC_REFRESH_MS,
            **({"group.instance.id": member} if member else {}),
            **security,
            **consuming.settings,
        }
    )


class DeadLetterProducer:
    """Publishes bad records (original bytes, reason in headers) and waits for the broker's acknowledgement."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self._settings = settings
        self._producer: Producer | None = None
        self._lock = threading.Lock()

    def __call__(self, record: SinkRecord, topic: str, reason: str) -> None:
        with self._lock:
            if self._producer is None:
                self._producer = Producer(self._settings)
            outcome: list[KafkaError | None] = []
            headers: list[tuple[str, str | bytes | None]] = [
                *record.headers,
                ("liberator.error", reason.encode()),
                ("liberator.topic", record.topic.encode()),
                ("liberator.partition", str(record.partition).encode()),
                ("liberator.offset", str(record.offset).encode()),
            ]
            self._producer.produce(
                topic,
                key=record.key,
                value=record.value,
                headers=headers,
                timestamp=record.timestamp_ms or 0,
                on_delivery=lambda error, _message: outcome.append(error),
            )
            self._producer.flush(DEAD_LETTER_TIMEOUT)
            if not outcome or outcome[0] is not None:
                why = outcome[0].str() if outcome and outcome[0] is not None else "no acknowledgement in time"
                raise TransientSinkError(f"cannot publish a bad record to dead-letter topic {topic}: {why}")

    def close(self, timeout: float = DEAD_LETTER_TIMEOUT) -> None:
        if self._producer is not None:
            self._producer.flush(timeout)


def build_sink(
    config: SinkConfig, app: str, stop: threading.Event, registry: RegistryClient, dead_letter: DeadLetter
) -> AnySink:
    sink_cls = plugins.load(plugins.SINK_GROUP, config.type, f"sink {config.name}")
    if not isinstance(config, sink_cls.config_model):
        # load_config validated it with this very model; anything else is a caller's mistake
        raise ConfigError(f"sink {config.name}: its config is not a {sink_cls.config_model.__name__}")
    log = logging.getLogger(f"liberator.sink.{config.name}")
    sink: AnySink = sink_cls(config, SinkContext(app, stop, log, registry, dead_letter))
    return sink


def to_record(message: Message) -> SinkRecord:
    ts_type, ts = message.timestamp()
    raw = message.headers()
    headers: tuple[tuple[str, bytes | None], ...] = (
        tuple((str(pair[0]), pair[1].encode() if isinstance(pair[1], str) else pair[1]) for pair in raw) if raw else ()
    )
    key, value = message.key(), message.value()
    return SinkRecord(
        message.topic() or "",
        message.partition() or 0,
        message.offset() or 0,
        key.encode() if isinstance(key, str) else key,
        value.encode() if isinstance(value, str) else value,
        ts if ts_type != 0 and ts >= 0 else None,
        headers,
    )


class SinkRunner:
    def __init__(self, sink: AnySink, settings: dict[str, Any], status: SinkStatus, stop: threading.Event) -> None:
        self.sink = sink
        self.settings = settings
        self.status = status
        self.stop = stop
        self.log = logging.getLogger(f"liberator.sink.{sink.config.name}")
        self.supervisor = Supervisor(status, self.log, stop, transient=TRANSIENT)
        self.thread = threading.Thread(target=self._run, name=f"sink-{sink.config.name}", daemon=True)
        self._pending: list[SinkRecord] = []
        self._assign_error: LiberatorError | None = None
        self._next_to_apply: dict[tuple[str, int], int] = {}  # per partition: the offset after the last applied
        self._lag_at = 0.0

    # -- the thread ---------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self.supervisor.run(self._consume)
        finally:
            self.sink.close()

    def _consume(self) -> bool:
        """One supervised attempt (liberator.supervisor): consume and apply until stopped (a sink never finishes)."""
        consuming = self.sink.consuming
        consumer = Consumer(self.settings)
        self._pending = []
        self._assign_error = None
        try:
            consumer.subscribe(
                list(consuming.topics), on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
            )
            first_at: float | None = None
            while not self.stop.is_set():
                room = max(1, consuming.batch_size - len(self._pending))
                wait = (
                    0.1 if first_at is None else max(0.0, min(0.1, first_at + consuming.batch_time - time.monotonic()))
                )
                messages = consumer.consume(room, wait)
                if self._assign_error is not None:
                    raise self._assign_error
                pending = self._pending  # after consume(): a revoke during it may have replaced the list
                held = len(pending)
                for message in messages:
                    error = message.error()
                    if error is not None:
                        if error.code() != KafkaError._PARTITION_EOF:
                            self.log.warning("consumer: %s", error.str())
                        continue
                    pending.append(to_record(message))
                self.status.records_consumed += len(pending) - held
                self._note_lag(consumer, force=len(pending) > held)
                if self._pending and first_at is None:
                    first_at = time.monotonic()
                if not self._pending:
                    first_at = None
                    continue
                assert first_at is not None
                if len(self._pending) >= consuming.batch_size or time.monotonic() - first_at >= consuming.batch_time:
                    self._flush(consumer)
                    first_at = None
            if self._pending:
                self._flush(consumer)  # a clean stop writes what was read
            return False
        finally:
            consumer.close()

    def _flush(self, consumer: Consumer) -> None:
        backoff = Backoff()  # the same batch again, while staying in the group
        while True:
            batch = self._pending
            if not batch:
                return  # a rebalance while retrying took every partition: the next owners re-read them
            try:
                changed = self.sink.write(batch)
                break
            except TRANSIENT as exc:
                if self.stop.is_set():
                    raise
                self._wait_in_group(consumer, self.supervisor.retrying(exc, backoff))
        self.supervisor.recovered()
        self._pending = []
        self.status.batches += 1
        self.status.records_applied += len(batch)
        self.status.rows_changed += changed
        self.status.last_batch_at = time.time()
        stamps = [r.timestamp_ms for r in batch if r.timestamp_ms is not None]
        if stamps:
            self.status.last_record_ms = max(stamps)
        highest: dict[tuple[str, int], int] = {}
        for record in batch:
            where = (record.topic, record.partition)
            highest[where] = max(record.offset, highest.get(where, -1))
        self._next_to_apply.update({where: offset + 1 for where, offset in highest.items()})
        self._note_lag(consumer, force=True)
        try:
            consumer.commit(offsets=[TopicPartition(t, p, o + 1) for (t, p), o in highest.items()], asynchronous=False)
        except KafkaException as exc:
            # The target holds the truth; a failed Kafka commit only makes lag figures stale.
            self.log.info("Kafka offset commit failed (%s); the target's stored offsets stay authoritative", exc)

    def _wait_in_group(self, consumer: Consumer, seconds: float) -> None:
        """Wait without leaving the group: paused partitions deliver nothing, but rebalances are served."""
        deadline = time.monotonic() + seconds
        try:
            while time.monotonic() < deadline and not self.stop.is_set():
                consumer.pause(consumer.assignment())  # again each time: a rebalance may have added some
                for message in consumer.consume(100, 0.2):
                    if message.error() is None:  # delivered before the pause took effect: keep it in order
                        self._pending.append(to_record(message))
                        self.status.records_consumed += 1
                self._note_lag(consumer)
                if self._assign_error is not None:
                    raise self._assign_error
        finally:
            consumer.resume(consumer.assignment())

    def _note_lag(self, consumer: Consumer, force: bool = False) -> None:
        """Records on the broker not yet applied, per assigned partition: the high watermark the last fetch
        response carried (cached by librdkafka, no request; unlike ListOffsets it is right on every broker)
        minus the next offset to apply. Records read but not yet written count: the target lacks them."""
        now = time.monotonic()
        if not force and now - self._lag_at < LAG_INTERVAL:
            return
        self._lag_at = now
        lags: dict[str, int] = {}
        for tp in consumer.assignment():
            try:
                high = consumer.get_watermark_offsets(tp, cached=True)[1]
                after = self._next_to_apply.get((tp.topic, tp.partition))
                if after is None:  # nothing applied by this member yet: where it consumes from
                    after = consumer.position([tp])[0].offset
            except KafkaException:
                continue
            if high >= 0 and after >= 0:
                lags[f"{tp.topic}[{tp.partition}]"] = max(0, high - after)
        self.status.lag_records = lags

    # -- rebalances ---------------------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: Sequence[TopicPartition]) -> None:
        self.status.rebalances += 1
        try:
            stored = self.sink.applied_offsets([(tp.topic, tp.partition) for tp in partitions])
        except LiberatorError as exc:
            self._assign_error = exc
            consumer.assign([])
            return
        assigned = []
        for tp in partitions:
            applied = stored.get((tp.topic, tp.partition))
            if applied is not None:
                self._next_to_apply[(tp.topic, tp.partition)] = applied + 1
            assigned.append(
                TopicPartition(tp.topic, tp.partition, applied + 1 if applied is not None else OFFSET_STORED)
            )
        consumer.assign(assigned)
        if not self._pending:  # a batch being retried decides the state itself once it is written
            self.supervisor.recovered()
        self.status.assigned = sorted(f"{tp.topic}[{tp.partition}]" for tp in assigned)
        self.log.info("assigned %s", ", ".join(self.status.assigned) or "nothing")

    def _on_revoke(self, consumer: Consumer, partitions: Sequence[TopicPartition]) -> None:
        gone = {(tp.topic, tp.partition) for tp in partitions}
        # Unwritten records of revoked partitions are dropped: the next owner reads them again from the
        # offset stored in the target, and the target never saw them.
        self._pending = [r for r in self._pending if (r.topic, r.partition) not in gone]
        self.status.assigned = [a for a in self.status.assigned if a not in {f"{t}[{p}]" for t, p in gone}]
        self.status.lag_records = {k: v for k, v in self.status.lag_records.items() if k in self.status.assigned}
        for where in gone:
            self._next_to_apply.pop(where, None)
        consumer.unassign()

    def _on_lost(self, consumer: Consumer, partitions: Sequence[TopicPartition]) -> None:
        """The group went on without this member (no heartbeat reached the coordinator within the session
        timeout: the broker is hung or unreachable): not connected until the group assigns it again."""
        self._on_revoke(consumer, partitions)
        self.status.state = "retrying"
        self.status.error = "lost its consumer group membership (the broker did not answer within the session timeout)"
        self.log.warning("%s; rejoining", self.status.error)


def create_sink_runners(
    config: AppConfig, stop: threading.Event, registry: RegistryClient, metrics: Any, instance: str
) -> tuple[list[SinkRunner], DeadLetterProducer]:
    """One runner per configured sink (not started), sharing one dead-letter producer; `instance` is this
    daemon's instance id (liberator.instance.InstanceSlot)."""
    from liberator.publisher import producer_settings

    dead_letter = DeadLetterProducer(producer_settings(f"{config.name}-dead-letter", config.kafka))
    runners = []
    for sink_config in config.sinks:
        status = metrics.sink(sink_config.name, sink_config.type)
        sink = build_sink(sink_config, config.name, stop, registry, counted(dead_letter, status))
        runners.append(SinkRunner(sink, consumer_settings(config, sink, instance), status, stop))
    return runners, dead_letter


def counted(dead_letter: DeadLetter, status: SinkStatus) -> DeadLetter:
    def send(record: SinkRecord, topic: str, reason: str) -> None:
        dead_letter(record, topic, reason)
        status.dead_lettered += 1

    return send
