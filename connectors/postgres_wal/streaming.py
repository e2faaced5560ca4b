"""pgoutput messages -> row changes: transactions, relations (shape changes), TOAST, truncates, positions.

Each transaction's changes go out as one batch at its Commit, with the position after it (its end LSN); a
transaction larger than `MAX_BATCH` changes goes out in several batches, only the last one with a position,
so memory stays bounded by a batch whatever the transaction's size.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterator

from connectors.postgres_wal.config import PostgresWalConfig
from connectors.postgres_wal.outbox import WalOutbox
from connectors.postgres_wal.pgoutput import (
    UNCHANGED_TOAST,
    Begin,
    Commit,
    Delete,
    Insert,
    Message,
    Relation,
    Truncate,
    Update,
    decode,
)
from connectors.postgres_wal.position import WalPosition, lsn_text
from connectors.postgres_wal.rows import fill_unchanged, parse_tuple
from connectors.postgres_wal.stream import XLOG_PAYLOAD, Frame, Idle, Keepalive
from connectors.postgres_wal.tables import TableCatalog, TableState
from connectors.postgres_wal.tuples import Fallback
from liberator.capture import ChangeBatch, Op, RowChange, Txn, truncate_changes
from liberator.events import IDLE, ChangeEvent, Checkpoint, SourceItem

MAX_BATCH = 1000  # changes per batch inside a large transaction
_U32 = struct.Struct("!I").unpack_from


class ChangeDecoder:
    """State of one replication session: the relations seen and the transaction being read."""

    def __init__(
        self,
        config: PostgresWalConfig,
        catalog: TableCatalog,
        captured: set[str],
        position: WalPosition,
        log: logging.Logger,
        outbox: WalOutbox | None = None,
    ) -> None:
        self.config = config
        self.catalog = catalog
        self.captured = captured
        self.log = log
        self.relations: dict[int, TableState | None] = {}
        self.names: dict[int, str] = {}
        self.last = position.lsn  # everything before it is yielded (a commit end, or a keepalive's LSN)
        self.tables = position.tables
        self.skip = position.skip_before()
        self.begin: Begin | None = None
        self.txn = Txn(0)
        self.items: list[RowChange | ChangeEvent] = []
        self.outbox = outbox

    def frame(self, frame: Frame) -> Iterator[SourceItem]:
        if frame.__class__ is bytes:
            assert isinstance(frame, bytes)
            if frame[XLOG_PAYLOAD] == 0x49 and self._insert(frame):  # 'I', most of every stream
                if len(self.items) >= MAX_BATCH:
                    yield ChangeBatch(self.items, None)
                    self.items = []
                return
            yield from self.message(frame[XLOG_PAYLOAD:])
        elif isinstance(frame, Keepalive):
            if self.begin is None and frame.wal_end > self.last:
                # Between transactions, everything before the server's LSN has reached us: nothing is pending.
                yield Checkpoint(self._position(frame.wal_end))
            else:
                yield IDLE
        elif isinstance(frame, Idle):
            yield IDLE

    def _position(self, lsn: int) -> WalPosition:
        self.last = lsn
        if self.skip:
            self.skip = {t: p for t, p in self.skip.items() if p > lsn}
            self.tables = tuple((t, p) for t, p in self.tables if p > lsn)
        elif self.tables:
            self.tables = ()
        return WalPosition(lsn, self.tables, snapshot_done=True)

    def _state(self, relid: int) -> TableState | None:
        state = self.relations.get(relid)
        if state is None:
            return None
        if self.skip:
            point = self.skip.get(state.name)
            if point is not None and self.begin is not None and self.begin.final_lsn < point:
                return None  # this transaction is already in the snapshot read at `point`
        return state

    def _insert(self, frame: bytes) -> bool:
        """An Insert of a captured table whose values all came as text or NULL; False: take the generic path."""
        (relid,) = _U32(frame, XLOG_PAYLOAD + 1)
        state = self.relations.get(relid)
        if state is None or self.outbox is not None or frame[XLOG_PAYLOAD + 5] != 0x4E or self._skipped(state):
            return False
        try:
            values = state.reader(frame, XLOG_PAYLOAD + 6)
        except Fallback:
            return False
        self.items.append(RowChange(state.captured, Op.create, self.txn, after=values))
        return True

    def _skipped(self, state: TableState) -> bool:
        return bool(self.skip) and self._state(state.relid) is None

    def message(self, payload: bytes) -> Iterator[SourceItem]:
        msg = decode(payload)
        kind = type(msg)
        items = self.items
        if kind is Insert:
            assert isinstance(msg, Insert)
            state = self._state(msg.relid)
            if state is not None:
                items.append(RowChange(state.captured, Op.create, self.txn, after=parse_tuple(state, msg.new)))
            if self.outbox is not None and self.outbox.is_outbox(msg.relid):
                items.extend(self.outbox.inserted(msg.relid, msg.new))
            if len(items) >= MAX_BATCH:
                yield ChangeBatch(items, None)
                self.items = []
        elif kind is Begin:
            assert isinstance(msg, Begin)
            self.begin = msg
            commit_ms = msg.commit_micros // 1000
            self.txn = Txn(commit_ms, id=str(msg.xid), position=lsn_text(msg.final_lsn), commit_ms=commit_ms)
        elif kind is Commit:
            assert isinstance(msg, Commit)
            self.begin = None
            position = self._position(msg.end_lsn)
            if items:
                yield ChangeBatch(items, position)
                self.items = []
            else:
                yield Checkpoint(position)
        elif kind is Delete:
            assert isinstance(msg, Delete)
            state = self._state(msg.relid)
            if state is not None:
                old = parse_tuple(state, msg.old)
                key = [old[i] for i in state.captured.key_index]
                items.append(
                    RowChange(state.captured, Op.delete, self.txn, before=old if msg.old_is_full else None, key=key)
                )
        elif kind is Update:
            assert isinstance(msg, Update)
            self._update(msg)
        elif kind is Relation:
            assert isinstance(msg, Relation)
            self._relation(msg)
        elif kind is Truncate:
            assert isinstance(msg, Truncate)
            self._truncate(msg)
        elif kind is Message:
            assert isinstance(msg, Message)
            if self.outbox is not None:
                items.extend(self.outbox.message(msg))

    def _relation(self, msg: Relation) -> None:
        name = f"{msg.namespace}.{msg.name}"
        self.names[msg.relid] = name
        if self.outbox is not None:
            self.outbox.relation(msg)
        if name not in self.captured:
            self.relations[msg.relid] = None
            return
        self.relations[msg.relid] = self.catalog.from_relation(msg)

    def _update(self, msg: Update) -> None:
        state = self._state(msg.relid)
        if state is None:
            return
        new = parse_tuple(state, msg.new)
        old = None if msg.old is None else parse_tuple(state, msg.old)
        full_old = old if msg.old_is_full else None
        headers: tuple[tuple[str, bytes], ...] = ()
        if UNCHANGED_TOAST in new:
            headers = fill_unchanged(state, new, full_old, self.config.toast_placeholder)
        if full_old is not None and UNCHANGED_TOAST in full_old:  # pragma: no cover - FULL old rows are detoasted
            fill_unchanged(state, full_old, None, self.config.toast_placeholder)
        # A key-only old tuple (the key changed, REPLICA IDENTITY DEFAULT) carries just the old key's values.
        old_key = None if old is None or full_old is not None else [old[i] for i in state.captured.key_index]
        self.items.append(
            RowChange(state.captured, Op.update, self.txn, before=full_old, after=new, key=old_key, headers=headers)
        )

    def _truncate(self, msg: Truncate) -> None:
        tables = []
        for relid in msg.relids:
            if self.names.get(relid) not in self.captured:
                continue
            state = self._state(relid)
            if state is None:  # skipped (already in a later snapshot read): nothing to publish
                continue
            tables.append(state.captured)
        where = self.txn.position or lsn_text(self.last)
        self.items.extend(truncate_changes(self.config.truncate, self.config.name, tables, self.txn, where, self.log))
