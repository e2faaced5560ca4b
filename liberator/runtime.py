"""The daemon: runs each source in its own thread with its own producer (liberator.sourcerunner), stores positions.

Sinks run beside the sources, each in its own thread (liberator.sinkrunner).

Positions are stored only from the Checkpointer, i.e. only once Kafka acknowledged every event before
them; a crash at any moment therefore replays (at-least-once) but never loses.
"""

from __future__ import annotations

import functools
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Collection, Sequence
from types import FrameType

from confluent_kafka import Producer

from liberator import plugins
from liberator.admin import Admin
from liberator.backlog import BacklogSampler
from liberator.capture.moves import TopicMoves
from liberator.config import AppConfig, DatabaseTimeouts
from liberator.dbconnect import DEFAULT_TIMEOUTS, seconds
from liberator.errors import ConfigError, LiberatorError
from liberator.health import start_http
from liberator.instance import InstanceSlot
from liberator.lease import Lease
from liberator.metrics import LIVE_TIMEOUT, Metrics, SinkStatus, SourceStatus
from liberator.offsets import OffsetStore, open_store
from liberator.positions import Position
from liberator.progress import Estimator, LogLines, ProgressDisplay, SnapshotProgress, display_for, url_estimator
from liberator.publisher import Publisher, producer_settings
from liberator.registry.client import RegistryClient
from liberator.shutdown import ShutdownBudget, join_all, run_bounded
from liberator.sinkrunner import DeadLetterProducer, SinkRunner, create_sink_runners
from liberator.source import AnySource, SourceConfig, SourceContext
from liberator.sourcerunner import SourceRunner, delivery_failure
from liberator.startup import wait_for_kafka
from liberator.topickeys import TopicKeys
from liberator.topics import TopicManager, admin_settings, first_with_records, with_records

log = logging.getLogger("liberator")

SUPERVISE_INTERVAL = 1.0  # how often backpressure and stalled positions are looked for

__all__ = ["Daemon", "build_source", "delivery_failure", "load_start", "registry_client"]


def load_start(store: OffsetStore, source_cls: type[AnySource], config: SourceConfig) -> Position | None:
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
    topic_keys: Callable[[str], TopicKeys] | None = None,
    with_records: Callable[[Sequence[str]], list[str]] | None = None,
    topic_names: Callable[[], Collection[str]] | None = None,
) -> AnySource:
    source_cls = plugins.load(plugins.SOURCE_GROUP, config.type, f"source {config.name}")
    if not isinstance(config, source_cls.config_model):
        # load_config validated it with this very model; anything else is a caller's mistake
        raise ConfigError(f"source {config.name}: its config is not a {source_cls.config_model.__name__}")
    log = logging.getLogger(f"liberator.source.{config.name}")
    context = SourceContext(
        app_name=app,
        stop=stop,
        log=log,
        registry=registry,
        published=published,
        from_scratch=from_scratch,
        topic_keys=topic_keys,
        with_records=with_records,
        topic_moves=TopicMoves(config.new_topic, topic_names, log),
    )
    source: AnySource = source_cls(config, context)
    return source


def runner_log(config: SourceConfig) -> logging.Logger:
    return logging.getLogger(f"liberator.source.{config.name}")


def estimator(config: SourceConfig) -> Estimator | None:
    """Row estimates for the snapshot progress, from the source's database statistics (where it has a URL)."""
    url = getattr(config, "url", None)
    if not isinstance(url, str):
        return None
    timeouts = config if isinstance(config, DatabaseTimeouts) else DEFAULT_TIMEOUTS
    return url_estimator(url, timeouts, runner_log(config))


class Daemon:
    def __init__(self, config: AppConfig, from_scratch: bool = False, log_format: str | None = None) -> None:
        self.config = config
        # Snapshot progress: bars on a terminal with text logs (`run`), else log lines (tests, services).
        self.progress_display: ProgressDisplay = (
            display_for(sys.stderr, log_format, config.progress.interval)
            if log_format is not None
            else LogLines(config.progress.interval)
        )
        self.from_scratch = from_scratch  # `run --from-scratch`: see SourceContext.from_scratch
        self.stop = threading.Event()
        self.metrics = Metrics(config.name, config.http.live_timeout if config.http else LIVE_TIMEOUT)
        self.runners: list[SourceRunner] = []
        self.sink_runners: list[SinkRunner] = []
        self.stuck: list[str] = []  # what did not stop within shutdown_timeout
        self.admin = Admin([c.name for c in config.sources])  # pause/resume through the http: server
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
        settings = producer_settings(config.name, config.kafka)
        # One producer per source: its reading thread polls it, so acknowledgements come back there.
        producers = {
            c.name: Producer({**settings, "client.id": f"liberator-{config.name}-{c.name}"}) for c in config.sources
        }
        topics = TopicManager(config.kafka, admin_settings(config.kafka))
        publisher = Publisher(registry, config.schema_registry, topics)
        http = start_http(config.http.listen, self.metrics, self.admin) if config.http else None
        # Until the sources read, the producers are served here, which also lets their log lines through
        # while the broker is awaited; from then on each source's thread serves its own.
        poller_done = threading.Event()

        def poll_until_sources_start() -> None:
            while not poller_done.is_set():
                for producer in producers.values():
                    producer.poll(0)
                poller_done.wait(0.1)

        poller = threading.Thread(target=poll_until_sources_start, name="kafka-poll", daemon=True)
        poller.start()

        statuses: list[SourceStatus | SinkStatus] = [self.metrics.source(c.name, c.type) for c in config.sources]
        statuses += [self.metrics.sink(c.name, c.type) for c in config.sinks]
        stored_all = wait_for_kafka(topics, store, statuses, self.stop, stored, beat=self.metrics.heartbeat.beat)
        if stored_all is None:
            poller_done.set()
            poller.join()
            store.close()
            if http is not None:
                http.shutdown()
            log.info("stopped before the broker answered")
            return 0
        published = functools.partial(first_with_records, admin_settings(config.kafka))
        topic_keys = functools.partial(TopicKeys, admin_settings(config.kafka))
        holding = functools.partial(with_records, admin_settings(config.kafka))
        for source_config in config.sources:
            self.metrics.heartbeat.beat()
            # Each source has its own stop: a delivery failure stops that source alone; shutdown stops all.
            source_stop = threading.Event()
            source = build_source(
                source_config,
                config.name,
                source_stop,
                registry,
                published,
                self.from_scratch,
                topic_keys,
                holding,
                functools.partial(topics.names, source_stop),
            )
            start = load_start(store, type(source), source_config) if source_config.name in stored_all else None
            status = self.metrics.source(source_config.name, source_config.type)
            if start is not None:
                status.position = start.to_json()
                log.info("source %s resumes from %s", source_config.name, start.to_json())
            elif self.from_scratch:
                log.info("source %s starts from scratch (--from-scratch)", source_config.name)
            else:
                log.info("source %s starts from the beginning", source_config.name)
            lease = self._lease(source, source_config)
            runner = SourceRunner(
                source,
                source_config,
                publisher,
                producers[source_config.name],
                status,
                start,
                source_stop,
                store,
                stall_warning=config.offsets.stall_warning,
                max_in_flight=config.kafka.max_in_flight,
                max_in_flight_bytes=config.kafka.max_in_flight_bytes,
                progress=SnapshotProgress(
                    source_config.name, runner_log(source_config), self.progress_display, estimator(source_config)
                ),
                lease=lease,
                reload=functools.partial(load_start, store, type(source), source_config),
            )
            self.runners.append(runner)
            self.admin.runners[source_config.name] = runner
            if source.snapshots_on_demand:
                self.admin.desks[source_config.name] = source.context.snapshots

        # Held while the daemon runs: the sinks' static group membership ids derive from it.
        slot = InstanceSlot(config.name) if config.sinks else None
        self.sink_runners, dead_letter = create_sink_runners(
            config, self.stop, registry, self.metrics, slot.id if slot else ""
        )

        poller_done.set()
        poller.join()
        for runner in self.runners:
            runner.thread.start()
        for sink_runner in self.sink_runners:
            sink_runner.thread.start()
        backlog = BacklogSampler(self.runners)
        backlog.start()
        tick = min(config.offsets.flush_interval, SUPERVISE_INTERVAL)
        store_at = time.monotonic() + config.offsets.flush_interval
        try:
            while any(r.thread.is_alive() for r in self.runners) or any(r.thread.is_alive() for r in self.sink_runners):
                self.metrics.heartbeat.beat()
                if self.stop.wait(tick):
                    break
                if time.monotonic() >= store_at:
                    self._store_positions(store)
                    store_at = time.monotonic() + config.offsets.flush_interval
                for runner in self.runners:
                    runner.supervise()
        finally:
            backlog.stop()
            self.progress_display.close()
            self._shut_down(store, dead_letter)
            if slot is not None:
                slot.close()
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

    def _lease(self, source: AnySource, config: SourceConfig) -> Lease | None:
        """The source's single-writer lease (liberator.lease) under `ha.mode: lease`, or where the source
        needs one anyway (the outbox's `locking: leader`)."""
        ha = self.config.ha
        if ha.mode == "off" and not source.lease_required():
            return None
        url = source.lease_url()
        if url is None:
            raise ConfigError(
                f"source {config.name}: ha.mode: lease needs a database to hold the lease, and this source "
                "names none; set ha.mode: off and run one daemon"
            )
        timeouts = config if isinstance(config, DatabaseTimeouts) else DEFAULT_TIMEOUTS
        return Lease(url, timeouts, source.lease_key(), ha.takeover, f"source {config.name}")

    def _shut_down(self, store: OffsetStore, dead_letter: DeadLetterProducer) -> None:
        """Stop every thread, flush, store positions: all within shutdown_timeout (liberator.shutdown)."""
        timeout = self.config.shutdown_timeout
        budget = ShutdownBudget(timeout)
        self.stop.set()
        for runner in self.runners:
            runner.drain_budget = budget.for_work  # each source flushes its own producer on its way out
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
            self.metrics.heartbeat.beat()  # one store may wait on a frozen broker: each finished one is progress
            try:
                runner.store_position(store, notify_source=runner.config.name not in skip_hooks)
            except LiberatorError as exc:
                log.warning("could not store the position of %s: %s", runner.config.name, exc)
