"""Streaming the binlog: row events of captured tables -> change events, transaction by transaction.

Events inside a transaction carry no position (the binlog can only be resumed at transaction ends); the
transaction's end (XID, COMMIT, or a DDL statement) yields a Checkpoint with the position after it, which the
runtime stores once Kafka acknowledged every event before it. Nothing is buffered: a transaction of a million
rows flows through with the memory of one row event.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator
from functools import partial
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

from connectors.mysql_binlog.checks import quote
from connectors.mysql_binlog.config import MySQLBinlogConfig
from connectors.mysql_binlog.guard import reader_identity
from connectors.mysql_binlog.history import TableDef
from connectors.mysql_binlog.outbox import BinlogOutbox
from connectors.mysql_binlog.position import BinlogPosition, Coord, GtidState, SnapshotState
from connectors.mysql_binlog.shape import Shape, read_table_def
from connectors.mysql_binlog.types import specs_from_table_map
from liberator.dbconnect import mysql_connect, seconds
from liberator.envelope import Envelope, Op, change_value
from liberator.errors import FatalSourceError, TransientSourceError
from liberator.events import ChangeEvent, Checkpoint, SourceItem
from liberator.resnapshot import publish_covered

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


class _Connector:
    """pymysql.connect for mysql-replication, with the source's timeouts, that refuses its silent stream
    reconnect.

    The library reconnects a lost stream from the GTID it was *started* with, replaying events already
    handed over out of order; the runtime's retry from the last position yielded is the correct way back.
    It reconnects on any lost connection, read_timeout expiring included, and keeps the reason to itself.
    """

    def __init__(self, config: MySQLBinlogConfig, server: str) -> None:
        self.config = config
        self.server = server
        self.stream_connects = 0

    def __call__(self, **kwargs: Any) -> Any:
        if kwargs.get("db") != "information_schema":
            self.stream_connects += 1
            if self.stream_connects > 1:
                raise TransientSourceError(
                    f"source {self.config.name}: lost the binlog connection to {self.server} (closed, or "
                    f"silent past read_timeout ({seconds(self.config.read_timeout)}) though the server sends "
                    "a heartbeat every second); reopening from the last position"
                )
        kwargs.setdefault("init_command", "SET time_zone = '+00:00'")
        return mysql_connect(self.config, **kwargs)


def open_reader(
    config: MySQLBinlogConfig, settings: dict[str, Any], position: BinlogPosition, by_gtid: bool, mariadb: bool
) -> BinLogStreamReader:
    kwargs: dict[str, Any] = {
        # read_timeout here too: the library asks for heartbeats at most every half of it
        "connection_settings": {**settings, "charset": "utf8mb4", "read_timeout": config.read_timeout},
        "server_id": config.server_id,
        "blocking": True,
        "slave_heartbeat": 1.0,  # idle servers still send something each second: stop and heartbeats work
        "only_events": _EVENTS,
        "only_schemas": config.literal_databases(),
        "enable_logging": False,
        "pymysql_wrapper": _Connector(config, f"{settings['host']}:{settings['port']}"),
        "report_slave": reader_identity(),  # SHOW SLAVE HOSTS names this daemon (see guard.py)
    }
    if by_gtid:
        kwargs.update(auto_position=str(position.gtid), is_mariadb=mariadb)
    else:
        # is_mariadb=True would ignore log_file/log_pos: the classic dump command works on both servers
        kwargs.update(is_mariadb=False, resume_stream=True, log_file=position.coord.file, log_pos=position.coord.pos)
    return BinLogStreamReader(**kwargs)


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
    def __init__(
        self,
        config: MySQLBinlogConfig,
        shape_for: Callable[[TableDef], Shape],
        ctl: Any,
        mysql: bool,
        log: logging.Logger,
        stop: Any,
        outbox: BinlogOutbox | None = None,
    ) -> None:
        self.config = config
        self.outbox = outbox
        self.shape_for = shape_for
        self.ctl = ctl  # our own connection for information_schema
        self.mysql = mysql
        self.log = log
        self.stop = stop
        self.by_table_id: dict[int, Shape] = {}
        self.recheck: set[str] = set()

    def run(self, reader: BinLogStreamReader, position: BinlogPosition) -> Iterator[SourceItem]:
        config = self.config
        change = config.envelope is Envelope.change
        skip = _Skip(position.snapshot) if position.snapshot is not None and len(position.snapshot.runs) > 1 else None
        if skip is None and position.snapshot is not None:
            position = BinlogPosition(position.coord, position.gtid, position.schemas, None)
        gtid: GtidState | None = position.gtid
        schemas = position.schemas
        txn_id: str | None = None
        txn_gtid: str | None = None
        txn_ms = 0
        order = 0
        in_txn = False
        last_yield = time.monotonic()
        pending: BinlogPosition | None = None
        for event in reader:
            if self.stop.is_set():
                return
            if isinstance(event, (WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent)):
                shape = self.by_table_id.get(event.table_id)
                if shape is None:
                    outbox = self.outbox
                    if outbox is not None and isinstance(event, WriteRowsEvent) and outbox.is_outbox(event.table_id):
                        for row in event.rows:
                            for routed in outbox.inserted(event.table_id, row["values"]):
                                order += 1  # a Checkpoint follows this transaction's end
                                yield routed
                    continue
                if txn_id is None:
                    txn_id = f"{reader.log_file}:{event.packet.log_pos}"
                at = Coord(reader.log_file, event.packet.log_pos)
                where = str(at)
                now_ms = int(time.time() * 1000)
                stream = shape.stream
                for row in event.rows:
                    changes: list[tuple[Op, list[Any] | None, list[Any] | None]]
                    if isinstance(event, UpdateRowsEvent):
                        before = shape.values(row["before_values"], row["before_none_sources"])
                        after = shape.values(row["after_values"], row["after_none_sources"])
                        changes = [(Op.update, before, after)]
                        if shape.key_of(before) != shape.key_of(after):  # a key change: delete + insert
                            changes = [(Op.delete, before, None), (Op.create, None, after)]
                    elif isinstance(event, WriteRowsEvent):
                        changes = [(Op.create, None, shape.values(row["values"], row["none_sources"]))]
                    else:
                        changes = [(Op.delete, shape.values(row["values"], row["none_sources"]), None)]
                    for op, old, new in changes:
                        image = new if new is not None else old
                        assert image is not None
                        key_values = shape.key_of(image)
                        if (
                            skip is not None
                            and skip.skip(shape.table.qualified, key_values, at)
                            and not publish_covered(op, partial(self._has_row, shape, key_values))
                        ):
                            continue
                        key = shape.key.convert_values(key_values)
                        old_datum = None if old is None else shape.value.convert_values(old)
                        new_datum = None if new is None else shape.value.convert_values(new)
                        if change:
                            order += 1
                            value: Any = change_value(
                                op,
                                old_datum,
                                new_datum,
                                shape.info,
                                position=where,
                                commit_ms=txn_ms,
                                transaction_id=txn_id,
                                order=order,
                                ts_ms=now_ms,
                            )
                            yield ChangeEvent(stream, key, value, txn_ms or now_ms, None)
                            if op is Op.delete:
                                yield ChangeEvent(stream, key, None, txn_ms or now_ms, None)
                        else:
                            order += 1
                            yield ChangeEvent(stream, key, new_datum, txn_ms or now_ms, None)
                continue
            if isinstance(event, TableMapEvent):
                schemas = self._table_map(event, schemas)
                continue
            if isinstance(event, (GtidEvent, MariadbGtidEvent)):
                in_txn = True
                txn_gtid = event.gtid
                if isinstance(event, GtidEvent) and event.gtid.endswith(":0"):
                    txn_gtid = None  # anonymous (gtid_mode OFF)
                txn_id = txn_gtid
                txn_ms = event.timestamp * 1000
                order = 0
                continue
            end = False
            if isinstance(event, XidEvent):
                end = True
            elif isinstance(event, QueryEvent):
                query = event.query.strip()
                upper = query[:20].upper()
                if upper == "BEGIN":
                    if not in_txn:
                        in_txn, txn_gtid, txn_id, order, txn_ms = True, None, None, 0, event.timestamp * 1000
                    continue
                if upper.startswith(_IN_TRANSACTION):
                    continue
                if upper not in ("COMMIT", "ROLLBACK"):
                    truncated = self._truncated(query, event.schema)
                    if truncated is not None:
                        where_truncated = str(Coord(reader.log_file, event.packet.log_pos))
                        ms = txn_ms or event.timestamp * 1000
                        for item in self._truncate(
                            truncated, schemas, where_truncated, txn_id or where_truncated, ms, order
                        ):
                            order += 1
                            yield item
                    self._ddl(query, schemas)
                end = True
            elif isinstance(event, HeartbeatLogEvent):
                if pending is not None and not in_txn and time.monotonic() - last_yield >= config.heartbeat:
                    yield Checkpoint(pending)
                    pending, last_yield = None, time.monotonic()
                continue
            if not end:
                continue
            # The end of a transaction: the position after it.
            if txn_gtid is not None and gtid is not None:
                gtid = gtid.add(txn_gtid)
            coord = Coord(reader.log_file, reader.log_pos)
            if skip is not None and skip.until < coord:
                skip = None  # the stream is past every later snapshot run's point
            snapshot = skip.state if skip is not None else None
            position = BinlogPosition(coord, gtid, schemas, snapshot)
            if order:
                yield Checkpoint(position)
                pending, last_yield = None, time.monotonic()
            elif time.monotonic() - last_yield >= config.heartbeat:
                yield Checkpoint(position)  # other tables' traffic: keep the stored position moving
                pending, last_yield = None, time.monotonic()
            else:
                pending = position
            in_txn, txn_gtid, txn_id, order = False, None, None, 0

    def _has_row(self, shape: Shape, key: tuple[object, ...]) -> bool:
        """Whether the live table holds a row with this key (for a delete a later snapshot run covers)."""
        table = shape.table
        condition = " AND ".join(f"{quote(k)} = %s" for k in table.key)
        query = f"SELECT 1 FROM {quote(table.database)}.{quote(table.table)} WHERE {condition} LIMIT 1"
        try:
            with self.ctl.cursor() as cur:
                cur.execute(query, key)
                return cur.fetchone() is not None
        except pymysql.err.ProgrammingError as exc:
            if exc.args[0] == 1146:  # dropped since: its rows are gone
                return False
            raise

    def _table_map(self, event: Any, schemas: Any) -> Any:
        if self.outbox is not None and self.outbox.table_map(event):
            self.by_table_id.pop(event.table_id, None)
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
        self.by_table_id[event.table_id] = self.shape_for(current)
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

    def _truncate(
        self, qualified: str, schemas: Any, at: str, txn_id: str, txn_ms: int, order: int
    ) -> Iterator[ChangeEvent]:
        """TRUNCATE of a captured table: a warning, a stop, or one keyless op 't' event (`truncate:`)."""
        config = self.config
        if config.truncate == "publish":
            table = schemas.get(qualified)
            if table is None:
                database, name = qualified.split(".", 1)
                table = read_table_def(self.ctl, database, name, self.mysql)
            if table is not None:
                shape = self.shape_for(table)
                value = change_value(
                    Op.truncate,
                    None,
                    None,
                    shape.info,
                    position=at,
                    commit_ms=txn_ms,
                    transaction_id=txn_id,
                    order=order + 1,
                )
                yield ChangeEvent(shape.stream, None, value, txn_ms, None)
                return
        line = (
            f"TRUNCATE of {qualified}: the deleted rows cannot be published one by one; "
            "consumers keep them until they re-read the table"
        )
        if config.truncate == "fail":
            raise FatalSourceError(
                f"source {config.name}: {line}; set `truncate: warn` to go on, `truncate: publish` to publish it, "
                "or reset the offsets to snapshot again"
            )
        self.log.warning("%s", line)

    def _ddl(self, query: str, schemas: Any) -> None:
        """A DDL statement: re-read the shapes of the captured tables it may touch at their next TableMap."""
        lowered = query.lower()
        for qualified, table in schemas.tables:
            if table.table.lower() in lowered:
                self.recheck.add(qualified)
