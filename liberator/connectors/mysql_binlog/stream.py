"""Streaming the binlog: the rows events of captured tables -> row changes, in batches, transaction by transaction.

A transaction's changes are one batch, with the position after the transaction (its XID, COMMIT, or DDL
statement): the binlog can only be resumed at transaction ends. A large transaction goes out in batches of at
most `MAX_BATCH` changes, all but the last without a position, so memory stays bounded whatever its size. The
core eventifies the changes (keys, envelopes, tombstones, key-change splits, transaction order).

mysql-replication reads the stream with blocking socket reads; between transactions the streamer first asks
whether an event is there to read (`_StreamWaiter`) and yields IDLE while none comes, so the runtime serves
Kafka's acknowledgements while the server is quiet.
"""

from __future__ import annotations

import logging
import re
import select
import ssl
import threading
import time
from collections.abc import Generator, Iterator
from dataclasses import replace
from typing import Any

import pymysql  # type: ignore[import-untyped]
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.event import (
    GtidEvent,
    HeartbeatLogEvent,
    MariadbGtidEvent,
    QueryEvent,
    RotateEvent,
    XidEvent,
)
from pymysqlreplication.row_event import DeleteRowsEvent, TableMapEvent, UpdateRowsEvent, WriteRowsEvent

from liberator.capture import BatchItem, ChangeBatch, Op, RowChange, Txn, truncate_changes
from liberator.connectors.mysql_binlog.backfill import BinlogBackfill
from liberator.connectors.mysql_binlog.blocking import BlockingSnapshot
from liberator.connectors.mysql_binlog.checks import quote
from liberator.connectors.mysql_binlog.config import MySQLBinlogConfig
from liberator.connectors.mysql_binlog.guard import reader_identity
from liberator.connectors.mysql_binlog.history import SchemaHistory, TableDef
from liberator.connectors.mysql_binlog.outbox import BinlogOutbox
from liberator.connectors.mysql_binlog.position import BinlogPosition, Coord, GtidState, SnapshotState
from liberator.connectors.mysql_binlog.rows import RowsReader
from liberator.connectors.mysql_binlog.tables import BinlogTable, TableCatalog, read_table_def
from liberator.connectors.mysql_binlog.types import specs_from_table_map
from liberator.dbconnect import mysql_connect, seconds
from liberator.errors import TransientSourceError
from liberator.events import IDLE, Checkpoint, SourceItem
from liberator.resnapshot import publish_covered
from liberator.snapshots import signal_requests
from liberator.source import Pacing

MAX_BATCH = 1000  # changes per batch inside a large transaction

_EVENTS = [
    GtidEvent,
    MariadbGtidEvent,
    QueryEvent,
    XidEvent,
    TableMapEvent,
    WriteRowsEvent,
    UpdateRowsEvent,
    DeleteRowsEvent,
    HeartbeatLogEvent,
    RotateEvent,
]
_IN_TRANSACTION = ("SAVEPOINT", "ROLLBACK TO", "RELEASE SAVEPOINT")
# TRUNCATE [TABLE] [db.]table, names bare or back-quoted (the binlog logs the statement as the client wrote it).
_TRUNCATE = re.compile(
    r"^\s*TRUNCATE\s+(?:TABLE\s+)?(?:(?:`(?P<db1>[^`]+)`|(?P<db2>[A-Za-z0-9_$]+))\s*\.\s*)?"
    r"(?:`(?P<t1>[^`]+)`|(?P<t2>[A-Za-z0-9_$]+))\s*;?\s*$",
    re.IGNORECASE,
)
_CREATE, _UPDATE, _DELETE = Op.create, Op.update, Op.delete


class _Connector:
    """pymysql.connect for mysql-replication, with the source's timeouts, that refuses its silent stream
    reconnect, and keeps the stream's connection for `_StreamWaiter`.

    The library reconnects a lost stream from the GTID it was *started* with, replaying events already
    handed over out of order; the runtime's retry from the last position yielded is the correct way back.
    It reconnects on any lost connection, read_timeout expiring included, and keeps the reason to itself.
    """

    def __init__(self, config: MySQLBinlogConfig, server: str) -> None:
        self.config = config
        self.server = server
        self.stream_connects = 0
        self.stream: Any = None

    def lost(self) -> TransientSourceError:
        return TransientSourceError(
            f"source {self.config.name}: lost the binlog connection to {self.server} (closed, or "
            f"silent past read_timeout ({seconds(self.config.read_timeout)}) though the server sends "
            "a heartbeat every second); reopening from the last position"
        )

    def __call__(self, **kwargs: Any) -> Any:
        stream = kwargs.get("db") != "information_schema"
        if stream:
            self.stream_connects += 1
            if self.stream_connects > 1:
                raise self.lost()
        kwargs.setdefault("init_command", "SET time_zone = '+00:00'")
        if "db" in kwargs:  # mysql-replication still says db=, which PyMySQL deprecated for database=
            kwargs["database"] = kwargs.pop("db")
        conn = mysql_connect(self.config, **kwargs)
        if stream:
            self.stream = conn
        return conn


class _StreamWaiter:
    """Waits until the binlog stream has something to read, without reading it.

    The library's reads block (a timeout would close the connection), so the streamer asks here first,
    between transactions: the bytes already in the connection's read buffer (peeked at without blocking),
    else the socket (select). Where the connection does not look like PyMySQL's, it answers "ready", and
    the streamer blocks in the read as before (idle only at the server's heartbeats).
    """

    def __init__(self, connector: _Connector) -> None:
        self.connector = connector
        self.quiet_since: float | None = None  # when the stream last went quiet, while it stays quiet

    def wait(self, timeout: float) -> bool:
        """True when a read will find data (or the end of the connection), False after `timeout` seconds.
        A stream quiet for longer than read_timeout is lost (TransientSourceError): the server sends a
        heartbeat every second, so a frozen or unreachable one is noticed here, where no read would time out."""
        started = time.monotonic()
        if self._ready(timeout):
            self.quiet_since = None
            return True
        if self.quiet_since is None:
            self.quiet_since = started
        elif time.monotonic() - self.quiet_since > self.connector.config.read_timeout:
            raise self.connector.lost()
        return False

    def _ready(self, timeout: float) -> bool:
        conn = self.connector.stream
        sock = getattr(conn, "_sock", None)
        buffered = getattr(conn, "_rfile", None)
        if sock is None or buffered is None:
            return True
        previous = sock.gettimeout()
        try:
            sock.settimeout(0.0)
            if buffered.peek(1):
                return True
        except (BlockingIOError, InterruptedError, ssl.SSLWantReadError):
            pass
        except OSError:
            return True  # the read reports it
        finally:
            sock.settimeout(previous)
        readable, _, _ = select.select([sock], [], [], timeout)
        return bool(readable)


def open_reader(
    config: MySQLBinlogConfig, settings: dict[str, Any], position: BinlogPosition, by_gtid: bool, mariadb: bool
) -> tuple[BinLogStreamReader, _StreamWaiter]:
    connector = _Connector(config, f"{settings['host']}:{settings['port']}")
    kwargs: dict[str, Any] = {
        # read_timeout here too: the library asks for heartbeats at most every half of it
        "connection_settings": {**settings, "charset": "utf8mb4", "read_timeout": config.read_timeout},
        "server_id": config.server_id,
        "blocking": True,
        "slave_heartbeat": 1.0,  # idle servers still send something each second: stop and heartbeats work
        "only_events": _EVENTS,
        "only_schemas": config.literal_databases(),
        # A table id's TableMapEvent is parsed once, not before every transaction (half the library's time per
        # single-row transaction): table ids change with the table's definition, and the streamer drops
        # the ids of the tables a DDL statement names from the library's map as well (`_ddl`).
        "freeze_schema": True,
        "enable_logging": False,
        "pymysql_wrapper": connector,
        "report_slave": reader_identity(),  # SHOW SLAVE HOSTS names this daemon (see guard.py)
    }
    if by_gtid:
        kwargs.update(auto_position=str(position.gtid), is_mariadb=mariadb)
    else:
        # is_mariadb=True would ignore log_file/log_pos: the classic dump command works on both servers
        kwargs.update(is_mariadb=False, resume_stream=True, log_file=position.coord.file, log_pos=position.coord.pos)
    return BinLogStreamReader(**kwargs), _StreamWaiter(connector)


class _Skip:
    """Skips changes a later snapshot run already read (see SnapshotRun) until the stream passes its point."""

    def __init__(self, state: SnapshotState) -> None:
        self.state = state
        self.tables = {name: i for i, name in enumerate(state.tables)}
        self.until = max(run.at for run in state.runs[1:])

    def skip(self, qualified: str, key: tuple[object, ...], at: Coord) -> bool:
        index = self.tables.get(qualified)
        if index is None:
            return False
        covering = self.state.runs[0]
        for run in self.state.runs[1:]:
            if index > run.table_index or (index == run.table_index and (run.after is None or _after(key, run.after))):
                covering = run
        return covering is not self.state.runs[0] and at <= covering.at


def _after(key: tuple[object, ...], bound: tuple[object, ...]) -> bool:
    try:
        return key > bound
    except TypeError:
        return True


class BinlogStreamer:
    """One binlog session: the table maps seen, the transaction being read, the batch being made."""

    def __init__(
        self,
        config: MySQLBinlogConfig,
        tables: TableCatalog,
        ctl: Any,
        mysql: bool,
        log: logging.Logger,
        stop: threading.Event,
        pacing: Pacing | None = None,
        outbox: BinlogOutbox | None = None,
        backfill: BinlogBackfill | None = None,
        blocking: BlockingSnapshot | None = None,
    ) -> None:
        self.config = config
        self.outbox = outbox
        self.backfill = backfill  # snapshots on demand, between watermarks (backfill.py)
        self.blocking = blocking  # blocking snapshots on demand (blocking.py)
        self.signal_ids: set[int] = set()  # table ids of the signal table
        self.tables = tables
        self.ctl = ctl  # our own connection for information_schema
        self.mysql = mysql
        self.log = log
        self.stop = stop
        self.pacing = pacing or Pacing()
        self.by_table_id: dict[int, tuple[BinlogTable, RowsReader]] = {}
        self.recheck: set[str] = set()

    def run(self, reader: BinLogStreamReader, position: BinlogPosition, waiter: _StreamWaiter) -> Iterator[SourceItem]:
        config = self.config
        stop = self.stop
        pacing = self.pacing
        fetch = reader.fetchone
        by_table_id = self.by_table_id
        skip = _Skip(position.snapshot) if position.snapshot is not None and len(position.snapshot.runs) > 1 else None
        if skip is None and position.snapshot is not None:
            position = replace(position, snapshot=None)
        backfill = self.backfill
        here = position  # after the last transaction read: where a restart resumes, between transactions
        gtid: GtidState | None = position.gtid
        schemas = position.schemas
        txn_id: str | None = None
        txn_gtid: str | None = None
        txn_ms = 0
        part: Txn | None = None  # the transaction's last part with changes (each rows event is one, at its position)
        changed = False  # the transaction published something
        in_txn = False
        items: list[BatchItem] = []
        last_yield = time.monotonic()
        pending: BinlogPosition | None = None
        tracks = self.tables.catalogue.settings.tracks_transactions  # the core counts them: report commits
        while True:
            if stop.is_set():
                return
            if not in_txn:
                # Between transactions: the only place where the stream may make us wait.
                while True:
                    if backfill is not None:
                        moved = yield from self._between(backfill, reader, here)
                        if moved is not here:  # stored with the backfills' progress: `pending` would undo it
                            here, pending, last_yield = moved, None, time.monotonic()
                        if stop.is_set():  # perhaps in a blocking snapshot's read: nothing more streamed
                            return
                    if waiter.wait(pacing.max_wait):
                        break
                    yield IDLE
                    if stop.is_set():
                        return
            event = fetch()
            cls = event.__class__
            if cls is WriteRowsEvent or cls is UpdateRowsEvent or cls is DeleteRowsEvent:
                entry = by_table_id.get(event.table_id)
                if entry is None:
                    if cls is WriteRowsEvent and event.table_id in self.signal_ids:
                        for row in event.rows:
                            self._signal(row["values"])
                        continue
                    outbox = self.outbox
                    if outbox is not None and cls is WriteRowsEvent and outbox.is_outbox(event.table_id):
                        for row in event.rows:
                            items.extend(outbox.inserted(event.table_id, row["values"]))
                        changed = True
                        if len(items) >= MAX_BATCH:
                            yield ChangeBatch(items, None)
                            items = []
                    continue
                where = f"{reader.log_file}:{event.packet.log_pos}"
                if txn_id is None:
                    txn_id = where
                txn = Txn(
                    txn_ms or int(time.time() * 1000),
                    id=txn_id,
                    position=where,
                    commit_ms=txn_ms,
                    continues=part,
                    native=(event.packet.server_id, txn_gtid),  # for the Debezium envelope's source block
                )
                covered = None if skip is None else (skip, Coord(reader.log_file, event.packet.log_pos))
                watched = (
                    backfill is not None
                    and backfill.watching == entry[0].qualified
                    and backfill.inside(Coord(reader.log_file, event.packet.log_pos))
                )
                if self._rows(event, cls, entry, txn, items, covered, watched):
                    part, changed = txn, True
                if len(items) >= MAX_BATCH:
                    yield ChangeBatch(items, None)  # inside the transaction: no position to resume from
                    items = []
                continue
            if cls is TableMapEvent:
                schemas = self._table_map(event, schemas)
                continue
            if cls is GtidEvent or cls is MariadbGtidEvent:
                in_txn = True
                txn_gtid = event.gtid
                if cls is GtidEvent and event.gtid.endswith(":0"):
                    txn_gtid = None  # anonymous (gtid_mode OFF)
                txn_id, txn_ms, part, changed = txn_gtid, event.timestamp * 1000, None, False
                continue
            end = False
            if cls is XidEvent:
                end = True
            elif cls is QueryEvent:
                query = event.query.strip()
                upper = query[:20].upper()
                if upper == "BEGIN":
                    if not in_txn:
                        in_txn, txn_gtid, txn_id, part, changed = True, None, None, None, False
                        txn_ms = event.timestamp * 1000
                    continue
                if upper.startswith(_IN_TRANSACTION):
                    continue
                if upper not in ("COMMIT", "ROLLBACK"):
                    truncated = self._truncated(query, event.schema)
                    if truncated is not None:
                        where = f"{reader.log_file}:{event.packet.log_pos}"
                        ms = txn_ms or event.timestamp * 1000
                        txn = Txn(
                            ms,
                            id=txn_id or where,
                            position=where,
                            commit_ms=ms,
                            continues=part,
                            native=(event.packet.server_id, txn_gtid),
                        )
                        truncates = self._truncate(truncated, schemas, txn, where)
                        if backfill is not None and backfill.inside(Coord(reader.log_file, event.packet.log_pos)):
                            backfill.truncated(truncated)
                        if truncates:
                            items.extend(truncates)
                            part, changed = txn, True
                    self._ddl(query, schemas, reader)
                end = True
            elif cls is HeartbeatLogEvent:
                if pending is not None and not in_txn and time.monotonic() - last_yield >= config.heartbeat:
                    yield Checkpoint(pending)
                    pending, last_yield = None, time.monotonic()
                else:
                    yield IDLE
                continue
            elif event is None:
                raise TransientSourceError(f"source {config.name}: the server ended the binlog stream; reopening")
            if not end:
                continue
            # The end of a transaction: the position after it.
            if txn_gtid is not None and gtid is not None:
                gtid = gtid.add(txn_gtid)
            coord = Coord(reader.log_file, reader.log_pos)
            if skip is not None and skip.until < coord:
                skip = None  # the stream is past every later snapshot run's point
            snapshot = skip.state if skip is not None else None
            position = BinlogPosition(coord, gtid, schemas, snapshot, () if backfill is None else backfill.backfills)
            here = position
            if changed or items:
                # The transaction's commit, for the transaction topic's END (liberator.capture.txmeta).
                committed = [part] if part is not None and tracks else []
                yield ChangeBatch(items, position, committed)
                items, pending, last_yield = [], None, time.monotonic()
            elif time.monotonic() - last_yield >= config.heartbeat:
                yield Checkpoint(position)  # other tables' traffic: keep the stored position moving
                pending, last_yield = None, time.monotonic()
            else:
                pending = position
            in_txn, txn_gtid, txn_id, part, changed = False, None, None, None, False

    def _between(
        self, backfill: BinlogBackfill, reader: BinLogStreamReader, here: BinlogPosition
    ) -> Generator[SourceItem, None, BinlogPosition]:
        """Between transactions: the open window closes once the stream passed its high watermark; requests
        and cancels are taken (stored at once, so a request survives a crash); at a blocking snapshot's point
        the stream pauses for its read; the next chunk is read."""
        coord = None if reader.log_file is None or reader.log_pos is None else Coord(reader.log_file, reader.log_pos)
        if backfill.reached(coord):
            rows = backfill.close_window(str(coord))
            here = replace(here, backfills=backfill.backfills)
            yield ChangeBatch(list(rows), here) if rows else Checkpoint(here)  # the chunk's progress with its rows
        if backfill.intake():
            here = replace(here, backfills=backfill.backfills)
            yield Checkpoint(here, durable=True)
        blocking = self.blocking
        if blocking is not None:
            taken = backfill.backfills
            blocking.prepare()
            if backfill.backfills is not taken:  # a request whose snapshot could not start was dropped
                here = replace(here, backfills=backfill.backfills)
                yield Checkpoint(here, durable=True)
            if blocking.due(coord):
                here = yield from blocking.pause(here)
        backfill.next_chunk()
        return here

    def _signal(self, values: dict[str, Any]) -> None:
        """A row inserted into the signal table: its snapshot requests go to the desk, taken between transactions."""
        texts = {k: v.decode() if isinstance(v, bytes) else v for k, v in values.items() if isinstance(v, str | bytes)}
        try:
            requests = signal_requests(str(texts.get("id", "?")), str(texts.get("type", "")), texts.get("data"))
        except ValueError as exc:
            self.log.warning("%s; ignored", exc)
            return
        if self.backfill is None:
            return
        for request in requests:
            self.backfill.desk.submit(request)
            self.log.info("signal %s: snapshot of %s requested", request.id, ", ".join(request.tables))

    def _rows(
        self,
        event: Any,
        cls: type,
        entry: tuple[BinlogTable, RowsReader],
        txn: Txn,
        items: list[BatchItem],
        covered: tuple[_Skip, Coord] | None,
        watched: bool = False,
    ) -> bool:
        """The event's rows as changes of `txn`, appended to `items`; whether there were any. `covered`: a
        later snapshot run may hold some of them already (its skip rule, and where the event is); `watched`:
        the event is inside an open chunk window on its table, whose rows of these keys the stream carries."""
        table, reader = entry
        captured = table.captured
        rows = reader.rows(event)
        update = cls is UpdateRowsEvent
        if rows is None:  # the library decodes these
            from_binlog = table.from_binlog
            if update:
                rows = [
                    (from_binlog(r["before_values"], r["before_none_sources"]),
                     from_binlog(r["after_values"], r["after_none_sources"]))
                    for r in event.rows
                ]  # fmt: skip
            else:
                rows = [from_binlog(r["values"], r["none_sources"]) for r in event.rows]
        if not rows:
            return False
        if watched:
            assert self.backfill is not None
            key_index = captured.key_index
            if update:
                self.backfill.saw_rows(key_index, [before for before, _after in rows])
                self.backfill.saw_rows(key_index, [after for _before, after in rows])
            else:
                self.backfill.saw_rows(key_index, rows)
        if covered is not None:
            return self._covered_rows(cls, table, rows, txn, items, *covered)
        append = items.append
        if cls is WriteRowsEvent:
            for values in rows:
                append(RowChange(captured, _CREATE, txn, None, values))
        elif update:
            for before, after in rows:
                append(RowChange(captured, _UPDATE, txn, before, after))
        else:
            for values in rows:
                append(RowChange(captured, _DELETE, txn, values))
        return True

    def _covered_rows(
        self,
        cls: type,
        table: BinlogTable,
        rows: list[Any],
        txn: Txn,
        items: list[BatchItem],
        skip: _Skip,
        at: Coord,
    ) -> bool:
        """While a later snapshot run covers part of the stream: the changes it does not already hold.

        A covered create (or update) is skipped, a covered delete published iff its key is gone from the
        live table (liberator.resnapshot); an update that changes the key is its delete and its create."""
        captured = table.captured
        key_index = captured.key_index
        qualified = table.qualified
        before_count = len(items)

        def keep(op: Op, values: list[Any]) -> bool:
            key = tuple(values[i] for i in key_index)
            if not skip.skip(qualified, key, at):
                return True
            return publish_covered(op, lambda: self._has_row(table, key))

        for row in rows:
            if cls is WriteRowsEvent:
                if keep(Op.create, row):
                    items.append(RowChange(captured, Op.create, txn, after=row))
            elif cls is DeleteRowsEvent:
                if keep(Op.delete, row):
                    items.append(RowChange(captured, Op.delete, txn, before=row))
            else:
                before, after = row
                if tuple(before[i] for i in key_index) == tuple(after[i] for i in key_index):
                    if keep(Op.update, after):
                        items.append(RowChange(captured, Op.update, txn, before=before, after=after))
                    continue
                old, new = keep(Op.delete, before), keep(Op.create, after)
                if old and new:
                    items.append(RowChange(captured, Op.update, txn, before=before, after=after))  # split by the core
                elif old:
                    items.append(RowChange(captured, Op.delete, txn, before=before))
                elif new:
                    items.append(RowChange(captured, Op.create, txn, after=after))
        return len(items) > before_count

    def _has_row(self, table: BinlogTable, key: tuple[object, ...]) -> bool:
        """Whether the live table holds a row with this key (for a delete a later snapshot run covers)."""
        definition = table.table
        condition = " AND ".join(f"{quote(k)} = %s" for k in definition.key)
        query = f"SELECT 1 FROM {quote(definition.database)}.{quote(definition.table)} WHERE {condition} LIMIT 1"
        try:
            with self.ctl.cursor() as cur:
                cur.execute(query, key)
                return cur.fetchone() is not None
        except pymysql.err.ProgrammingError as exc:
            if exc.args[0] == 1146:  # dropped since: its rows are gone
                return False
            raise

    def _table_map(self, event: Any, schemas: SchemaHistory) -> SchemaHistory:
        """A table id's map (the first since the library forgot it): what its rows events are, from now on."""
        if self.outbox is not None and self.outbox.table_map(event):
            self.by_table_id.pop(event.table_id, None)
            return schemas
        self.signal_ids.discard(event.table_id)  # table ids are reused after a table is reopened
        if f"{event.schema}.{event.table}" == self.config.signal_table:
            self.by_table_id.pop(event.table_id, None)
            self.signal_ids.add(event.table_id)
            return schemas
        if not self.config.captures(event.schema, event.table):
            self.by_table_id.pop(event.table_id, None)
            return schemas
        qualified = f"{event.schema}.{event.table}"
        specs, key = specs_from_table_map(event)
        from_binlog = TableDef(event.schema, event.table, specs, key, origin="binlog")
        current = schemas.get(qualified)
        if current is None or current.signature != from_binlog.signature or qualified in self.recheck:
            now = read_table_def(self.ctl, event.schema, event.table, self.mysql)
            if now is not None and now.signature == from_binlog.signature:
                chosen = now
            else:
                # information_schema is already ahead of this event (a later DDL): the binlog describes it
                self.log.info("%s: using the binlog's own description of the table at this point", qualified)
                chosen = from_binlog
            self.recheck.discard(qualified)
            if chosen != current:
                if current is not None:
                    self.log.info("%s changed shape; the new schema is checked before its first event", qualified)
                schemas = schemas.with_table(chosen)
            current = chosen
        table = self.tables.table(current)
        self.by_table_id[event.table_id] = (table, RowsReader(event.columns, table))
        return schemas

    def _truncated(self, query: str, default_db: Any) -> str | None:
        """db.table when the statement is a TRUNCATE of a captured table, else None."""
        match = _TRUNCATE.match(query)
        if match is None:
            return None
        database = match.group("db1") or match.group("db2")
        if database is None:
            database = default_db.decode() if isinstance(default_db, bytes) else default_db
        table = match.group("t1") or match.group("t2")
        if not database or not self.config.captures(database, table):
            return None
        return f"{database}.{table}"

    def _truncate(self, qualified: str, schemas: SchemaHistory, txn: Txn, where: str) -> list[RowChange]:
        """TRUNCATE of a captured table: by the `truncate:` policy (liberator.capture.truncate_changes)."""
        definition = schemas.get(qualified)
        if definition is None:
            database, name = qualified.split(".", 1)
            definition = read_table_def(self.ctl, database, name, self.mysql)
        if definition is None:  # gone since: nothing to say about its rows
            self.log.warning("TRUNCATE of %s at %s: the table no longer exists; nothing to publish", qualified, where)
            return []
        table = self.tables.table(definition).captured
        return truncate_changes(self.config.truncate, self.config.name, [table], txn, where, self.log)

    def _ddl(self, query: str, schemas: SchemaHistory, reader: BinLogStreamReader) -> None:
        """A DDL statement: the tables it may touch are described again at their next TableMapEvent.

        The captured ones are read from information_schema again there; and the ids of every table it names
        leave the library's table map (which `freeze_schema` keeps otherwise), so their next map is parsed."""
        lowered = query.lower()
        if self.backfill is not None:
            self.backfill.ddl(lowered)
        for qualified, table in schemas.tables:
            if table.table.lower() in lowered:
                self.recheck.add(qualified)
        known = reader.table_map
        for table_id, mapped in list(known.items()):
            if str(mapped.table).lower() in lowered:
                del known[table_id]
                self.by_table_id.pop(table_id, None)
