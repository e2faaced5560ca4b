"""The outbox-table source: publish what the application wrote into its outbox, then clean it up.

The table is a queue. Each round claims the oldest unpublished rows (a batch) and yields their events as one
`ChangeBatch`; once Kafka has acknowledged it, the runtime calls `delivered()` on this source's reading thread,
and the batch's rows are deleted or marked there. Reading "what is still there" rather than "ids above the
last one" means a transaction that commits late with a smaller id is simply read by a later round: nothing
is skipped.

Several daemons: with `skip_locked` the batch is claimed with SELECT ... FOR UPDATE SKIP LOCKED in a
transaction that stays open until the cleanup commits, so the rows stay locked, and invisible to the
other daemons' claims, exactly until Kafka acknowledged them. A daemon also leaves alone rows whose
aggregate has older rows another daemon holds, so one aggregate's events keep their order. With
`leader` one daemon publishes: the core's lease (liberator.lease, docs/ha.md) keeps the others standing by,
whatever `ha.mode` says. A kill -9 at any moment rolls
the transaction back (or the lock goes with the session), so the rows are published again, with the
same event id header, by whoever claims them next.
"""

from __future__ import annotations

import functools
import time
import uuid
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, cast

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from liberator import sqldb
from liberator.capture import BatchItem, ChangeBatch
from liberator.connectors.outbox.claim import Claim, ClaimAhead, Claimer, InFlight
from liberator.connectors.outbox.cleaner import Cleaner
from liberator.connectors.outbox.config import OutboxSourceConfig
from liberator.connectors.outbox.dialects import classify_error, queue_isolation, queue_session, use_skip_locked
from liberator.connectors.outbox.notify import Notifier
from liberator.connectors.outbox.position import OutboxPosition
from liberator.connectors.outbox.presence import Presence
from liberator.connectors.outbox.queries import OutboxQueries
from liberator.errors import FatalSourceError, LiberatorError
from liberator.events import IDLE, Idle, SourceItem, Stream
from liberator.outbox import OutboxRouter
from liberator.positions import Position
from liberator.source import Source, SourceConfig, SourceContext

PING_AFTER_IDLE = 1.0  # seconds a pooled connection may sit unused before a checkout pings it


@dataclass
class _Batch:
    """A claimed batch whose events were yielded and await Kafka's acknowledgement."""

    position: OutboxPosition
    ids: list[Any]
    conn: sa.Connection | None  # the open transaction holding the rows' locks (skip_locked)


class OutboxSource(Source[OutboxSourceConfig, OutboxPosition]):
    config_model: ClassVar[type[SourceConfig]] = OutboxSourceConfig
    position_type: ClassVar[type[Position]] = OutboxPosition

    def __init__(self, config: OutboxSourceConfig, context: SourceContext) -> None:
        super().__init__(config, context)
        self.cfg = config
        self.phase = "starting"
        self._engine: sa.Engine | None = None
        self._router: OutboxRouter | None = None
        self._queries: OutboxQueries | None = None
        self._claimer: Claimer | None = None
        self._presence: Presence | None = None  # skip_locked: this daemon's registration among the claimers
        self._cleaner: Cleaner | None = None  # skip_locked: commits acknowledged batches' cleanups meanwhile
        self._ahead: ClaimAhead | None = None  # skip_locked: takes the next claim while a batch is routed
        self._notifier: Notifier | None = None
        # Yielded batches awaiting Kafka, oldest first; only the reading thread (read and the hooks) touches it.
        self._awaiting: deque[_Batch] = deque()
        self._cleanup_failed: LiberatorError | None = None  # raised in read: the hooks must not raise

    # -- set-up -------------------------------------------------------------------------------------

    def _error(self, exc: Exception) -> LiberatorError:
        return classify_error(exc, self.cfg)

    def _open(self) -> None:
        if self._engine is None:
            # One connection per claim in flight (skip_locked), plus the claim's own, the lock's and a spare.
            # Claims check connections out every few milliseconds: a ping each time was a sixth of the
            # claim's time, so only connections idle for a poll interval or more are pinged.
            self._engine = sqldb.create_engine(
                self.cfg.url,
                self.cfg,
                ping_after_idle=PING_AFTER_IDLE,
                pool_size=self.cfg.max_in_flight + 3,
                **queue_isolation(self.cfg.url),
            )
            queue_session(self._engine)
        if self._router is None:
            self._router = OutboxRouter(
                self.cfg, self.cfg.name, self.context.registry, on_error=self.cfg.on_error, table=self.cfg.table
            )
        try:
            with self._engine.connect() as conn:
                skip_locked = use_skip_locked(conn, self.cfg)
            self._queries = OutboxQueries(self.cfg, self._engine.dialect.name, json_table=skip_locked)
            database = self._engine.url.database or ""
            lock_name = f"liberator-outbox.{database.rsplit('/', 1)[-1]}.{self.cfg.table}"
            if skip_locked and self._presence is None:
                self._presence = Presence(self._engine, lock_name)
            if skip_locked and self._cleaner is None:
                self._cleaner = Cleaner(self.cfg.name, self._error)
            if skip_locked and self._ahead is None:
                self._ahead = ClaimAhead(self.cfg.name)
            self._claimer = Claimer(self._engine, self._queries, self.cfg, skip_locked, self._presence)
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
        # Topics follow the rows' aggregate types and the values' schemas belong to the application; dead
        # letters are JSON text, without a schema.
        return []

    def lease_key(self) -> str:
        # The table is a queue: whichever app drains it, one leader at a time (the lease adds the database).
        return f"liberator outbox {self.cfg.table}"

    def lease_required(self) -> bool:
        # Without SKIP LOCKED two publishers would claim the same rows: the lease is what `locking: leader`
        # (and SQLite's `auto`) is, so it is taken even with `ha.mode: off`.
        return self.cfg.locking == "leader" or self.cfg.url.startswith("sqlite")

    # -- reading ------------------------------------------------------------------------------------

    def read(self, start: OutboxPosition | None) -> Iterator[SourceItem]:
        self._open()
        if self._presence is not None:
            try:
                self._presence.register(self.context.stop)  # before the first claim
            except SQLAlchemyError as exc:
                raise self._error(exc) from None
        run = uuid.uuid4().hex[:12]
        number = 0
        stop = self.context.stop
        try:
            while not stop.is_set():
                self._raise_cleanup_failure()
                ahead = self._ahead is not None and self._ahead.pending  # counted when it was started
                if not ahead and self._held() >= self.cfg.max_in_flight:
                    yield from self._pause()  # Kafka's acknowledgement (served meanwhile) frees a claim
                    continue
                claimed = self._claim()
                if claimed is None:
                    yield from self._wait_for_work()
                    continue
                number += 1
                # A full claim: more is waiting, so the next claim starts now, if the window has room for it.
                if claimed.full and self._ahead is not None and self._held() + 2 <= self.cfg.max_in_flight:
                    self._ahead.start(functools.partial(self._claimer_claim, self._in_flight(claimed)))
                batch, failure = self._route(run, number, claimed)
                if batch is not None:
                    yield batch
                if failure is not None:
                    self._let_go_ahead()  # nothing after the bad row is published until it is fixed
                    # on_error: stop. Let Kafka acknowledge (and clean up) what came before the bad row.
                    while (self._awaiting or self._cleaning()) and not stop.is_set():
                        yield from self._pause()
                        self._raise_cleanup_failure()
                    raise failure
                if not claimed.full:
                    yield from self._wait_for_work()  # caught up: rest until there is new work
        except SQLAlchemyError as exc:
            raise self._error(exc) from None
        finally:
            self._let_go_ahead()  # never yielded: its rows go back to the table
            if not stop.is_set():
                # A failure or a retry: what Kafka has not acknowledged yet is let go (published again).
                # On shutdown the runtime still drains the producer and hears `delivered` before `close`.
                self._release_all()

    def _claim(self) -> Claim | None:
        self.phase = "polling"
        if self._ahead is not None and self._ahead.pending:
            return self._ahead.take()
        return self._claimer_claim(self._in_flight(None))

    def _claimer_claim(self, in_flight: InFlight) -> Claim | None:
        assert self._claimer is not None
        return self._claimer.claim(in_flight)

    def _in_flight(self, claimed: Claim | None) -> InFlight:
        """The ids of this daemon's rows that a claim's ordering check must count as ours: the batches
        awaiting Kafka, the cleanups not committed yet and (for a claim ahead) the claim being routed."""
        groups: list[Sequence[Any]] = [batch.ids for batch in self._awaiting]
        if self._cleaner is not None:
            groups += self._cleaner.pending()
        if claimed is None:
            return InFlight(tuple(groups))
        return InFlight(tuple(groups), claimed.rows, self.cfg.columns.id)

    def _held(self) -> int:
        """Claims holding a connection and their rows' locks: yielded batches and uncommitted cleanups."""
        return len(self._awaiting) + self._cleaning()

    def _let_go_ahead(self) -> None:
        if self._ahead is not None:
            self._ahead.let_go(self._release)

    def _route(self, run: str, number: int, claimed: Claim) -> tuple[ChangeBatch | None, FatalSourceError | None]:
        """The claimed rows' events as one batch (None if the first row is bad), and the on_error=stop error
        of a bad row: the batch then ends before it, and the rest of the claim is let go."""
        assert self._router is not None
        route = self._router.route
        id_column = self.cfg.columns.id
        ids: list[Any] = []
        events: list[BatchItem] = []
        failure: FatalSourceError | None = None
        for row in claimed.rows:
            mapping = row._mapping
            try:
                events.extend(route(cast(Mapping[str, Any], mapping), None))
            except FatalSourceError as exc:
                failure = exc
                break
            ids.append(mapping[id_column])
        if not ids:
            self._release(claimed.conn)
            return None, failure
        self.phase = "publishing"
        position = OutboxPosition(run, number, ids[-1])
        self._awaiting.append(_Batch(position, ids, claimed.conn))
        return ChangeBatch(events, position), failure

    def _pause(self) -> Iterator[Idle]:
        """One tick of `pacing.max_wait` (a few milliseconds while records are in flight), then IDLE: the
        runtime serves Kafka's acknowledgements (and so `delivered`) between two items."""
        self.context.stop.wait(self.context.pacing.max_wait)
        yield IDLE

    def _wait_for_work(self) -> Iterator[Idle]:
        """Rest `poll_interval`, or (with notify_channel) until a NOTIFY says a writer committed."""
        if self._notifier is None:
            yield from self.context.idle(self.cfg.poll_interval)
            return
        stop = self.context.stop
        pacing = self.context.pacing
        deadline = time.monotonic() + self.cfg.poll_interval
        while not stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0 or self._notifier.wait(min(pacing.max_wait, left)):
                return
            yield IDLE

    # -- acknowledgement and cleanup ------------------------------------------------------------------

    def delivered(self, position: OutboxPosition) -> None:
        # The table, not the stored position, says what is left: a batch can go as soon as Kafka has it,
        # so throughput does not wait for `offsets.flush_interval`. Called on the reading thread.
        awaiting = self._awaiting
        while awaiting and self._cleanup_failed is None and position.covers(awaiting[0].position):
            batch = awaiting[0]
            conn = batch.conn
            if conn is not None and self._cleaner is not None:
                # The claim's own transaction, which nothing else touches from now on: its worker commits it.
                commit = functools.partial(self._commit_cleanup, batch.ids, conn)
                self._cleaner.submit(batch.ids, commit, functools.partial(self._release, conn))
                awaiting.popleft()
                continue
            try:
                self._cleanup(batch)
            except SQLAlchemyError as exc:
                self._cleanup_failed = self._error(exc)  # the rows stay: published again after the retry
                return
            awaiting.popleft()

    def _commit_cleanup(self, ids: list[Any], conn: sa.Connection) -> None:
        """The cleanup of a claim's rows in the claim's own transaction (skip_locked), committed."""
        assert self._queries is not None
        for statement, params in self._queries.cleanup(ids):
            conn.execute(statement, params)
        conn.commit()
        self._release(conn)

    def _cleanup(self, batch: _Batch) -> None:
        assert self._queries is not None and self._engine is not None
        if batch.conn is not None:
            self._commit_cleanup(batch.ids, batch.conn)
            batch.conn = None
            return
        with self._engine.begin() as conn:
            for statement, params in self._queries.cleanup(batch.ids):
                conn.execute(statement, params)

    def _cleaning(self) -> int:
        """Batches whose cleanup the worker has not committed yet (each holds a connection)."""
        return 0 if self._cleaner is None else len(self._cleaner.pending())

    def _raise_cleanup_failure(self) -> None:
        failure, self._cleanup_failed = self._cleanup_failed, None
        if failure is None and self._cleaner is not None:
            failure = self._cleaner.failure()
        if failure is not None:
            raise failure

    def _release(self, conn: sa.Connection | None) -> None:
        """Let go of a claim: uncommitted, it rolls back, so its rows are published again later."""
        if conn is not None:
            try:
                conn.rollback()
                conn.close()
            except SQLAlchemyError:
                pass  # the session is gone; the server rolled it back

    def _release_all(self) -> None:
        while self._awaiting:
            self._release(self._awaiting.popleft().conn)

    def close(self) -> None:
        if self._awaiting:
            self.context.log.warning(
                "%d batches were not acknowledged before the source stopped; they will be published again",
                len(self._awaiting),
            )
        self._release_all()
        if self._ahead is not None:
            self._ahead.close(self._release)
            self._ahead = None
        if self._cleaner is not None:
            self._cleaner.close()  # every cleanup handed over commits (or fails) before the engine goes
            self._cleaner = None
        if self._presence is not None:
            self._presence.release()
            self._presence = None
        if self._notifier is not None:
            self._notifier.close()
            self._notifier = None
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
