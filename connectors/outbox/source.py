"""The outbox-table source: publish what the application wrote into its outbox, then clean it up.

The table is a queue. Each round claims the oldest unpublished rows (a batch), publishes them, waits
until Kafka has acknowledged them (the runtime's `delivered()` hook), then deletes or marks them.
Reading "what is still there" rather than "ids above the last one" means a transaction that commits
late with a smaller id is simply read by a later round: nothing is skipped.

Several daemons: with `skip_locked` the batch is claimed with SELECT ... FOR UPDATE SKIP LOCKED in a
transaction that stays open until the cleanup commits, so the rows stay locked, and invisible to the
other daemons' claims, exactly until Kafka acknowledged them. A daemon also leaves alone rows whose
aggregate has older rows another daemon holds, so one aggregate's events keep their order. With
`leader` one daemon holds a lock and publishes; the others wait for it. A kill -9 at any moment rolls
the transaction back (or the lock goes with the session), so the rows are published again, with the
same event id header, by whoever claims them next.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from collections.abc import Generator, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, cast

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from connectors.outbox.claim import Claim, Claimer
from connectors.outbox.config import OutboxSourceConfig
from connectors.outbox.dialects import classify_error, use_skip_locked
from connectors.outbox.locks import LeaderLock
from connectors.outbox.notify import Notifier
from connectors.outbox.position import OutboxPosition
from connectors.outbox.queries import OutboxQueries
from liberator import sqldb
from liberator.errors import FatalSourceError, LiberatorError
from liberator.events import Checkpoint, SourceItem, Stream
from liberator.outbox import OutboxRouter
from liberator.positions import Position
from liberator.source import Source, SourceConfig, SourceContext

# After shutdown, how long a claimed batch waits for Kafka's acknowledgement before it is let go (the
# runtime flushes the producer for most of shutdown_timeout first; a process exits before this fires).
FINISH_TIMEOUT = 45.0
# While waiting for an acknowledgement, hand the runtime a checkpoint this often so it can notice a
# failed delivery or a stop request.
_TICK = 1.0


@dataclass
class _Batch:
    position: OutboxPosition
    ids: list[Any]
    conn: sa.Connection | None  # the open transaction holding the rows' locks (skip_locked)
    complete: bool = False  # its checkpoint was yielded: an acknowledgement will follow


class OutboxSource(Source[Any, Any]):
    config_model: ClassVar[type[SourceConfig]] = OutboxSourceConfig
    position_type: ClassVar[type[Position]] = OutboxPosition

    def __init__(self, config: SourceConfig, context: SourceContext) -> None:
        super().__init__(config, context)
        assert isinstance(config, OutboxSourceConfig)
        self.cfg = config
        self.phase = "starting"
        self._engine: sa.Engine | None = None
        self._router: OutboxRouter | None = None
        self._queries: OutboxQueries | None = None
        self._claimer: Claimer | None = None
        self._leader: LeaderLock | None = None
        self._notifier: Notifier | None = None
        self._in_flight: list[_Batch] = []  # published batches awaiting Kafka, oldest first
        self._acked: OutboxPosition | None = None
        self._ack_event = threading.Event()
        self._lock = threading.Lock()  # guards _acked, _in_flight and _closed (reading and committer threads)
        self._closed = False
        self._finishing = threading.Lock()  # shutdown cleanup: close(), acknowledged() and the finisher, one at a time
        self._finisher: threading.Timer | None = None

    # -- set-up -------------------------------------------------------------------------------------

    def _error(self, exc: Exception) -> LiberatorError:
        return classify_error(exc, self.cfg)

    def _open(self) -> None:
        with self._lock:
            self._closed = False
        if self._engine is None:
            self._engine = sqldb.create_engine(self.cfg.url, self.cfg)
        if self._router is None:
            self._router = OutboxRouter(self.cfg, self.cfg.name, self.context.registry)
        try:
            with self._engine.connect() as conn:
                skip_locked = use_skip_locked(conn, self.cfg)
            self._queries = OutboxQueries(self.cfg, self._engine.dialect.name)
            self._claimer = Claimer(self._engine, self._queries, self.cfg, skip_locked)
            if not skip_locked and self._leader is None:
                database = self._engine.url.database or ""
                self._leader = LeaderLock(
                    self._engine, f"liberator-outbox.{database.rsplit('/', 1)[-1]}.{self.cfg.table}"
                )
            if self.cfg.notify_channel is not None and self._notifier is None:
                self._notifier = Notifier(self._engine.url, self.cfg.notify_channel, self.cfg)
        except SQLAlchemyError as exc:
            raise self._error(exc) from None

    def check(self) -> list[str]:
        try:
            self._open()
            assert self._engine is not None and self._queries is not None
            with self._engine.connect() as conn:
                # The claim and the cleanup, run and rolled back: checks the table, the columns and the
                # privileges (FOR UPDATE needs UPDATE rights) in one go.
                assert self._claimer is not None
                conn.execute(self._queries.claim(1, self._claimer.skip_locked)).all()
                for statement, params in self._queries.cleanup([-1]):
                    conn.execute(statement, params)
                conn.rollback()
        except LiberatorError as exc:
            return [str(exc)]
        except SQLAlchemyError as exc:
            return [str(self._error(exc))]
        finally:
            self.close()
        return []

    def streams(self) -> list[Stream]:
        # Topics follow the rows' aggregate types and the values' schemas belong to the application;
        # the one stream known in advance is the dead-letter topic.
        if self.cfg.on_invalid != "dead_letter":
            return []
        return [OutboxRouter(self.cfg, self.cfg.name, self.context.registry).dead_letter_stream]

    # -- reading ------------------------------------------------------------------------------------

    def read(self, start: Position | None) -> Iterator[SourceItem]:
        self._open()
        run = uuid.uuid4().hex[:12]
        number = 0
        stop = self.context.stop
        try:
            while not stop.is_set():
                self._clean_up_acknowledged()
                if self._leader is not None and not self._lead():
                    continue
                if len(self._in_flight) >= self.cfg.max_in_flight:
                    yield from self._await_oldest()
                    continue
                claimed = self._claim()
                if claimed is None:
                    if self._in_flight:
                        yield from self._await_oldest()
                    else:
                        self._wait_for_work()
                    continue
                number += 1
                failure = yield from self._publish(run, number, claimed.conn, claimed.rows)
                if failure is not None:
                    # on_invalid: stop. Let Kafka acknowledge (and clean up) what came before the bad row.
                    while self._in_flight and not stop.is_set():
                        yield from self._await_oldest()
                        self._clean_up_acknowledged()
                    raise failure
                if not claimed.full:
                    # Caught up: finish what is in flight, then rest until there is new work.
                    while self._in_flight and not stop.is_set():
                        yield from self._await_oldest()
                        self._clean_up_acknowledged()
                    self._wait_for_work()
        except SQLAlchemyError as exc:
            raise self._error(exc) from None
        finally:
            with self._lock:
                kept = [b for b in self._in_flight if b.complete] if stop.is_set() else []
                dropped = [b for b in self._in_flight if b not in kept]
            for batch in dropped:
                self._release(batch)

    def _lead(self) -> bool:
        assert self._leader is not None
        if self._leader.held:
            self._leader.still_held()
            return True
        if self._leader.try_acquire():
            self.context.log.info("holding the outbox lock: publishing")
            return True
        if self.phase != "standby":
            self.context.log.info("another daemon publishes this outbox; standing by")
            self.phase = "standby"
        self.context.stop.wait(self.cfg.poll_interval)
        return False

    def _claim(self) -> Claim | None:
        assert self._claimer is not None
        self.phase = "polling"
        with self._lock:
            in_flight = {i for batch in self._in_flight for i in batch.ids}
        return self._claimer.claim(in_flight)

    def _publish(
        self, run: str, number: int, conn: sa.Connection | None, rows: list[sa.Row[Any]]
    ) -> Generator[SourceItem, None, FatalSourceError | None]:
        """Yield a batch's events and its checkpoint; the batch stays in flight until Kafka acknowledged
        it. Returns the on_invalid=stop error of a bad row (the batch then ends before that row)."""
        assert self._router is not None
        batch = _Batch(OutboxPosition(run, number), [], conn)
        with self._lock:
            self._in_flight.append(batch)
        self.phase = "publishing"
        id_column = self.cfg.columns.id
        failure: FatalSourceError | None = None
        for row in rows:
            mapping = row._mapping
            try:
                events = self._router.route(cast(Mapping[str, Any], mapping), None)
            except FatalSourceError as exc:
                failure = exc
                break
            batch.ids.append(mapping[id_column])
            yield from events
        if not batch.ids:
            self._release(batch)
            return failure
        with self._lock:
            batch.position = dataclasses.replace(batch.position, last_id=batch.ids[-1])
            batch.complete = True
        yield Checkpoint(batch.position)
        return failure

    def _await_oldest(self) -> Generator[SourceItem, None, None]:
        """Wait until Kafka acknowledged the oldest batch in flight (or stop), ticking checkpoints so
        the runtime can notice a failed delivery or a stop request meanwhile."""
        stop = self.context.stop
        with self._lock:
            oldest = self._in_flight[0].position if self._in_flight else None
        if oldest is None:
            return
        last_tick = time.monotonic()
        while not stop.is_set():
            with self._lock:
                acked = self._acked
            if acked is not None and acked.covers(oldest):
                return
            self._ack_event.wait(0.05)
            self._ack_event.clear()
            if time.monotonic() - last_tick >= _TICK:
                last_tick = time.monotonic()
                with self._lock:
                    newest = self._in_flight[-1].position if self._in_flight else oldest
                yield Checkpoint(newest)

    def _clean_up_acknowledged(self) -> None:
        """Delete or mark, in order, every batch in flight that Kafka acknowledged."""
        while True:
            with self._lock:
                acked = self._acked
                batch = self._in_flight[0] if self._in_flight else None
            if batch is None or not batch.complete or acked is None or not acked.covers(batch.position):
                return
            self._cleanup(batch)
            self._release(batch)

    def _cleanup(self, batch: _Batch) -> None:
        assert self._queries is not None and self._engine is not None
        statements = self._queries.cleanup(batch.ids)
        if batch.conn is not None:
            for statement, params in statements:
                batch.conn.execute(statement, params)
            batch.conn.commit()
        else:
            with self._engine.begin() as conn:
                for statement, params in statements:
                    conn.execute(statement, params)
        batch.ids = []

    def _release(self, batch: _Batch) -> None:
        """Let go of a batch: an uncommitted claim rolls back, so its rows are published again later."""
        with self._lock:
            if batch in self._in_flight:
                self._in_flight.remove(batch)
        if batch.conn is not None:
            try:
                batch.conn.rollback()
                batch.conn.close()
            except SQLAlchemyError:
                pass  # the session is gone; the server rolled it back
            batch.conn = None

    def _wait_for_work(self) -> None:
        stop = self.context.stop
        if self._notifier is None:
            stop.wait(self.cfg.poll_interval)
            return
        deadline = time.monotonic() + self.cfg.poll_interval
        while not stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0 or self._notifier.wait(min(0.5, left)):
                return

    # -- acknowledgement and shutdown ---------------------------------------------------------------

    def delivered(self, position: Position) -> None:
        # The table, not the stored position, says what is left: a batch can go as soon as Kafka has it,
        # so throughput does not wait for `offsets.flush_interval`. The reading thread does the cleanup.
        if not isinstance(position, OutboxPosition):
            return
        with self._lock:
            self._acked = position
        self._ack_event.set()

    def acknowledged(self, position: Position) -> None:
        if not isinstance(position, OutboxPosition):
            return
        with self._lock:
            if self._acked is None or not self._acked.covers(position):
                self._acked = position
            closed = self._closed and bool(self._in_flight)
        self._ack_event.set()
        if closed:
            # The reading thread is gone (shutdown): clean up here, the last thing this source does;
            # batches this acknowledgement does not cover are let go (published again next run).
            with self._finishing:
                if self._engine is None:
                    return  # already torn down
                self._finish_cleanup("cleaned up the batches Kafka acknowledged during shutdown")
                self._teardown()

    def close(self) -> None:
        with self._finishing:
            with self._lock:
                self._closed = True
            stopping = self.context.stop.is_set()
            if stopping:
                self._finish_cleanup()  # delivered while the reading thread was stopping
            with self._lock:
                waiting = bool(self._in_flight) and stopping
            if waiting:
                # Kafka may still acknowledge these while the daemon flushes: the position stored then
                # reaches `acknowledged`, which cleans them up; if none comes, they are published again.
                self._finisher = threading.Timer(FINISH_TIMEOUT, self._abandon)
                self._finisher.daemon = True
                self._finisher.start()
                return
            self._teardown()

    def _finish_cleanup(self, done: str | None = None) -> None:
        try:
            self._clean_up_acknowledged()
        except SQLAlchemyError as exc:
            self.context.log.warning("could not clean up at shutdown (%s); those rows will be published again", exc)
            return
        if done is not None:
            self.context.log.info("%s", done)

    def _abandon(self) -> None:
        with self._finishing:
            if self._in_flight:
                self.context.log.warning("batches were not acknowledged before shutdown; they will be published again")
            self._teardown()

    def _teardown(self) -> None:
        if self._finisher is not None and self._finisher is not threading.current_thread():
            self._finisher.cancel()
        self._finisher = None
        with self._lock:
            batches = list(self._in_flight)
        for batch in batches:
            self._release(batch)
        if self._leader is not None:
            self._leader.release()
            self._leader = None
        if self._notifier is not None:
            self._notifier.close()
            self._notifier = None
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
