"""The query source's signal table: Debezium's columns `id, type, data`, read on each poll.

Polling sees rows, not inserts, so the position remembers the ids of the rows already taken; an id that is no
longer in the table is forgotten (the set stays as small as the table). A row with a new id becomes snapshot
requests (liberator.snapshots.signal_requests) on the source's desk, taken by the backfills right after, and
the position that records the id also carries their backfills: a restart neither loses nor repeats a signal.
The daemon only reads the table (SELECT); rows may be deleted by whoever manages it.
"""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from liberator.connectors.query.position import QueryPosition
from liberator.errors import FatalSourceError
from liberator.snapshots import SnapshotDesk, signal_requests


class SignalTable:
    def __init__(self, name: str, source: str, desk: SnapshotDesk, log: logging.Logger) -> None:
        schema, _, table = name.rpartition(".")
        self.name = name
        self.source = source
        self.table = sa.table(table, sa.column("id"), sa.column("type"), sa.column("data"), schema=schema or None)
        self.desk = desk
        self.log = log

    def problem(self, conn: sa.Connection) -> str | None:
        """For `liberator check`: why the table cannot be read, if it cannot."""
        try:
            self._rows(conn)
        except FatalSourceError as exc:
            return str(exc)
        return None

    def poll(self, conn: sa.Connection, position: QueryPosition) -> QueryPosition:
        """Submit the requests of rows not taken yet; the position with the ids the table holds now."""
        rows = self._rows(conn)
        taken = set(position.signals)
        present = []
        for signal_id, kind, data in rows:
            signal_id = str(signal_id)
            present.append(signal_id)
            if signal_id in taken:
                continue
            try:
                requests = signal_requests(signal_id, str(kind), None if data is None else str(data))
            except ValueError as exc:
                self.log.warning("%s; ignored", exc)
                continue
            for request in requests:
                self.desk.submit(request)
                self.log.info("signal %s: snapshot of %s requested", request.id, ", ".join(request.tables))
        signals = tuple(sorted(present))
        return position if signals == position.signals else position.with_signals(signals)

    def _rows(self, conn: sa.Connection) -> list[tuple[Any, ...]]:
        try:
            return [tuple(r) for r in conn.execute(sa.select(self.table.c.id, self.table.c.type, self.table.c.data))]
        except DBAPIError as exc:
            if exc.connection_invalidated:
                raise  # a lost connection: retried like any other poll
            reason = str(exc.orig).splitlines()[0]
            raise FatalSourceError(
                f"source {self.source}: cannot read signal table {self.name} ({reason}); create it: CREATE TABLE "
                f"{self.name} (id varchar(64) PRIMARY KEY, type varchar(32) NOT NULL, data text), or grant SELECT "
                "on it (docs/snapshots.md)"
            ) from None
