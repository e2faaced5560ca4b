"""`type: postgres_wal`: committed changes from PostgreSQL logical replication (pgoutput), after a snapshot.

The read loop: set up (checks, publication, slot), snapshot the tables that still need it, then stream.
Events inside a transaction carry no position; the transaction's Commit yields a Checkpoint at its end
LSN, and a keepalive between transactions yields one at the server's LSN, so an idle slot still advances
once Kafka acknowledged everything before it (`acknowledged` -> the standby status update).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Generator, Iterator
from typing import Any, ClassVar

import psycopg

from liberator.connectors.postgres_wal import checks
from liberator.connectors.postgres_wal.backfill import WalBackfill
from liberator.connectors.postgres_wal.blocking import BlockingSnapshot
from liberator.connectors.postgres_wal.config import PostgresWalConfig
from liberator.connectors.postgres_wal.connection import application_name, classify, connect
from liberator.connectors.postgres_wal.newtables import NewTables
from liberator.connectors.postgres_wal.outbox import WalOutbox
from liberator.connectors.postgres_wal.position import WalPosition, lsn_text, parse_lsn
from liberator.connectors.postgres_wal.snapshot import SnapshotReader, create_slot
from liberator.connectors.postgres_wal.stream import ReplicationStream
from liberator.connectors.postgres_wal.streaming import ChangeDecoder
from liberator.connectors.postgres_wal.tables import TableCatalog
from liberator.errors import FatalSourceError, TransientSourceError
from liberator.events import Checkpoint, SourceItem, Stream
from liberator.positions import Position
from liberator.snapshots import initial_backfills, new_table_backfills
from liberator.source import Source, SourceConfig, SourceContext, lost_position

HEARTBEAT_PREFIX = "liberator.heartbeat"
# How long an active slot may take to be released before it counts as held by another daemon: a killed
# daemon's walsender ends as soon as the server notices the closed connection.
SLOT_RELEASE_WAIT = 5.0


class AckedLsn:
    """The newest LSN the daemon stored, which is all the server may forget (heard on the reading thread)."""

    def __init__(self) -> None:
        self.value = 0

    def raise_to(self, lsn: int) -> None:
        self.value = max(self.value, lsn)


class PostgresWalSource(Source[PostgresWalConfig, WalPosition]):
    snapshots_on_demand: ClassVar[bool] = True
    table_moves: ClassVar[bool] = True
    config_model: ClassVar[type[SourceConfig]] = PostgresWalConfig
    position_type: ClassVar[type[Position]] = WalPosition

    def __init__(self, config: PostgresWalConfig, context: SourceContext) -> None:
        super().__init__(config, context)
        self.cfg = config
        self.what = f"source {config.name}"
        self.acked = AckedLsn()
        self.phase = "starting"
        self._conn: psycopg.Connection[Any] | None = None

    # -- contract -------------------------------------------------------------------------------------

    def _catalog(self) -> TableCatalog:
        self.close()
        self._conn = connect(self.cfg.url, self.cfg, what=self.what)
        server = f"{self._conn.info.host}:{self._conn.info.port}"
        return TableCatalog(self._conn, self.cfg, self.context.app_name, server, self.context.topic_moves)

    def check(self) -> list[str]:
        try:
            catalog = self._catalog()
            return checks.problems(catalog.conn, self.cfg, catalog, self.context.log)
        except FatalSourceError as exc:
            return [str(exc)]
        except Exception as exc:  # an unreachable server is a problem to report, not a crash
            return [str(classify(exc, self.cfg.url, self.what, self.cfg))]
        finally:
            self.close()

    def streams(self) -> list[Stream]:
        try:
            catalog = self._catalog()
            return [s for name in catalog.resolve() for s in catalog.from_catalog(name).captured.streams()]
        finally:
            self.close()

    def acknowledged(self, position: WalPosition) -> None:
        self.acked.raise_to(position.lsn)

    def backlog_bytes(self, stored: WalPosition | None) -> int | None:
        """The WAL the slot holds for us: from its confirmed flush LSN to the server's current one."""
        with connect(self.cfg.url, self.cfg, what=self.what) as conn:
            row = conn.execute(
                "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint "
                "FROM pg_replication_slots WHERE slot_name = %s",
                (self.cfg.slot,),
            ).fetchone()
        return None if row is None or row[0] is None else max(0, int(row[0]))

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
            self._conn = None

    # -- reading --------------------------------------------------------------------------------------

    def read(self, start: WalPosition | None) -> Iterator[SourceItem]:
        try:
            yield from self._read(start)
        except psycopg.Error as exc:
            raise classify(exc, self.cfg.url, self.what, self.cfg) from None

    def _read(self, start: WalPosition | None) -> Iterator[SourceItem]:
        cfg = self.cfg
        catalog = self._catalog()
        conn = catalog.conn
        found = checks.problems(conn, cfg, catalog, self.context.log)
        if found:
            raise FatalSourceError(found[0])
        tables = catalog.resolve()
        reader = SnapshotReader(cfg, catalog, self.what, self.context.stop)
        if cfg.snapshot == "initial_only":
            yield from self._initial_only(start, tables, reader, conn)
            return
        published = list(tables)
        outbox = None
        if cfg.outbox is not None:
            outbox = WalOutbox(cfg, catalog.types, self.context.registry)
            if outbox.table is not None:
                catalog.catalog_columns(outbox.table)  # SchemaError when it does not exist
                published += [outbox.table] if outbox.table not in published else []
        if cfg.signal_table is not None:
            signal = cfg.signal_table
            catalog.catalog_columns(signal)  # SchemaError when it does not exist
            published += [signal] if signal not in published else []
        checks.ensure_publication(conn, cfg, published)
        slot = checks.slot_state(conn, cfg.slot)
        if slot is not None and slot.active_pid is not None:
            slot = self._wait_for_release(conn, slot)
        if start is None and slot is not None:
            slot = self._slot_without_position(conn, slot, catalog, tables)
        position = start
        if slot is not None and slot.confirmed_flush is not None:
            self.acked.raise_to(slot.confirmed_flush)
        if position is None:
            wants_snapshot = cfg.snapshot == "initial"
            if slot is None:
                position = yield from self._create_slot(tables, reader, wants_snapshot)
            else:  # an operator's slot (`create: false`)
                assert slot.confirmed_flush is not None
                position = WalPosition(slot.confirmed_flush, (), snapshot_done=not wants_snapshot)
                position = self._incremental(position, tables)
                yield Checkpoint(position, durable=True)
        elif slot is None:
            raise FatalSourceError(
                f"{self.what}: replication slot {cfg.slot} is gone, so changes after {lsn_text(position.lsn)} may be "
                f"lost; run `liberator offsets reset CONFIG --source {cfg.name}` to snapshot again"
            )
        elif slot.confirmed_flush is not None and slot.confirmed_flush > position.lsn:
            raise FatalSourceError(
                f"{self.what}: slot {cfg.slot} is at {lsn_text(slot.confirmed_flush)}, past the stored position "
                f"{lsn_text(position.lsn)} (offsets restored from an older copy?); changes in between are gone; "
                f"run `liberator offsets reset CONFIG --source {cfg.name}`, then `liberator run CONFIG --from-scratch` "
                "to snapshot again"
            )
        if self.context.stop.is_set():
            return
        position = self._incremental(position, tables)  # a consistent snapshot cut short: the rest in chunks
        if not position.snapshot_done:
            position = yield from self._resume_snapshot(position, tables, reader)
            if self.context.stop.is_set():
                return
            position = WalPosition(position.lsn, position.tables, snapshot_done=True)
            self.context.log.info("snapshot done; streaming from %s", lsn_text(position.lsn))
            yield Checkpoint(position)
        elif start is not None:
            position = self._backfill_new_tables(position, catalog, tables)
        self.phase = "streaming"
        yield from self._stream(position, catalog, tables, outbox, reader)

    def _create_slot(
        self, tables: list[str], reader: SnapshotReader, wants_snapshot: bool
    ) -> Generator[SourceItem, None, WalPosition]:
        """Create the slot, store its point at once, and read the snapshot it exports (if wanted)."""
        cfg = self.cfg
        repl = connect(cfg.url, cfg, replication=True, what=self.what)
        try:
            consistent = wants_snapshot and cfg.snapshot_mode == "consistent"
            point, snapshot_name = create_slot(repl, cfg.slot, export=consistent)
            self.acked.raise_to(point)
            self.context.log.info("created replication slot %s at %s", cfg.slot, lsn_text(point))
            position = WalPosition(point, (), snapshot_done=not wants_snapshot)
            if wants_snapshot:
                position = self._incremental(position, tables)
            # Stored before the first event: a crash from now on resumes the stream at the slot's point,
            # with every change since (and the incremental snapshot's backfills), instead of finding a slot
            # and no position.
            yield Checkpoint(position, durable=True)
            if consistent:
                self.phase = "snapshot"
                for item in reader.read(snapshot_name, tables, point, position):
                    if isinstance(item, Checkpoint):
                        assert isinstance(item.position, WalPosition)
                        position = item.position
                    yield item
        finally:
            repl.close()
        return position

    def _incremental(self, position: WalPosition, tables: list[str]) -> WalPosition:
        """`snapshot_mode: incremental`: the tables the snapshot has not read become backfills, read in chunks
        between watermarks while streaming from the position (docs/snapshots.md); the position as it is
        otherwise. Tables a consistent snapshot finished before keep their points (WalPosition.skip_before)."""
        if self.cfg.snapshot_mode != "incremental" or position.snapshot_done:
            return position
        done = {name for name, _point in position.tables} | {b.stream for b in position.backfills}
        added = initial_backfills([name for name in tables if name not in done], self.context.log)
        return WalPosition(position.lsn, position.tables, True, (*position.backfills, *added))

    def _wait_for_release(self, conn: psycopg.Connection[Any], slot: checks.SlotState) -> checks.SlotState | None:
        """An active slot: wait briefly for a session that is ending; another daemon's is an error.

        Two daemons cannot stream one slot; without the HA lease the newcomer says who holds it rather than
        treating the slot's newer position as a stale offsets store. With the lease, the holder lost it.
        """
        cfg = self.cfg
        deadline = time.monotonic() + SLOT_RELEASE_WAIT
        current: checks.SlotState | None = slot
        while current is not None and current.active_pid is not None:
            application, holder = checks.slot_holder(conn, current.active_pid)
            if application == application_name():
                raise TransientSourceError(
                    f"{self.what}: slot {cfg.slot} is still held by this daemon's previous session ({holder}), "
                    "which is ending"
                )
            if time.monotonic() > deadline and self.leased:
                raise TransientSourceError(
                    f"{self.what}: replication slot {cfg.slot} is still streamed by {holder}, although this daemon "
                    "holds the source's lease: that daemon lost the lease and stops; its walsender ends by "
                    "wal_sender_timeout at the latest"
                )
            if time.monotonic() > deadline:
                raise FatalSourceError(
                    f"{self.what}: replication slot {cfg.slot} is in use by another daemon ({holder}); two daemons "
                    "cannot stream one slot: stop the other one (SELECT pid, application_name, client_addr FROM "
                    f"pg_stat_replication; finds it) or give this source its own `slot:`"
                )
            if self.context.stop.wait(0.2):
                return current
            current = checks.slot_state(conn, cfg.slot)
        return current

    def _slot_without_position(
        self, conn: psycopg.Connection[Any], slot: checks.SlotState, catalog: TableCatalog, tables: list[str]
    ) -> checks.SlotState | None:
        """No stored position but a slot: lost offsets, unless it is the operator's slot on a first run."""
        cfg = self.cfg
        start_over = "snapshot again" if cfg.snapshot == "initial" else "stream from a new slot"
        if cfg.create:
            # The start point is stored right after the slot is created: a slot without one means lost offsets.
            if not self.context.from_scratch:
                raise lost_position(cfg.name, f"replication slot {cfg.slot} exists", f"drop the slot and {start_over}")
            conn.execute("SELECT pg_drop_replication_slot(%s)", (cfg.slot,))
            self.context.log.info("dropped replication slot %s (--from-scratch); creating it again", cfg.slot)
            return None
        # `create: false`: the operator made the slot, so only the topics can tell a first run from a lost store.
        published = self.context.published
        if published is not None and not self.context.from_scratch:
            topics = [s.topic for name in tables for s in catalog.from_catalog(name).captured.streams()]
            topic = published(topics)
            if topic is not None:
                raise lost_position(cfg.name, f"topic {topic} already holds records", "snapshot again")
        return slot

    def _resume_snapshot(
        self, position: WalPosition, tables: list[str], reader: SnapshotReader
    ) -> Generator[SourceItem, None, WalPosition]:
        """Read the tables the snapshot has not finished, in a new snapshot from a temporary slot.

        The exported snapshot of the slot died with its connection; a temporary slot gives a new one with
        its exact consistent point P. Streamed changes to these tables that committed before P are in the
        read and are skipped (WalPosition.skip_before), so nothing is lost or applied twice out of order.
        """
        done = {name for name, _point in position.tables}
        remaining = [t for t in tables if t not in done]
        if not remaining:
            return position
        self.phase = "snapshot"
        repl = connect(self.cfg.url, self.cfg, replication=True, what=self.what)
        try:
            temp = f"{self.cfg.slot}_snap_{os.getpid()}"[:63]
            point, snapshot_name = create_slot(repl, temp, export=True, temporary=True)
            self.context.log.info("reading %d table(s) at %s", len(remaining), lsn_text(point))
            for item in reader.read(snapshot_name, remaining, point, position):
                if isinstance(item, Checkpoint):
                    assert isinstance(item.position, WalPosition)
                    position = item.position
                yield item
        finally:
            repl.close()
        return position

    def _initial_only(
        self, start: WalPosition | None, tables: list[str], reader: SnapshotReader, conn: psycopg.Connection[Any]
    ) -> Iterator[SourceItem]:
        """`snapshot: initial_only`: one consistent read of every table, then the source is finished."""
        if start is not None and start.snapshot_done:
            return
        row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
        assert row is not None
        position = start or WalPosition(parse_lsn(row[0]), (), snapshot_done=False)
        done = {name for name, _point in position.tables}
        self.phase = "snapshot"
        for item in reader.read(None, [t for t in tables if t not in done], position.lsn, position):
            if isinstance(item, Checkpoint):
                assert isinstance(item.position, WalPosition)
                position = item.position
            yield item
        if not self.context.stop.is_set():
            yield Checkpoint(WalPosition(position.lsn, position.tables, snapshot_done=True))

    def _backfill_new_tables(self, position: WalPosition, catalog: TableCatalog, tables: list[str]) -> WalPosition:
        """Tables whose topics hold no record are read as a backfill between watermarks (new_table_backfills)."""
        if self.cfg.snapshot != "initial" or self.context.with_records is None:
            return position
        # A request already waiting (a table moved to a new topic) reads it: not twice.
        queued = {t if "." in t else f"public.{t}" for t in self.context.snapshots.queued_tables()}
        topics = {name: catalog.from_catalog(name).captured.stream.topic for name in tables if name not in queued}
        backfills = new_table_backfills(topics, position.backfills, self.context.with_records, self.context.log)
        return WalPosition(position.lsn, position.tables, position.snapshot_done, backfills)

    def _stream(
        self,
        position: WalPosition,
        catalog: TableCatalog,
        tables: list[str],
        outbox: WalOutbox | None,
        reader: SnapshotReader,
    ) -> Iterator[SourceItem]:
        cfg = self.cfg
        stream = ReplicationStream(cfg, position.lsn, self.what, lambda: self.acked.value)
        log = self.context.log
        captured = set(tables)  # one set: a table created while streaming is added for all of them
        backfill = WalBackfill(cfg, catalog, captured, self.context.snapshots, position.backfills, self.what, log)
        decoder = ChangeDecoder(cfg, catalog, captured, position, log, outbox, backfill)
        blocking = BlockingSnapshot(cfg, catalog.conn, reader, backfill, self.what, log)
        new_tables = NewTables(cfg, catalog, captured, backfill, decoder, log)
        heartbeat_at = time.monotonic() + (cfg.heartbeat or 0)
        if backfill.intake():  # a request made before reading again (a table moved to a new topic) goes first
            yield Checkpoint(decoder.resume_here(), durable=True)
        stream.open()
        try:
            for frame in stream.frames(self.context.stop, self.context.pacing):
                if blocking.guard is not None:  # a blocking snapshot under way: at its point the stream pauses
                    yield from blocking.before(frame, decoder, stream)
                    if self.context.stop.is_set():
                        return
                yield from decoder.frame(frame)
                if cfg.heartbeat and time.monotonic() >= heartbeat_at:
                    heartbeat_at = time.monotonic() + cfg.heartbeat
                    catalog.conn.execute("SELECT pg_logical_emit_message(false, %s, '')", (HEARTBEAT_PREFIX,))
                if decoder.between_batches():  # snapshots on demand: requests taken, the next chunk read
                    taken = backfill.intake()
                    if new_tables.look() or taken:
                        yield Checkpoint(decoder.resume_here(), durable=True)  # a request survives a crash
                    blocking.prepare()
                    backfill.next_chunk()
        finally:
            blocking.close()
            backfill.close()
            stream.close()
