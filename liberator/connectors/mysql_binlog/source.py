"""The MySQL / MariaDB binlog source (`type: mysql_binlog`): snapshot, then the row-based binlog."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import replace
from typing import Any, ClassVar

import pymysql  # type: ignore[import-untyped]

from liberator.capture import ChangeBatch
from liberator.capture.debezium import mark_snapshot_end
from liberator.connectors.mysql_binlog.backfill import BinlogBackfill
from liberator.connectors.mysql_binlog.blocking import BlockingSnapshot
from liberator.connectors.mysql_binlog.checks import (
    ServerInfo,
    classify,
    connect,
    connection_settings,
    current_point,
    position_problems,
    select_problems,
    server_info,
    setting_problems,
    transient,
)
from liberator.connectors.mysql_binlog.config import MySQLBinlogConfig
from liberator.connectors.mysql_binlog.guard import ServerIdGuard
from liberator.connectors.mysql_binlog.outbox import BinlogOutbox
from liberator.connectors.mysql_binlog.position import BinlogPosition, Coord, SnapshotState
from liberator.connectors.mysql_binlog.snapshot import read_snapshot
from liberator.connectors.mysql_binlog.stream import BinlogStreamer, open_reader
from liberator.connectors.mysql_binlog.tables import TableCatalog, list_tables, read_table_def, unmatched_problems
from liberator.envelope import Envelope
from liberator.errors import FatalSourceError, LiberatorError
from liberator.events import Checkpoint, SourceItem, Stream
from liberator.snapshots import new_table_backfills
from liberator.source import Source, SourceContext, lost_position


class MySQLBinlogSource(Source[MySQLBinlogConfig, BinlogPosition]):
    snapshots_on_demand: ClassVar[bool] = True
    table_moves: ClassVar[bool] = True
    config_model = MySQLBinlogConfig
    position_type = BinlogPosition

    def __init__(self, config: MySQLBinlogConfig, context: SourceContext) -> None:
        super().__init__(config, context)
        self.cfg = config
        self.phase = "starting"
        self.tables = TableCatalog(config, context.app_name, context.log, context.topic_moves)
        self._open: list[Any] = []
        self._guard = ServerIdGuard(config)

    def _connect(self) -> tuple[Any, ServerInfo]:
        conn = connect(self.cfg)
        self._open.append(conn)
        settings = connection_settings(self.cfg)
        self.tables.set_server(f"{settings['host']}:{settings['port']}")
        try:
            return conn, server_info(conn)
        except pymysql.MySQLError as exc:
            raise classify(exc, self.cfg) from None

    # -- checks and schemas -------------------------------------------------------------------------

    def lease_key(self) -> str:
        # The URL names a server, not a database (GET_LOCK is server-wide): the server_id says which reader.
        return f"{super().lease_key()} server_id {self.cfg.server_id}"

    def check(self) -> list[str]:
        try:
            conn, info = self._connect()
            problems = setting_problems(self.cfg, info) + unmatched_problems(conn, self.cfg)
            tables = list_tables(conn, self.cfg)
            problems += select_problems(conn, self.cfg, tables)
            problems += self._option_problems(conn, info)
            in_use = self._guard.problem(conn)
            problems += [in_use] if in_use is not None else []
            for database, name in tables:
                try:
                    table = read_table_def(conn, database, name, not info.mariadb)
                    if table is not None:
                        self.tables.table(table)
                except LiberatorError as exc:
                    problems.append(f"source {self.cfg.name}: {exc}")
            return problems
        except LiberatorError as exc:
            return [str(exc)]
        except pymysql.MySQLError as exc:
            return [str(classify(exc, self.cfg))]
        finally:
            self.close()

    def _option_problems(self, conn: Any, info: ServerInfo) -> list[str]:
        """What is wrong with the tables `signal_table` and `outbox` name (missing, or not an outbox's shape)."""
        signal = self.cfg.signal_table
        signal_db, signal_name = (None, "") if signal is None else signal.split(".", 1)
        if signal_db is not None and read_table_def(conn, signal_db, signal_name, not info.mariadb) is None:
            return [
                f"source {self.cfg.name}: the signal table {signal} does not exist; create it (CREATE TABLE "
                f"{signal} (id VARCHAR(64) PRIMARY KEY, type VARCHAR(32) NOT NULL, data TEXT)) or fix signal_table"
            ]
        outbox = self.cfg.outbox
        if outbox is None:
            return []
        database, name = outbox.table.split(".", 1)
        if read_table_def(conn, database, name, not info.mariadb) is None:
            return [
                f"source {self.cfg.name}: the outbox table {outbox.table} does not exist; create it "
                "(`liberator outbox ddl --dialect mysql` prints the default shape) or fix outbox.table"
            ]
        try:
            BinlogOutbox(self.cfg, self.context.registry)
        except LiberatorError as exc:
            return [str(exc)]
        return []

    def streams(self) -> list[Stream]:
        try:
            conn, info = self._connect()
            out = []
            for database, name in list_tables(conn, self.cfg):
                table = read_table_def(conn, database, name, not info.mariadb)
                if table is not None:
                    out.extend(self.tables.table(table).captured.streams())
            return out
        except pymysql.MySQLError as exc:
            raise classify(exc, self.cfg) from None
        finally:
            self.close()

    # -- reading ------------------------------------------------------------------------------------

    def read(self, start: BinlogPosition | None) -> Iterator[SourceItem]:
        cfg = self.cfg
        try:
            conn, info = self._connect()
            problems = setting_problems(cfg, info) + unmatched_problems(conn, cfg) + self._option_problems(conn, info)
            if start is not None and not start.snapshotting:
                problems += position_problems(cfg, info, start, conn)
            if problems:
                for problem in problems[1:]:
                    self.context.log.error("%s", problem)
                raise FatalSourceError(problems[0])
            self._guard.acquire(conn, self.leased)  # held by this connection while the source reads
            if start is None:
                self._check_first_run(conn)
            position = self._initial(conn, info) if start is None else start
            if start is None and not position.snapshotting:
                yield Checkpoint(position, durable=True)  # `snapshot: never`: the stream starts here, whatever happens
            if position.snapshotting:
                self.phase = "snapshot"
                self.context.log.info("snapshot of %d tables", len(position.snapshot.tables))  # type: ignore[union-attr]
                final: BinlogPosition | None = None
                items = read_snapshot(conn, info, position, self.tables, cfg.snapshot_chunk, self.context.stop)
                if cfg.envelope is Envelope.debezium:
                    items = mark_snapshot_end(items, self.context.stop.is_set)
                for item in items:
                    yield item
                    if isinstance(item, ChangeBatch | Checkpoint) and isinstance(item.position, BinlogPosition):
                        final = item.position
                if self.context.stop.is_set() or final is None or final.snapshotting:
                    return
                position = final
                self.context.log.info("snapshot done; streaming from %s", position.describe())
            if cfg.snapshot == "initial_only":
                self.phase = "done"
                return
            if start is not None and not start.snapshotting:
                position = self._backfill_new_tables(conn, position)
            yield from self._stream(conn, info, position)
        except pymysql.MySQLError as exc:
            raise transient(exc, cfg) from None

    def _check_first_run(self, conn: Any) -> None:
        """No stored position: refuse to start over silently when the topics show the source ran before.

        The binlog has no server-side slot to tell, so the evidence is the source's own output: a topic of a
        captured table that already holds a record (read with a consumer). `--from-scratch` skips this.
        """
        published = self.context.published
        if published is None or self.context.from_scratch:
            return
        topic = published([self.tables.topic_for(db, table) for db, table in list_tables(conn, self.cfg)])
        if topic is not None:
            start_over = "snapshot again" if self.cfg.snapshot != "never" else "stream from the binlog's end"
            raise lost_position(self.cfg.name, f"topic {topic} already holds records", start_over)

    def _initial(self, conn: Any, info: ServerInfo) -> BinlogPosition:
        if self.cfg.snapshot == "never":
            coord, gtid = current_point(conn, info)
            self.context.log.info("no stored position and snapshot: never; streaming from %s", coord)
            return BinlogPosition(coord, gtid)
        tables = tuple(f"{db}.{t}" for db, t in list_tables(conn, self.cfg))
        return BinlogPosition(Coord("", 0), None, snapshot=SnapshotState(tables, ()))

    def _backfill_new_tables(self, conn: Any, position: BinlogPosition) -> BinlogPosition:
        """Tables whose topics hold no record are read as a backfill between watermarks (new_table_backfills)."""
        if self.cfg.snapshot != "initial" or self.context.with_records is None:
            return position
        # A request already waiting (a table moved to a new topic) reads it: not twice.
        queued = self.context.snapshots.queued_tables()
        tables = [(db, t) for db, t in list_tables(conn, self.cfg) if f"{db}.{t}" not in queued]
        topics = {f"{db}.{t}": self.tables.topic_for(db, t) for db, t in tables}
        backfills = new_table_backfills(topics, position.backfills, self.context.with_records, self.context.log)
        return replace(position, backfills=backfills)

    def _stream(self, conn: Any, info: ServerInfo, position: BinlogPosition) -> Iterator[SourceItem]:
        cfg = self.cfg
        by_gtid = cfg.resume == "gtid" or (cfg.resume == "auto" and info.gtid_mode)
        if cfg.resume == "gtid" and not info.gtid_mode:
            raise FatalSourceError(
                f"source {cfg.name}: resume: gtid but the server runs with gtid_mode OFF; "
                "enable GTIDs or use resume: file"
            )
        if position.gtid is None or not str(position.gtid):
            by_gtid = False  # no GTID known yet (none written before the start point)
        self.phase = "streaming"
        self.context.log.info("streaming from %s by %s", position.describe(), "GTID" if by_gtid else "file/position")
        reader, waiter = open_reader(cfg, connection_settings(cfg), position, by_gtid, info.mariadb)
        self._open.append(reader)
        outbox = None if cfg.outbox is None else BinlogOutbox(cfg, self.context.registry)
        context = self.context
        captured = {f"{db}.{t}" for db, t in list_tables(conn, cfg)}
        backfill = BinlogBackfill(
            cfg, self.tables, conn, not info.mariadb, captured, context.snapshots, position.backfills, context.log
        )
        self._open.append(backfill)  # its workers' connections
        # A request queued before reading again (a table moved to a new topic) is taken, in a durable checkpoint,
        # between transactions before the first event is read (BinlogStreamer._between): before the new topic
        # gets anything.
        blocking = BlockingSnapshot(cfg, info, self.tables, backfill, context.stop, context.log)
        self._open.append(blocking)
        mysql = not info.mariadb
        streamer = BinlogStreamer(
            cfg, self.tables, conn, mysql, context.log, context.stop, context.pacing, outbox, backfill, blocking
        )
        yield from streamer.run(reader, position, waiter)

    def backlog_bytes(self, stored: BinlogPosition | None) -> int | None:
        """The binlog written after the stored position: the rest of its file and every later file."""
        if stored is None:
            return None
        conn = connect(self.cfg)
        try:
            with conn.cursor() as cur:
                cur.execute("SHOW BINARY LOGS")
                logs = [(str(row[0]), int(row[1])) for row in cur.fetchall()]
        finally:
            conn.close()
        return binlog_after(logs, stored.coord)

    def close(self) -> None:
        while self._open:
            resource = self._open.pop()
            with contextlib.suppress(Exception):  # a broken connection must not hide the real error
                resource.close()


def binlog_after(logs: list[tuple[str, int]], coord: Coord) -> int | None:
    """Bytes after `coord` in the server's binlog files (SHOW BINARY LOGS: name, size); None when its file is
    gone (purged: the source cannot resume there anyway, and says so when it tries)."""
    names = [name for name, _ in logs]
    if coord.file not in names:
        return None
    # Binlog names share one base and a zero-padded sequence number, so they sort in writing order.
    return sum(size - coord.pos if name == coord.file else size for name, size in logs if name >= coord.file)
