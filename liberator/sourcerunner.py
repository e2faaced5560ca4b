"""Runs one source: its reading thread reads batches, eventifies them, produces them, and hears back.

Everything that concerns one source happens on its reading thread, between two items the source yields:
the batch is turned into records (liberator.capture), produced with one delivery callback per batch, the
source's own producer is polled so that acknowledgements (and failures) are served right there, the
committable position moves, and the source hears `delivered` / `acknowledged` -- so no connector needs locks,
timers or rules about threads. A delivery failure is raised into the source's `read` at once. The committer
(the daemon's main thread) only reads `window.committable` and stores it.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Generator, Iterator
from typing import Any, cast

from confluent_kafka import KafkaError, KafkaException, Producer

from liberator.capture import CapturedTable, ChangeBatch, Eventifier
from liberator.capture.moves import TableMoved
from liberator.capture.rowerrors import RowErrors
from liberator.envelope import Envelope
from liberator.errors import FatalSourceError, IncompatibleSchemaError, LiberatorError, TransientSourceError, one_line
from liberator.events import ChangeEvent, Checkpoint, SourceItem
from liberator.inflight import DeliveryFailed, InFlight
from liberator.lease import Lease, LeaseLost
from liberator.metrics import SourceStatus
from liberator.offsets import OffsetStore, StoredOffset
from liberator.positions import Position
from liberator.progress import SnapshotProgress
from liberator.publisher import Publisher
from liberator.registry.client import RegistryUnavailable
from liberator.snapshots import SnapshotRequest
from liberator.source import AnySource, SourceConfig
from liberator.standby import LeaseTerms
from liberator.supervisor import Backoff, Supervisor
from liberator.topics import StoppedWaiting
from liberator.watch import SourceWatch

FIX_BROKER = "fix the broker or topic and restart"
FLUSH_ON_STOP = 30.0


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


class SourceRunner(LeaseTerms):
    def __init__(
        self,
        source: AnySource,
        config: SourceConfig,
        publisher: Publisher,
        producer: Producer,
        status: SourceStatus,
        start: Position | None,
        stop: threading.Event,
        store: OffsetStore,
        *,
        stall_warning: float = 0.0,
        max_in_flight: int = 20_000,
        max_in_flight_bytes: int = 64 << 20,
        progress: SnapshotProgress | None = None,
        lease: Lease | None = None,
        reload: Callable[[], Position | None] | None = None,
    ) -> None:
        self.source = source
        self.config = config
        self.publisher = publisher
        self.producer = producer
        self.status = status
        self.start = start
        self.stop = stop
        self.window = InFlight(max_in_flight, max_in_flight_bytes)
        # ha (docs/ha.md): read only while holding the lease; on taking it, resume from the stored position.
        self.lease = lease
        self.reload = reload or (lambda: self.stored)
        self._led = False
        envelope = getattr(config, "envelope", Envelope.state)
        self.log = logging.getLogger(f"liberator.source.{config.name}")
        errors = RowErrors(
            config.name,
            source.context.app_name,
            config.dead_letter.topic,
            log=self.log,
            ensure_topic=lambda topic: publisher.topics.ensure(topic, stop),
            counted=status.count_poison_row,
        )
        self.eventifier = Eventifier(
            Envelope(envelope),
            lambda table, topic: publisher.prepare_table(table, stop, topic),
            lambda event: publisher.encode_event(event, stop),
            errors,
            self._move_table,
        )
        self.store = store
        self.progress = progress  # counts snapshot reads per table
        if progress is not None:
            source.context.snapshots.figures = progress.figures  # for `liberator snapshot --status`
        self._store_lock = threading.Lock()  # the committer thread and a durable checkpoint both store
        # How long the way out may wait for Kafka's acknowledgements; the daemon shortens it to its shutdown budget.
        self.drain_budget: Callable[[], float] = lambda: FLUSH_ON_STOP
        self.stored: Position | None = start  # written under the store lock
        self.resume: Position | None = start  # the last position the source yielded: where a retry reopens
        self._stored_queue: deque[Position] = deque()  # committer -> reading thread
        self.watch = SourceWatch(status, self.log, stall_warning)
        self.supervisor = Supervisor(
            status,
            self.log,
            stop,
            transient=(TransientSourceError, RegistryUnavailable),
            stopped=(StoppedWaiting, GeneratorExit),
            pause=self._wait,
        )
        self.thread = threading.Thread(target=self._run, name=f"source-{config.name}", daemon=True)
        self.pausing = threading.Event()  # an operator asked for a pause (and has not resumed it)
        self.paused = threading.Event()  # the reading thread has stopped reading for it

    # -- the reading thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        close_after_drain = False

        def after_attempt() -> None:
            nonlocal close_after_drain
            if self.stop.is_set():
                close_after_drain = True
            else:
                self.source.close()

        try:
            self.supervisor.run(self._attempt, after_attempt=after_attempt)
        finally:
            self._drain()
            if close_after_drain:
                # On shutdown the source is closed after the drain: it still hears `delivered` for what Kafka
                # acknowledged meanwhile (the outbox cleans those rows up instead of publishing them again).
                self.source.close()
            if self.lease is not None:
                try:
                    self.store_position(self.store)  # the last acknowledged position, while still the leader
                except LiberatorError as exc:
                    self.log.warning("could not store the position before giving up the lease: %s", exc)
                self.lease.close()

    def _attempt(self) -> bool:
        """One supervised attempt (liberator.supervisor): read until stopped (False) or finished (True),
        sitting out each operator's pause in between. With a lease, stand by until it is held, and stand by
        again whenever it is lost."""
        while True:
            self._wait_while_paused()
            if self.stop.is_set():
                return False
            if self.lease is not None and not self._lead(self.lease):
                return False  # stopped while standing by
            try:
                finished = self._read()
            except DeliveryFailed as exc:
                kept = "positions stay at the last acknowledged event"
                raise FatalSourceError(f"{exc.reason}; {kept}; {FIX_BROKER}") from None
            except LeaseLost as exc:
                self._step_down(str(exc))
                continue
            except TableMoved:
                # Nothing of the refused batch was published: reading again from the last position, the source
                # takes the re-read request first (stored at once), then publishes to the new topic.
                self.source.close()
                continue
            if finished or self.stop.is_set() or not self.pausing.is_set():
                break
            # Paused: its connections are released (a replication stream left unread would time out);
            # resuming reads again from the last position it yielded, as a retry does.
            self.source.close()
        if finished:
            self.log.info("source finished (nothing more to read)")
        return finished

    def _read(self) -> bool:
        """Publish what `read()` yields from the last position it yielded before (a retry goes on from there);
        True when the source finished."""
        reader = self.source.read(self.resume)
        self.eventifier.restart()  # a transaction read in part before is read again from its start
        try:
            lease = self.lease
            for item in reader:
                if lease is not None and not lease.valid():
                    raise LeaseLost(lease.lost or "the lease is gone")
                cls = item.__class__
                if cls is ChangeBatch:
                    assert isinstance(item, ChangeBatch)
                    self._publish(item)
                    if item.position is not None:
                        self.resume = item.position
                    if self.progress is not None and self.source.phase == "snapshot":
                        self.progress.count(item.items)
                elif cls is Checkpoint:
                    assert isinstance(item, Checkpoint)
                    self._publish(ChangeBatch([], item.position))
                    self.resume = item.position
                    if item.durable and not self._store_now(item.position):
                        return False  # stopped before it was stored: nothing after it may be published
                elif cls is ChangeEvent:  # a connector's own record, with the position after it
                    assert isinstance(item, ChangeEvent)
                    self._publish(ChangeBatch([item], item.position))
                    if item.position is not None:
                        self.resume = item.position
                self._serve(reader)
                if self.status.state == "retrying":
                    self._recovered()
                if self.stop.is_set() or self.pausing.is_set():
                    return False
            return not self.stop.is_set()
        finally:
            if isinstance(reader, Generator):
                reader.close()

    def _publish(self, batch: ChangeBatch) -> None:
        # Encoding (and registering new schemas) comes first: when it fails nothing is in flight for it.
        records = (
            self.eventifier.records(batch.items, batch.committed, batch.position)
            if batch.items or batch.committed
            else []
        )
        window = self.window
        if records and not window.has_room():
            self._wait_for_room()
        delivery = window.batch(batch.position)
        window.add(delivery)
        if not records:
            return
        self.watch.publishing()
        produce = self.producer.produce
        on_delivery = delivery.on_delivery
        size = 0
        try:
            for topic, key, value, timestamp, headers in records:
                while True:
                    try:
                        produce(
                            topic, value, key, timestamp=timestamp, headers=cast(Any, headers), on_delivery=on_delivery
                        )
                        break
                    except BufferError:
                        # The broker is slow or away: wait for room instead of dropping or buffering without bound.
                        self._serve(None, 0.1)
                        if self.stop.is_set():
                            raise StoppedWaiting("stopped while the producer queue was full") from None
                    except KafkaException as exc:  # refused before queueing, e.g. larger than message.max.bytes
                        size = (0 if key is None else len(key)) + (0 if value is None else len(value))
                        raise FatalSourceError(
                            f"the Kafka producer refused an event for topic {topic} ({size} bytes): "
                            f"{exc.args[0].str()}; fix kafka.settings or the topic"
                        ) from None
                delivery.count += 1
                size += (0 if key is None else len(key)) + (0 if value is None else len(value))
        except BaseException:
            delivery.position = None  # not all of the batch was handed over: its position must not be stored
            raise
        finally:
            delivery.size = size
            window.events += delivery.count
            window.bytes += size
            status = self.status
            status.events_published += delivery.count
            status.bytes_published += size
            status.last_event_ms = records[-1][3]

    def _store_now(self, position: Position) -> bool:
        """Store a durable checkpoint's position before the source goes on; False when stopped first.

        It waits for what was yielded before it (usually nothing) and retries a failing store, since going
        on without it is what the source asked not to do.
        """
        backoff = Backoff(0.5)
        while not self.stop.is_set():
            self._serve(None, 0.01)
            if self.window.committable != position:
                continue
            try:
                self.store_position(self.store)
                self._serve(None)  # the source hears it before it goes on
                self.supervisor.recovered()
                return True
            except LiberatorError as exc:
                self._wait(self.supervisor.retrying(f"cannot store the position: {exc}", backoff))
        return False

    def _wait_for_room(self) -> None:
        while not self.window.has_room():
            self._serve(None, 0.05)
            if self.stop.is_set():
                raise StoppedWaiting("stopped while the producer queue was full")

    def _serve(self, reader: Iterator[SourceItem] | None, timeout: float = 0) -> None:
        """Serve Kafka's acknowledgements here, move the committable position, tell the source."""
        self.producer.poll(timeout)
        window = self.window
        moved = window.settle()
        if moved is not None:
            self.source.delivered(moved)
        queue = self._stored_queue
        while queue:
            self.source.acknowledged(queue.popleft())
        status = self.status
        if window.acked != status.events_acked:
            status.events_acked = window.acked
            self.watch.acknowledged()
        status.phase = self.source.phase
        pacing = self.source.context.pacing
        pacing.max_wait = pacing.busy if window.events else pacing.idle
        if window.failure is not None:
            error, message = window.failure
            reason = delivery_failure(message.topic(), message.key() is None, error)
            if isinstance(reader, Generator):
                reader.throw(DeliveryFailed(reason))  # into the source's read, at the item it yielded last
            raise DeliveryFailed(reason)

    def _wait(self, seconds: float) -> None:
        """Wait (for a retry) while still serving acknowledgements of what is in flight."""
        deadline = time.monotonic() + seconds
        while not self.stop.is_set() and time.monotonic() < deadline:
            if self.pausing.is_set():
                self.paused.set()  # not reading while it waits to retry either; the retry waits for resume
            try:
                self._serve(None, min(0.1, max(0.0, deadline - time.monotonic())))
            except DeliveryFailed:
                return

    def _move_table(self, table: CapturedTable, refusal: IncompatibleSchemaError) -> None:
        """on_incompatible: new_topic (liberator.capture.moves): the table goes on in its next topic, and the
        source reads it again into that topic with its incremental snapshot (a request on its desk, taken when
        the source reads again: TableMoved)."""
        move = self.source.context.topic_moves.move(table, one_line(refusal, 1000))
        self.source.context.snapshots.submit(SnapshotRequest((table.name,), None, f"move-{uuid.uuid4().hex[:8]}"))
        self.status.topic_moves.append(move)
        self.log.warning(
            "table %s moved from topic %s to %s (on_incompatible: new_topic; its rows are read again into it, "
            "consumers move to it): %s",
            move.table,
            move.old_topic,
            move.new_topic,
            move.reason,
        )
        raise TableMoved(f"table {move.table} moved to {move.new_topic}")

    # -- pause and resume (an operator's, through liberator.admin) --------------------------------------

    @property
    def state(self) -> str:
        return self.status.state

    def pause_reading(self) -> bool:
        """Ask the reading thread to stop reading after the item it is at; False when already asked."""
        if self.pausing.is_set():
            return False
        self.pausing.set()
        self.status.paused = True
        self.log.info("pausing: reading stops after the current item; deliveries and positions go on")
        return True

    def resume_reading(self) -> bool:
        """Let a paused source read again from where it stopped; False when it was not paused."""
        if not self.pausing.is_set():
            return False
        self.pausing.clear()
        self.paused.clear()
        self.status.paused = False
        self.watch.resumed()
        self.log.info("resumed: reading again")
        return True

    def _wait_while_paused(self) -> None:
        """While paused: read nothing, serve Kafka's acknowledgements (the committer stores what they free)."""
        if not self.pausing.is_set():
            return
        self.paused.set()
        self.log.info("paused: nothing is read until resumed")
        while self.pausing.is_set() and not self.stop.is_set():
            self._serve(None, 0.1)

    def _drain(self) -> None:
        """On the way out: let Kafka acknowledge what is in flight, so the final store holds all of it."""
        left = self.producer.flush(self.drain_budget())
        if left:
            self.log.warning("%d events were not acknowledged before shutdown; they will be re-read on restart", left)
        moved = self.window.settle()
        self.status.events_acked = self.window.acked
        if moved is not None:
            try:
                self.source.delivered(moved)
            except Exception:
                self.log.exception("the source failed to act on the acknowledgements heard while stopping")

    def _recovered(self) -> None:
        self.log.info("reading again after %d retr%s", self.status.retries, "y" if self.status.retries == 1 else "ies")
        self.supervisor.recovered()

    # -- the committer thread -------------------------------------------------------------------------

    def store_position(self, store: OffsetStore, notify_source: bool = True) -> None:
        """Store the newest position Kafka acknowledged everything up to; the source hears of it on its own
        thread (unless it is stuck in a call to its database at shutdown: then it never does)."""
        with self._store_lock:
            position = self.window.committable
            if position is None or position == self.stored:
                return
            if self.lease is not None and not self.lease.valid():
                return  # another daemon may lead by now: its position is the one that counts
            document = position.to_json()
            store.save(StoredOffset.now(self.config.name, self.config.type, document))
            self.stored = position
            self.status.positions_stored += 1
            self.status.last_stored_at = time.time()
            self.status.position = document
            self.watch.stored()
            if notify_source:
                self._stored_queue.append(position)

    def supervise(self) -> None:
        """Called by the daemon on every tick (see liberator.watch): the window's counts are read, not changed."""
        status = self.status
        status.phase = self.source.phase  # also while the source yields nothing (a standby, say)
        if status.state in ("running", "retrying"):
            self.watch.tick(self.window.events)
        if self.progress is not None:
            self.progress.track_backfills(self.source.context.snapshots.backfill_progress())
            self.progress.tick(status.phase == "snapshot" and status.state in ("starting", "running", "retrying"))
            status.snapshot = self.progress.figures()

    def settled(self) -> bool:
        """Everything published is acknowledged and the newest committable position is stored (for tests)."""
        return (
            self.window.events == 0 and self.window.committable is not None and self.stored == self.window.committable
        )
