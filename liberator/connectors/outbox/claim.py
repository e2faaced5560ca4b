"""Claiming the next batch of outbox rows: which rows, under which locks, in which transaction."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from liberator.connectors.outbox.config import OutboxSourceConfig
from liberator.connectors.outbox.presence import Presence
from liberator.connectors.outbox.queries import OutboxQueries


@dataclass
class Claim:
    rows: list[sa.Row[Any]]
    conn: sa.Connection | None  # skip_locked: the open transaction locking the rows until the cleanup commits
    full: bool  # the batch came back full: more may be waiting


@dataclass(frozen=True)
class InFlight:
    """The ids of this daemon's rows in flight when a claim starts, as the lists they already are in (and
    the rows of a claim being routed): the set is built only when the claim needs it, for the ordering check
    or a leader's filter. Building it for every claim was a twentieth of the reading thread's time while a
    daemon alone never looks at it (py-spy, bench/outbox.py). The lists are not changed after they are made."""

    groups: tuple[Sequence[Any], ...] = ()
    rows: Sequence[sa.Row[Any]] = ()
    id_column: str = ""

    def __len__(self) -> int:
        return sum(map(len, self.groups)) + len(self.rows)

    def ids(self) -> set[Any]:
        ids = {i for group in self.groups for i in group}
        ids.update(row._mapping[self.id_column] for row in self.rows)
        return ids


class Claimer:
    """Rows of batches still in flight are never claimed again: other transactions' locks hide them
    (skip_locked), or they are filtered out (leader). `presence` (skip_locked) says whether other daemons
    claim from the table too, and so whether a claim needs its ordering check."""

    def __init__(
        self,
        engine: sa.Engine,
        queries: OutboxQueries,
        cfg: OutboxSourceConfig,
        skip_locked: bool,
        presence: Presence | None = None,
    ) -> None:
        self.engine = engine
        self.queries = queries
        self.cfg = cfg
        self.skip_locked = skip_locked
        self.presence = presence

    def claim(self, in_flight: InFlight) -> Claim | None:
        """The next rows to publish, or None when there are none; `in_flight` are the ids of our batches
        awaiting Kafka."""
        batch_size = self.cfg.batch_size
        if not self.skip_locked:
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                fetched = self._fetch(conn, self.queries.claim(batch_size + len(in_flight), False))
            ours = in_flight.ids()
            rows = [row for row in fetched if row._mapping[self.cfg.columns.id] not in ours][:batch_size]
            return Claim(rows, None, len(rows) == batch_size) if rows else None
        conn = self.engine.connect()  # on MySQL/MariaDB at READ COMMITTED (dialects.queue_isolation)
        try:
            rows = self._fetch(conn, self.queries.claim(batch_size, True))
            full = len(rows) == batch_size
            # Asked after the rows are locked: see liberator.connectors.outbox.presence for why that order is safe.
            if rows and (self.presence is None or self.presence.others()):
                rows = self._without_waiting_aggregates(conn, rows, in_flight)
        except BaseException:
            conn.close()
            raise
        if not rows:
            conn.rollback()
            conn.close()
            return None
        return Claim(rows, conn, full)

    def _fetch(self, conn: sa.Connection, claim: sa.Select[Any]) -> list[sa.Row[Any]]:
        if not self.queries.claims_ids_first:
            return list(conn.execute(claim).all())
        ids = [row[0] for row in conn.execute(claim)]
        if not ids:
            return []
        statement, params = self.queries.rows_by_id(ids)
        return list(conn.execute(statement, params).all())

    def _without_waiting_aggregates(
        self, conn: sa.Connection, rows: list[sa.Row[Any]], in_flight: InFlight
    ) -> list[sa.Row[Any]]:
        """Drop rows whose aggregate has an older row neither this claim nor our batches in flight hold
        (another daemon has it): publishing them now could overtake it. They stay locked by this claim
        and unpublished until a later round."""
        cols = self.cfg.columns
        mine = {row._mapping[cols.id] for row in rows} | in_flight.ids()
        waiting = {
            (older[1], older[2]) for older in conn.execute(self.queries.older_than(rows[-1])) if older[0] not in mine
        }
        if not waiting:
            return rows
        return [
            row for row in rows if (row._mapping[cols.aggregate_type], row._mapping[cols.aggregate_id]) not in waiting
        ]


class ClaimAhead:
    """The next claim, taken on a worker while the reading thread routes and publishes the current batch
    (skip_locked). Once the claim is the reading thread's only wait on the database, it ran in series with
    the routing; started ahead, the two overlap.

    Order stays as it was: the claim ahead starts after the current claim returned, whose rows its
    transaction still locks (SKIP LOCKED passes over them, as it passes over every batch in flight), and
    its ordering check counts the current batch among this daemon's rows in flight. At most one claim is
    ahead; only the reading thread starts, takes and lets go of it."""

    def __init__(self, name: str) -> None:
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"outbox-claim-{name}")
        self._ahead: Future[Claim | None] | None = None

    @property
    def pending(self) -> bool:
        return self._ahead is not None

    def start(self, claim: Callable[[], Claim | None]) -> None:
        assert self._ahead is None, "one claim ahead at a time"
        self._ahead = self._worker.submit(claim)

    def take(self) -> Claim | None:
        """The claim started ahead (waiting for it to return): its rows, or None if it found none. Raises
        what the claim raised."""
        ahead, self._ahead = self._ahead, None
        assert ahead is not None, "no claim was started ahead"
        return ahead.result()

    def let_go(self, release: Callable[[sa.Connection | None], None]) -> None:
        """Roll back the claim started ahead, if any (its rows were never yielded: published later)."""
        if self._ahead is None:
            return
        try:
            claimed = self.take()
        except SQLAlchemyError:
            return  # the claim failed and closed its connection itself
        if claimed is not None:
            release(claimed.conn)

    def close(self, release: Callable[[sa.Connection | None], None]) -> None:
        self.let_go(release)
        self._worker.shutdown(wait=True)
