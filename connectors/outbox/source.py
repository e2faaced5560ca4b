"""The outbox-table source: publish what the application wrote into its outbox, then clean it up.

The table is a queue. Each round claims the oldest unpublished rows (a batch), publishes them, waits
until Kafka has acknowledged them (the runtime's `acknowledged()` hook), then deletes or marks them.
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

from connectors.outbox.config import OutboxSourceConfig
from connectors.outbox.locks import LeaderLock
from connectors.outbox.notify import Notifier
from connectors.outbox.position import OutboxPosition
from connectors.outbox.queries import OutboxQueries
from liberator import sqldb
from liberator.errors import ConfigError, FatalSourceError, LiberatorError, TransientSourceError
from liberator.events import Checkpoint, SourceItem, Stream
from liberator.outbox import OutboxRouter
from liberator.positions import Position
from liberator.source import Source, SourceConfig, SourceContext

# After shutdown, how long a claimed batch waits for Kafka's acknowledgement before it is let go (the
# runtime flushes the producer for up to 30 s first).
FINISH_TIMEOUT = 45.0
# While waiting for an acknowledgement, hand the runtime a checkpoint this often so it can notice a
# failed delivery or a stop request.
_TICK = 1.0
_RETRYABLE = ("deadlock", "lock wait timeout", "could not serialize", "(1205,", "(1213,", "database is locked")


@dataclass
class _Batch:
    position: OutboxPosition
    ids: list[Any]
    conn: sa.Connection | None  # the open transaction holding the rows' locks (skip_locked)
    complete: bool = False  # its checkpoint was yielded: an acknowledgement will follow


class OutboxSource(Source):
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
        self._skip_locked = False
        self._leader: LeaderLock | None = None
        self._notifier: Notifier | None = None
        self._pending: _Batch | None = None
        self._acked: OutboxPosition | None = None
        self._ack_event = threading.Event()
        self._lock = threading.Lock()  # guards _acked, _pending and _closed between the reading and committer threads
        self._closed = False
        self._finisher: threading.Timer | None = None

    # -- set-up -------------------------------------------------------------------------------------

    def _error(self, exc: Exception) -> LiberatorError:
        text = str(getattr(exc, "orig", None) or exc).lower()
        if any(marker in text for marker in _RETRYABLE):
            return TransientSourceError(f"source {self.cfg.name}: {text.splitlines()[0]}; retrying")
        error = sqldb.classify(exc, self.cfg.url, f"source {self.cfg.name}")
        if isinstance(error, FatalSourceError) and ("exist" in text or "unknown column" in text or "no such" in text):
            return FatalSourceError(
                f"{error}; create the outbox table (`liberator outbox ddl --dialect ...`) or fix `table`/`columns`"
            )
        if isinstance(error, FatalSourceError) and ("permission denied" in text or "command denied" in text):
            return FatalSourceError(
                f"{error}; grant the user SELECT, UPDATE{', DELETE' if self.cfg.cleanup == 'delete' else ''} "
                f"on {self.cfg.table}"
            )
        return error

    def _open(self) -> None:
        with self._lock:
            self._closed = False
        if self._engine is None:
            self._engine = sqldb.create_engine(self.cfg.url)
        if self._router is None:
            self._router = OutboxRouter(self.cfg, self.cfg.name, self.context.registry)
        try:
            with self._engine.connect() as conn:
                self._skip_locked = self._use_skip_locked(conn)
            dialect = self._engine.dialect.name
            self._queries = OutboxQueries(self.cfg, dialect)
            if not self._skip_locked and self._leader is None:
                database = self._engine.url.database or ""
                self._leader = LeaderLock(
                    self._engine, f"liberator-outbox.{database.rsplit('/', 1)[-1]}.{self.cfg.table}"
                )
            if self.cfg.notify_channel is not None and self._notifier is None:
                self._notifier = Notifier(self._engine.url, self.cfg.notify_channel)
        except SQLAlchemyError as exc:
            raise self._error(exc) from None

    def _use_skip_locked(self, conn: sa.Connection) -> bool:
        dialect = conn.dialect
        version = tuple(getattr(dialect, "server_version_info", None) or ())
        if dialect.name == "postgresql":
            supported, what = True, ""
        elif dialect.name in ("mysql", "mariadb"):
            mariadb = bool(getattr(dialect, "is_mariadb", False))
            supported = version >= ((10, 6) if mariadb else (8, 0, 1))
            what = "MariaDB 10.6+" if mariadb else "MySQL 8.0.1+"
        else:
            supported, what = False, "PostgreSQL, MySQL 8 or MariaDB 10.6+"
        if self.cfg.locking == "skip_locked" and not supported:
            raise ConfigError(
                f"source {self.cfg.name}: locking: skip_locked needs {what} (SELECT ... FOR UPDATE SKIP LOCKED); "
                "use locking: leader or auto"
            )
        return supported and self.cfg.locking != "leader"

    def check(self) -> list[str]:
        try:
            self._open()
            assert self._engine is not None and self._queries is not None
            with self._engine.connect() as conn:
                # The claim and the cleanup, run and rolled back: checks the table, the columns and the
                # privileges (FOR UPDATE needs UPDATE rights) in one go.
                conn.execute(self._queries.claim(1, self._skip_locked)).all()
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
                if self._leader is not None and not self._lead():
                    continue
                claimed = self._claim()
                if claimed is None:
                    self._wait_for_work()
                    continue
                conn, rows, full = claimed
                number += 1
                acked = yield from self._publish(run, number, conn, rows)
                if not acked:
                    return
                if not full:
                    self._wait_for_work()
        except SQLAlchemyError as exc:
            raise self._error(exc) from None
        finally:
            with self._lock:
                batch = self._pending
                keep = batch is not None and batch.complete and stop.is_set()
            if batch is not None and not keep:
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

    def _claim(self) -> tuple[sa.Connection | None, list[sa.Row[Any]], bool] | None:
        """The next rows to publish, the open transaction locking them (skip_locked), and whether the
        batch came back full (more may be waiting)."""
        assert self._engine is not None and self._queries is not None
        self.phase = "polling"
        if not self._skip_locked:
            with self._engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                rows = list(conn.execute(self._queries.claim(self.cfg.batch_size, False)).all())
            return (None, rows, len(rows) == self.cfg.batch_size) if rows else None
        conn = self._engine.connect()
        try:
            if conn.dialect.name in ("mysql", "mariadb"):
                # REPEATABLE READ would take gap locks and block the application's inserts meanwhile.
                conn = conn.execution_options(isolation_level="READ COMMITTED")
            rows = list(conn.execute(self._queries.claim(self.cfg.batch_size, True)).all())
            full = len(rows) == self.cfg.batch_size
            if rows:
                rows = self._without_waiting_aggregates(conn, rows)
        except BaseException:
            conn.close()
            raise
        if not rows:
            conn.rollback()
            conn.close()
            return None
        return conn, rows, full

    def _without_waiting_aggregates(self, conn: sa.Connection, rows: list[sa.Row[Any]]) -> list[sa.Row[Any]]:
        """Drop rows whose aggregate has an older row this claim did not get (another daemon holds it):
        publishing them now could overtake it. They stay locked by us and unpublished until next time."""
        assert self._queries is not None
        cols = self.cfg.columns
        mine = {row._mapping[cols.id] for row in rows}
        waiting = {
            (older[1], older[2]) for older in conn.execute(self._queries.older_than(rows[-1])) if older[0] not in mine
        }
        if not waiting:
            return rows
        return [
            row for row in rows if (row._mapping[cols.aggregate_type], row._mapping[cols.aggregate_id]) not in waiting
        ]

    def _publish(
        self, run: str, number: int, conn: sa.Connection | None, rows: list[sa.Row[Any]]
    ) -> Generator[SourceItem, None, bool]:
        """Yield a batch's events and its checkpoint, wait for Kafka, clean up. False: stopped meanwhile."""
        assert self._router is not None
        batch = _Batch(OutboxPosition(run, number), [], conn)
        with self._lock:
            self._pending = batch
        self.phase = "publishing"
        id_column = self.cfg.columns.id
        failure: FatalSourceError | None = None
        for row in rows:
            mapping = row._mapping
            try:
                events = self._router.route(cast(Mapping[str, Any], mapping), None)
            except FatalSourceError as exc:
                # on_invalid: stop. Finish the rows before it, so the stop is exactly at the bad row.
                failure = exc
                break
            batch.ids.append(mapping[id_column])
            yield from events
        if batch.ids:
            with self._lock:
                batch.position = dataclasses.replace(batch.position, last_id=batch.ids[-1])
                batch.complete = True
            yield Checkpoint(batch.position)
            acked = yield from self._await_ack(batch)
            if not acked:
                return False
            self._cleanup(batch)
        self._release(batch)
        if failure is not None:
            raise failure
        return True

    def _await_ack(self, batch: _Batch) -> Generator[SourceItem, None, bool]:
        stop = self.context.stop
        last_tick = time.monotonic()
        while True:
            with self._lock:
                acked = self._acked
            if acked is not None and acked.covers(batch.position):
                return True
            if stop.is_set():
                return False
            self._ack_event.wait(0.05)
            self._ack_event.clear()
            if time.monotonic() - last_tick >= _TICK:
                last_tick = time.monotonic()
                yield Checkpoint(batch.position)

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
            if self._pending is batch:
                self._pending = None
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

    def acknowledged(self, position: Position) -> None:
        if not isinstance(position, OutboxPosition):
            return
        with self._lock:
            self._acked = position
            batch = self._pending
            finish = self._closed and batch is not None and batch.complete and position.covers(batch.position)
        self._ack_event.set()
        if finish and batch is not None:
            # The reading thread is gone (shutdown): clean up here, it is the last thing this source does.
            try:
                self._cleanup(batch)
                self.context.log.info("cleaned up the last batch after shutdown")
            except SQLAlchemyError as exc:
                self.context.log.warning("could not clean up the last batch (%s); it will be published again", exc)
            self._teardown()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            batch = self._pending
            waiting = batch is not None and batch.complete and self.context.stop.is_set()
        if waiting:
            # Kafka may still acknowledge the batch while the daemon flushes: `acknowledged` cleans it up
            # then; if it never does, the rows are let go and published again by the next run.
            self._finisher = threading.Timer(FINISH_TIMEOUT, self._abandon)
            self._finisher.daemon = True
            self._finisher.start()
            return
        self._teardown()

    def _abandon(self) -> None:
        if self._pending is not None:
            self.context.log.warning("the last batch was not acknowledged before shutdown; it will be published again")
        self._teardown()

    def _teardown(self) -> None:
        if self._finisher is not None and self._finisher is not threading.current_thread():
            self._finisher.cancel()
        self._finisher = None
        with self._lock:
            batch = self._pending
        if batch is not None:
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
