"""The daemon: runs each source in its own thread, publishes through one producer, stores positions.

Sinks run beside the sources, each in its own thread (liberator.sinkrunner).

Positions are stored only from the Checkpointer, i.e. only once Kafka acknowledged every event before
them; a crash at any moment therefore replays (at-least-once) but never loses.
"""

from __future__ import annotations

import functools
import logging
import signal
import threading
import time
from collections.abc import Callable, Collection, Sequence
from types import FrameType
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from liberator import plugins
from liberator.checkpoint import Checkpointer
from liberator.config import AppConfig
from liberator.dbconnect import seconds
from liberator.errors import ConfigError, LiberatorError, TransientSourceError
from liberator.events import ChangeEvent, Checkpoint
from liberator.health import start_http
from liberator.metrics import Metrics, SinkStatus, SourceStatus
from liberator.offsets import OffsetStore, StoredOffset, open_store
from liberator.positions import Position
from liberator.publisher import Publisher, producer_settings
from liberator.registry.client import RegistryClient, RegistryUnavailable
from liberator.shutdown import ShutdownBudget, join_all, run_bounded
from liberator.sinkrunner import DeadLetterProducer, SinkRunner, create_sink_runners
from liberator.source import Source, SourceConfig, SourceContext
from liberator.startup import wait_for_kafka
from liberator.topics import StoppedWaiting, TopicManager, admin_settings, first_with_records
from liberator.watch import SourceWatch

log = logging.getLogger("liberator")

MAX_BACKOFF = 30.0
SUPERVISE_INTERVAL = 1.0  # how often backpressure and stalled positions are looked for


def delivery_failure(topic: str | None, keyless: bool, error: KafkaError) -> str:
    """The one line that stops a source whose event Kafka refused."""
    reason = f"Kafka refused an event for topic {topic}: {error.str()}"
    if error.code() == KafkaError._MSG_TIMED_OUT:
        reason += " (kafka.settings sets a finite message.timeout.ms; without it the daemon waits for the broker)"
    elif keyless and error.code() in (KafkaError.INVALID_RECORD, KafkaError.INVALID_MSG):
        # Kafka answers a keyless record on a compacted topic with a bare "invalid record".
        reason += (
            " (a record without a key, such as a truncate event, is refused by a compacted topic; "
            "set the source's `truncate: warn`, or use cleanup.policy=delete for this topic)"
        )
    return reason


class SourceRunner:
    def __init__(
        self,
        source: Source,
        config: SourceConfig,
        publisher: Publisher,
        status: SourceStatus,
        start: Position | None,
        stop: threading.Event,
        store: OffsetStore,
        stall_warning: float = 0.0,
    ) -> None:
        self.source = source
        self.config = config
        self.publisher = publisher
        self.status = status
        self.start = start
        self.stop = stop
        self.checkpointer = Checkpointer(on_advance=source.delivered)
        self.stored: Position | None = start
        self.store = store
        self._store_lock = threading.Lock()  # the committer thread and a durable checkpoint both store
        self.log = logging.getLogger(f"liberator.source.{config.name}")
        self.watch = SourceWatch(status, self.log, stall_warning)
        self.thread = threading.Thread(target=self._run, name=f"source-{config.name}", daemon=True)

    def _on_delivery(self, seq: int) -> Any:
        def callback(error: KafkaError | None, message: Message) -> None:
            if error is None:
                self.checkpointer.ack(seq)
                self.status.events_acked += 1
                self.watch.acknowledged()
            else:
                self.checkpointer.fail(seq, delivery_failure(message.topic(), message.key() is None, error))
                # An idle source yields nothing more that could notice: stop its reading thread now.
                self.stop.set()

        return callback

    def _run(self) -> None:
        position = self.start
        backoff = 1.0
        while not self.stop.is_set():
            try:
                if self.status.state != "retrying":  # a retry lasts until the source reads again
                    self.status.state = "running"
                for item in self.source.read(position):
                    if self.checkpointer.failure:
                        break
                    if isinstance(item, Checkpoint):
                        self.checkpointer.add(item.position, acked=True)
                        position = item.position
                        self.status.phase = self.source.phase  # idle sources show their phase too
                        if item.durable and not self._store_now(item.position):
                            break  # stopped before it was stored: nothing after it may be published
                    else:
                        self._publish(item)
                        if item.position is not None:
                            position = item.position
                    if self.stop.is_set():
                        break
                    backoff = 1.0
                    if self.status.state == "retrying":
                        self._recovered()
                else:
                    if not self.stop.is_set() and not self.checkpointer.failure:
                        self.status.state = "finished"
                        self.log.info("source finished (nothing more to read)")
                        return
                break
            except (TransientSourceError, RegistryUnavailable) as exc:
                self.status.state = "retrying"
                self.status.retries += 1
                self.status.error = str(exc)
                self.log.warning("%s; retrying in %.0fs", exc, backoff)
                self.stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
            except StoppedWaiting:
                break
            except LiberatorError as exc:
                self._fail(str(exc))
                return
            except Exception as exc:
                self.log.exception("unexpected error")
                self._fail(f"unexpected {type(exc).__name__}: {exc}; this is a bug, please report it with the log")
                return
            finally:
                self.source.close()
        if self.checkpointer.failure:
            self._fail(
                f"{self.checkpointer.failure}; positions stay at the last acknowledged event; "
                "fix the broker or topic and restart"
            )
            return
        self.status.state = "stopped"

    def _publish(self, event: ChangeEvent) -> None:
        # Register and serialise first: a failure there (registry down, a bad datum) has reserved nothing.
        record = self.publisher.encode(event, self.stop)
        self.watch.publishing()
        seq = self.checkpointer.add(event.position)
        try:
            self.publisher.produce(record, self._on_delivery(seq), self.stop)
        except BaseException:
            self.checkpointer.withdraw(seq)  # never queued, so never acknowledged: it must not hold positions back
            raise
        self.status.events_published += 1
        self.status.phase = self.source.phase
        self.status.bytes_published += record.size
        self.status.last_event_ms = event.timestamp_ms

    def _store_now(self, position: Position) -> bool:
        """Store a durable checkpoint's position before the source goes on; False when stopped first.

        It waits for what was yielded before it (usually nothing) and retries a failing store, since going
        on without it is what the source asked not to do.
        """
        backoff = 0.5
        while not self.stop.is_set() and not self.checkpointer.failure:
            if self.checkpointer.committable() != position:
                self.stop.wait(0.01)
                continue
            try:
                self.store_position(self.store)
                if self.status.state == "retrying":
                    self.status.state, self.status.error = "running", None
                return True
            except LiberatorError as exc:
                self.status.state = "retrying"
                self.status.error = f"cannot store the position: {exc}"
                self.log.warning("cannot store the position before going on (%s); retrying in %.1fs", exc, backoff)
                self.stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
        return False

    def _recovered(self) -> None:
        self.log.info("reading again after %d retr%s", self.status.retries, "y" if self.status.retries == 1 else "ies")
        self.status.state = "running"
        self.status.error = None

    def _fail(self, message: str) -> None:
        self.status.state = "failed"
        self.status.error = message
        self.log.error("%s", message)

    def supervise(self) -> None:
        """Called by the daemon on every tick (see liberator.watch)."""
        if self.status.state in ("running", "retrying"):
            self.watch.tick(self.checkpointer.in_flight)

    def store_position(self, store: OffsetStore, notify_source: bool = True) -> None:
        """Store the newest position Kafka acknowledged everything up to; then tell the source, unless it is
        stuck in a call to its database (shutdown), where its hook could block on the same server."""
        with self._store_lock:
            position = self.checkpointer.committable()
            if position is None or position == self.stored:
                return
            document = position.to_json()
            store.save(StoredOffset.now(self.config.name, self.config.type, document))
            self.stored = position
            self.status.positions_stored += 1
            self.status.last_stored_at = time.time()
            self.status.position = document
            self.watch.stored()
            if notify_source:
                self.source.acknowledged(position)  # under the lock: heard in order


def load_start(store: OffsetStore, source_cls: type[Source], config: SourceConfig) -> Position | None:
    stored = store.load(config.name)
    if stored is None:
        return None
    if stored.source_type != config.type:
        raise ConfigError(
            f"source {config.name}: the stored position is for a {stored.source_type!r} source, not "
            f"{config.type!r}; run `liberator offsets reset CONFIG --source {config.name}` to start over"
        )
    try:
        return source_cls.position_type.from_json(stored.position)
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(
            f"source {config.name}: the stored position in {store.describe()} cannot be read ({exc}); "
            f"run `liberator offsets reset CONFIG --source {config.name}` to start over"
        ) from None


def registry_client(config: AppConfig, timeout: float = 10.0) -> RegistryClient:
    return RegistryClient(config.schema_registry.url, config.schema_registry.basic_auth, timeout=timeout)


def build_source(
    config: SourceConfig,
    app: str,
    stop: threading.Event,
    registry: RegistryClient | None = None,
    published: Callable[[Sequence[str]], str | None] | None = None,
    from_scratch: bool = False,
) -> Source:
    source_cls = plugins.load(plugins.SOURCE_GROUP, config.type, f"source {config.name}")
    log = logging.getLogger(f"liberator.source.{config.name}")
    context = SourceContext(
        app_name=app, stop=stop, log=log, registry=registry, published=published, from_scratch=from_scratch
    )
    source: Source = source_cls(config, context)
    return source


class Daemon:
    def __init__(self, config: AppConfig, from_scratch: bool = False) -> None:
        self.config = config
        self.from_scratch = from_scratch  # `run --from-scratch`: see SourceContext.from_scratch
        self.stop = threading.Event()
        self.metrics = Metrics(config.name)
        self.runners: list[SourceRunner] = []
        self.sink_runners: list[SinkRunner] = []
        self.stuck: list[str] = []  # what did not stop within shutdown_timeout
        self._signalled = False

    def install_signal_handlers(self) -> None:
        def handler(signum: int, _frame: FrameType | None) -> None:
            name = signal.Signals(signum).name
            if self._signalled:
                log.warning("%s again: still stopping (finishing deliveries, storing positions)", name)
                return
            self._signalled = True
            log.info("%s received: stopping", name)
            self.stop.set()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def run(self) -> int:
        """Run until stopped or until no source can run any more. Returns the process exit code."""
        config = self.config
        store = open_store(config)
        # Positions kept outside Kafka are read before any client talks to the broker: a damaged offsets
        # file is one error line at once, not after the broker answers.
        stored = None if store.needs_broker else store.load_all()
        registry = registry_client(config)
        producer = Producer(producer_settings(config.name, config.kafka))
        topics = TopicManager(config.kafka, admin_settings(config.kafka))
        publisher = Publisher(producer, registry, config.schema_registry, topics)
        http = start_http(config.http.listen, self.metrics) if config.http else None
        # Serving the producer from the start also lets its log lines through while the broker is awaited.
        poller_done = threading.Event()

        def poll_forever() -> None:
            while not poller_done.is_set():
                producer.poll(0.1)

        poller = threading.Thread(target=poll_forever, name="kafka-poll", daemon=True)
        poller.start()

        statuses: list[SourceStatus | SinkStatus] = [self.metrics.source(c.name, c.type) for c in config.sources]
        statuses += [self.metrics.sink(c.name, c.type) for c in config.sinks]
        stored_all = wait_for_kafka(topics, store, statuses, self.stop, stored)
        if stored_all is None:
            poller_done.set()
            poller.join()
            store.close()
            if http is not None:
                http.shutdown()
            log.info("stopped before the broker answered")
            return 0
        published = functools.partial(first_with_records, admin_settings(config.kafka))
        for source_config in config.sources:
            # Each source has its own stop: a delivery failure stops that source alone; shutdown stops all.
            source_stop = threading.Event()
            source = build_source(source_config, config.name, source_stop, registry, published, self.from_scratch)
            start = load_start(store, type(source), source_config) if source_config.name in stored_all else None
            status = self.metrics.source(source_config.name, source_config.type)
            if start is not None:
                status.position = start.to_json()
                log.info("source %s resumes from %s", source_config.name, start.to_json())
            elif self.from_scratch:
                log.info("source %s starts from scratch (--from-scratch)", source_config.name)
            else:
                log.info("source %s starts from the beginning", source_config.name)
            runner = SourceRunner(
                source, source_config, publisher, status, start, source_stop, store, config.offsets.stall_warning
            )
            self.runners.append(runner)

        self.sink_runners, dead_letter = create_sink_runners(config, self.stop, registry, self.metrics)

        for runner in self.runners:
            runner.thread.start()
        for sink_runner in self.sink_runners:
            sink_runner.thread.start()
        tick = min(config.offsets.flush_interval, SUPERVISE_INTERVAL)
        store_at = time.monotonic() + config.offsets.flush_interval
        try:
            while any(r.thread.is_alive() for r in self.runners) or any(r.thread.is_alive() for r in self.sink_runners):
                if self.stop.wait(tick):
                    break
                if time.monotonic() >= store_at:
                    self._store_positions(store)
                    store_at = time.monotonic() + config.offsets.flush_interval
                for runner in self.runners:
                    runner.supervise()
        finally:
            self._shut_down(store, producer, dead_letter)
            poller_done.set()
            poller.join()
            if http is not None:
                http.shutdown()
        failed = [r for r in self.runners if r.status.state == "failed"]
        for runner in failed:
            log.error("source %s failed: %s", runner.config.name, runner.status.error)
        failed_sinks = [r for r in self.sink_runners if r.status.state == "failed"]
        for sink_runner in failed_sinks:
            log.error("sink %s failed: %s", sink_runner.sink.config.name, sink_runner.status.error)
        log.info("stopped")
        return 1 if failed or failed_sinks or self.stuck else 0

    def _shut_down(self, store: OffsetStore, producer: Producer, dead_letter: DeadLetterProducer) -> None:
        """Stop every thread, flush, store positions: all within shutdown_timeout (liberator.shutdown)."""
        timeout = self.config.shutdown_timeout
        budget = ShutdownBudget(timeout)
        self.stop.set()
        for runner in self.runners:
            runner.stop.set()
        threads = [(f"source {r.config.name}", r.thread) for r in self.runners]
        threads += [(f"sink {r.sink.config.name}", r.thread) for r in self.sink_runners]
        self.stuck = join_all(threads, budget)
        for name in self.stuck:
            log.error(
                "%s did not stop within shutdown_timeout (%s): it is still waiting on its database; "
                "leaving it behind (what Kafka acknowledged is stored, the rest is read again on restart)",
                name,
                seconds(timeout),
            )
        dead_letter.close(budget.for_work())
        left = producer.flush(budget.for_work())
        if left:
            log.warning("%d events were not acknowledged before shutdown; they will be re-read on restart", left)
        stuck_sources = {r.config.name for r in self.runners if f"source {r.config.name}" in self.stuck}

        def store_and_close() -> None:
            self._store_positions(store, skip_hooks=stuck_sources)
            store.close()

        if not run_bounded(store_and_close, budget.for_positions(), "store-positions"):
            log.error(
                "positions could not be stored within shutdown_timeout (%s): %s", seconds(timeout), store.describe()
            )
            self.stuck.append("the offset store")

    def _store_positions(self, store: OffsetStore, skip_hooks: Collection[str] = ()) -> None:
        for runner in self.runners:
            try:
                runner.store_position(store, notify_source=runner.config.name not in skip_hooks)
            except LiberatorError as exc:
                log.warning("could not store the position of %s: %s", runner.config.name, exc)
