"""pgoutput messages -> row changes: transactions, relations (shape changes), TOAST, truncates, positions.

The changes go out in batches of whatever the server handed over at once: when the stream has nothing more
buffered, the transactions read so far are one batch, with the position after the last of them (its end
LSN). A batch never holds more than `MAX_BATCH` changes, so a large transaction goes out in several, and
memory stays bounded whatever its size; a batch that ends inside a transaction carries the position of
the last transaction it completes (or none).
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterator, Sequence

from liberator.capture import BatchItem, ChangeBatch, Op, RowChange, Txn, truncate_changes
from liberator.connectors.postgres_wal.backfill import WATERMARK_PREFIX, WalBackfill
from liberator.connectors.postgres_wal.config import PostgresWalConfig
from liberator.connectors.postgres_wal.outbox import WalOutbox
from liberator.connectors.postgres_wal.pgoutput import (
    PG_EPOCH_MICROS,
    UNCHANGED_TOAST,
    Begin,
    Commit,
    Delete,
    Insert,
    Message,
    Relation,
    Truncate,
    TupleValue,
    Update,
    decode,
)
from liberator.connectors.postgres_wal.position import WalPosition, lsn_text
from liberator.connectors.postgres_wal.rows import UnreadableValue, fill_unchanged, parse_tuple, poison_row
from liberator.connectors.postgres_wal.stream import DRAINED, XLOG_PAYLOAD, Frame, Idle, Keepalive
from liberator.connectors.postgres_wal.tables import TableCatalog, TableState
from liberator.connectors.postgres_wal.tuples import Fallback
from liberator.events import IDLE, Checkpoint, SourceItem
from liberator.resnapshot import publish_covered
from liberator.snapshots import signal_requests

MAX_BATCH = 1000  # changes per batch inside a large transaction
_U32 = struct.Struct("!I").unpack_from
_CREATE = Op.create
_BEGIN = struct.Struct("!QqI").unpack_from  # final (commit) LSN, commit time (µs since 2000), xid
_COMMIT_END = struct.Struct("!Q").unpack_from  # a Commit's end LSN, after its flags and commit LSN


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
        backfill: WalBackfill | None = None,
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
        self.begin_lsn: int | None = None  # the commit LSN of the transaction being read (from its Begin)
        self.txn = Txn(0)
        self.items: list[BatchItem] = []
        self.done: WalPosition | None = None  # after the last transaction read whose changes are not yielded yet
        self.outbox = outbox
        self.backfill = backfill
        self.signal_columns: list[str] = []  # of the signal table, from its Relation message
        # The transactions committed since the last batch, when the core counts them (liberator.capture.txmeta).
        self.committed: list[Txn] | None = [] if catalog.captured.settings.tracks_transactions else None

    def frame(self, frame: Frame) -> Iterator[SourceItem]:
        if frame.__class__ is bytes:
            assert isinstance(frame, bytes)
            kind = frame[XLOG_PAYLOAD]
            if kind == 0x49:  # 'I', most of every stream
                if not self._insert(frame):
                    self.message(frame[XLOG_PAYLOAD:])
            elif kind == 0x42:  # 'B'
                final_lsn, ts, xid = _BEGIN(frame, XLOG_PAYLOAD + 1)
                self._begin(final_lsn, (ts + PG_EPOCH_MICROS) // 1000, xid)
            elif kind == 0x43:  # 'C': the position after it is where streaming may resume
                (end_lsn,) = _COMMIT_END(frame, XLOG_PAYLOAD + 10)
                self._commit(end_lsn)
            else:
                self.message(frame[XLOG_PAYLOAD:])
            if len(self.items) >= MAX_BATCH:
                yield self._flush()
        elif frame is DRAINED:
            # What the server sent so far is read: hand over the transactions it completed, as one batch.
            if self.done is not None or (self.items and self.begin_lsn is None):
                yield self._flush()
        elif isinstance(frame, Keepalive):
            if self.begin_lsn is None and frame.wal_end > self.last:
                # Between transactions, everything before the server's LSN has reached us: nothing is pending.
                self.done = self._position(frame.wal_end)
                yield self._flush()
            else:
                yield IDLE
        elif isinstance(frame, Idle):
            yield IDLE

    def between_batches(self) -> bool:
        """Nothing read and not yet handed over, and no transaction open: a Checkpoint here loses nothing."""
        return not self.items and self.done is None and self.begin_lsn is None

    def capture(self, names: Sequence[str]) -> None:
        """Tables captured from now on (liberator.connectors.postgres_wal.newtables): a Relation message already
        seen of one (a publication FOR ALL TABLES sends them) is not sent again, so its shape comes from the
        catalogue."""
        for relid, name in self.names.items():
            if name in names:
                self.relations[relid] = self.catalog.from_catalog(name)

    def hand_over(self) -> Iterator[SourceItem]:
        """Between transactions: the changes read so far go out now, not at the next pause of the stream."""
        assert self.begin_lsn is None
        if self.items or self.done is not None:
            yield self._flush()

    def resume_here(self) -> WalPosition:
        """Where a restart resumes now (only `between_batches`): after everything handed over."""
        return self._position(self.last)

    def _flush(self) -> SourceItem:
        """The changes read so far, with the position after the last transaction they complete (if any)."""
        items, position = self.items, self.done
        self.items, self.done = [], None
        committed = self.committed
        if committed:
            self.committed = []
            return ChangeBatch(items, position, committed)
        if items:
            return ChangeBatch(items, position)
        assert position is not None
        return Checkpoint(position)

    def _commit(self, end_lsn: int) -> None:
        """The transaction being read committed: the position after it is where streaming may resume."""
        self.begin_lsn = None
        self.done = self._position(end_lsn)
        if self.committed is not None:
            self.committed.append(self.txn)

    def _begin(self, final_lsn: int, commit_ms: int, xid: int) -> None:
        self.begin_lsn = final_lsn
        self.txn = Txn(commit_ms, id=str(xid), position=lsn_text(final_lsn), commit_ms=commit_ms)

    def _position(self, lsn: int) -> WalPosition:
        self.last = lsn
        if self.skip:
            self.skip = {t: p for t, p in self.skip.items() if p > lsn}
            self.tables = tuple((t, p) for t, p in self.tables if p > lsn)
        elif self.tables:
            self.tables = ()
        return WalPosition(lsn, self.tables, True, () if self.backfill is None else self.backfill.backfills)

    def _state(self, relid: int) -> TableState | None:
        """The captured table's state; None for tables not captured."""
        return self.relations.get(relid)

    def _covered(self, state: TableState) -> bool:
        """Whether this transaction is already in the snapshot that re-read the table (liberator.resnapshot)."""
        if not self.skip:
            return False
        point = self.skip.get(state.name)
        return point is not None and self.begin_lsn is not None and self.begin_lsn < point

    def _deleted_covered(self, state: TableState, old: Sequence[TupleValue]) -> bool:
        """Whether a covered delete still goes out: its key is gone from the live table."""
        return publish_covered(Op.delete, lambda: self.catalog.has_row(state, old))

    def _insert(self, frame: bytes) -> bool:
        """An Insert of a captured table whose values all came as text or NULL; False: take the generic path."""
        (relid,) = _U32(frame, XLOG_PAYLOAD + 1)
        state = self.relations.get(relid)
        if state is None or self.outbox is not None or frame[XLOG_PAYLOAD + 5] != 0x4E or self._covered(state):
            return False
        if self.backfill is not None and self.backfill.watching == state.name:
            return False  # a chunk's window is open on this table: the generic path drops its keys
        try:
            values = state.reader(frame, XLOG_PAYLOAD + 6)
        except Fallback:
            return False
        self.items.append(RowChange(state.captured, _CREATE, self.txn, None, values))  # positional: the hot path
        return True

    def message(self, payload: bytes) -> None:
        """Any pgoutput message, through the generic decoder (the fast paths are in `frame`)."""
        msg = decode(payload)
        kind = type(msg)
        items = self.items
        if kind is Insert:
            assert isinstance(msg, Insert)
            state = self._state(msg.relid)
            if state is not None and not self._covered(state):
                try:
                    after = parse_tuple(state, msg.new)
                except UnreadableValue as exc:
                    items.append(poison_row(state, Op.create, self.txn, str(exc), new=msg.new))
                else:
                    items.append(RowChange(state.captured, Op.create, self.txn, after=after))
                    self._watched(state, after)
            if self.outbox is not None and self.outbox.is_outbox(msg.relid):
                items.extend(self.outbox.inserted(msg.relid, msg.new))
            if state is None and self.signal_columns and self.names.get(msg.relid) == self.config.signal_table:
                self._signal(msg.new)
        elif kind is Begin:
            assert isinstance(msg, Begin)
            self._begin(msg.final_lsn, msg.commit_micros // 1000, msg.xid)
        elif kind is Commit:
            assert isinstance(msg, Commit)
            self._commit(msg.end_lsn)
        elif kind is Delete:
            assert isinstance(msg, Delete)
            state = self._state(msg.relid)
            if state is not None and (not self._covered(state) or self._deleted_covered(state, msg.old)):
                try:
                    old = parse_tuple(state, msg.old)
                except UnreadableValue as exc:
                    items.append(poison_row(state, Op.delete, self.txn, str(exc), old=msg.old))
                    return
                key = [old[i] for i in state.captured.key_index]
                self._watched(state, old)
                items.append(
                    RowChange(state.captured, Op.delete, self.txn, before=old if msg.old_is_full else None, key=key)
                )
        elif kind is Update:
            assert isinstance(msg, Update)
            try:
                self._update(msg)
            except UnreadableValue as exc:
                state = self._state(msg.relid)
                assert state is not None
                items.append(poison_row(state, Op.update, self.txn, str(exc), new=msg.new, old=msg.old))
        elif kind is Relation:
            assert isinstance(msg, Relation)
            self._relation(msg)
        elif kind is Truncate:
            assert isinstance(msg, Truncate)
            self._truncate(msg)
        elif kind is Message:
            assert isinstance(msg, Message)
            if msg.prefix == WATERMARK_PREFIX and self.backfill is not None:
                rows = self.backfill.watermark(msg.content, self.last)
                if rows or self.backfill.window is None:
                    items.extend(rows)
                    self.done = self._position(self.last)  # the chunk's progress goes with its rows
            elif self.outbox is not None:
                items.extend(self.outbox.message(msg))

    def _signal(self, values: Sequence[TupleValue]) -> None:
        """A row inserted into the signal table: its snapshot requests go to the desk, taken between batches."""
        row = {name: value for name, value in zip(self.signal_columns, values, strict=False)}
        texts = {k: v.decode() if isinstance(v, bytes) else v for k, v in row.items() if isinstance(v, str | bytes)}
        try:
            requests = signal_requests(texts.get("id", "?"), texts.get("type", ""), texts.get("data"))
        except ValueError as exc:
            self.log.warning("%s; ignored", exc)
            return
        for request in requests:
            if self.backfill is not None:
                self.backfill.desk.submit(request)
                self.log.info("signal %s: snapshot of %s requested", request.id, ", ".join(request.tables))

    def _watched(self, state: TableState, values: Sequence[object]) -> None:
        """A streamed row of the table whose chunk window is open: the stream carries its key, not the chunk."""
        backfill = self.backfill
        if backfill is not None and backfill.watching == state.name:
            backfill.saw([values[i] for i in state.captured.key_index])

    def _relation(self, msg: Relation) -> None:
        name = f"{msg.namespace}.{msg.name}"
        self.names[msg.relid] = name
        if name == self.config.signal_table:
            self.signal_columns = [c.name for c in msg.columns]
        if self.outbox is not None:
            self.outbox.relation(msg)
        if name not in self.captured:
            self.relations[msg.relid] = None
            return
        self.relations[msg.relid] = self.catalog.from_relation(msg)
        if self.backfill is not None:
            self.backfill.reshaped(name)

    def _update(self, msg: Update) -> None:
        state = self._state(msg.relid)
        if state is None:
            return
        covered = self._covered(state)
        if covered and msg.old is None:
            return  # the key did not change: an update the re-read already holds
        new = parse_tuple(state, msg.new)
        old = None if msg.old is None else parse_tuple(state, msg.old)
        self._watched(state, new)
        if old is not None:
            self._watched(state, old)  # a key change: the old key is the stream's too
        full_old = old if msg.old_is_full else None
        headers: tuple[tuple[str, bytes], ...] = ()
        if UNCHANGED_TOAST in new:
            headers = fill_unchanged(state, new, full_old, self.config.toast_placeholder)
        if full_old is not None and UNCHANGED_TOAST in full_old:  # pragma: no cover - FULL old rows are detoasted
            fill_unchanged(state, full_old, None, self.config.toast_placeholder)
        # A key-only old tuple (the key changed, REPLICA IDENTITY DEFAULT) carries just the old key's values.
        old_key = None if old is None or full_old is not None else [old[i] for i in state.captured.key_index]
        if covered:
            # The re-read holds the new row; only the old key's delete may still be due (liberator.resnapshot).
            assert old is not None and msg.old is not None
            key_index = state.captured.key_index
            if [old[i] for i in key_index] != [new[i] for i in key_index] and self._deleted_covered(state, msg.old):
                key = [old[i] for i in key_index]
                self.items.append(RowChange(state.captured, Op.delete, self.txn, before=full_old, key=key))
            return
        self.items.append(
            RowChange(state.captured, Op.update, self.txn, before=full_old, after=new, key=old_key, headers=headers)
        )

    def _truncate(self, msg: Truncate) -> None:
        tables = []
        for relid in msg.relids:
            if self.names.get(relid) not in self.captured:
                continue
            state = self._state(relid)
            if state is None or self._covered(state):  # already in a later snapshot read: nothing to publish
                continue
            backfill = self.backfill
            if backfill is not None and backfill.watching == state.name and backfill.window is not None:
                backfill.window.rows.clear()  # the chunk read rows the truncate removed
            tables.append(state.captured)
        where = self.txn.position or lsn_text(self.last)
        self.items.extend(truncate_changes(self.config.truncate, self.config.name, tables, self.txn, where, self.log))
