"""pgoutput messages -> events: transactions, relations (shape changes), TOAST, truncates, checkpoints."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

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
    TupleValue,
    Update,
    decode,
)
from connectors.postgres_wal.position import WalPosition, lsn_text
from connectors.postgres_wal.rows import EventMaker, fill_unchanged, key_datum, parse_tuple, value_datum
from connectors.postgres_wal.stream import Frame, Keepalive, XLogData
from connectors.postgres_wal.tables import TableCatalog, TableState
from liberator.envelope import Op, change_value
from liberator.errors import FatalSourceError
from liberator.events import ChangeEvent, Checkpoint, SourceItem
from liberator.resnapshot import publish_covered


class ChangeDecoder:
    """State of one replication session: the relations seen and the transaction being read."""

    def __init__(
        self,
        config: PostgresWalConfig,
        catalog: TableCatalog,
        captured: set[str],
        maker: EventMaker,
        position: WalPosition,
        log: logging.Logger,
        outbox: WalOutbox | None = None,
    ) -> None:
        self.config = config
        self.catalog = catalog
        self.captured = captured
        self.maker = maker
        self.log = log
        self.relations: dict[int, TableState | None] = {}
        self.names: dict[int, str] = {}
        self.last = position.lsn  # everything before it is yielded (a commit end, or a keepalive's LSN)
        self.tables = position.tables
        self.skip = position.skip_before()
        self.begin: Begin | None = None
        self.order = 0
        self.xid = ""
        self.lsn = ""
        self.commit_ms = 0
        self.outbox = outbox

    def frame(self, frame: Frame) -> Iterator[SourceItem]:
        if isinstance(frame, XLogData):
            yield from self.message(frame.payload)
        elif isinstance(frame, Keepalive) and self.begin is None and frame.wal_end > self.last:
            # Between transactions, everything before the server's LSN has reached us: nothing is pending.
            yield self._checkpoint(frame.wal_end)

    def _checkpoint(self, lsn: int) -> Checkpoint:
        self.last = lsn
        if self.skip:
            self.skip = {t: p for t, p in self.skip.items() if p > lsn}
            self.tables = tuple((t, p) for t, p in self.tables if p > lsn)
        elif self.tables:
            self.tables = ()
        return Checkpoint(WalPosition(lsn, self.tables, snapshot_done=True))

    def _state(self, relid: int) -> TableState | None:
        """The captured table's state; None for tables not captured."""
        return self.relations.get(relid)

    def _covered(self, state: TableState) -> bool:
        """Whether this transaction is already in the snapshot that re-read the table (liberator.resnapshot)."""
        if not self.skip:
            return False
        point = self.skip.get(state.name)
        return point is not None and self.begin is not None and self.begin.final_lsn < point

    def _deleted_covered(self, state: TableState, old: Sequence[TupleValue]) -> bool:
        """Whether a covered delete still goes out: its key is gone from the live table."""
        return publish_covered(Op.delete, lambda: self.catalog.has_row(state, old))

    def message(self, payload: bytes) -> Iterator[SourceItem]:
        msg = decode(payload)
        kind = type(msg)
        if kind is Insert:
            assert isinstance(msg, Insert)
            state = self._state(msg.relid)
            if state is not None and not self._covered(state):
                values = parse_tuple(state, msg.new)
                yield from self._change(state, Op.create, key_datum(state, values), None, value_datum(state, values))
            if self.outbox is not None and self.outbox.is_outbox(msg.relid):
                yield from self.outbox.inserted(msg.relid, msg.new)
        elif kind is Begin:
            assert isinstance(msg, Begin)
            self.begin = msg
            self.order = 0
            self.xid = str(msg.xid)
            self.lsn = lsn_text(msg.final_lsn)
            self.commit_ms = msg.commit_micros // 1000
        elif kind is Commit:
            assert isinstance(msg, Commit)
            self.begin = None
            yield self._checkpoint(msg.end_lsn)
        elif kind is Delete:
            assert isinstance(msg, Delete)
            state = self._state(msg.relid)
            if state is not None and (not self._covered(state) or self._deleted_covered(state, msg.old)):
                old = parse_tuple(state, msg.old)
                before = value_datum(state, old) if msg.old_is_full else None
                yield from self._change(state, Op.delete, key_datum(state, old), before, None)
        elif kind is Relation:
            assert isinstance(msg, Relation)
            yield from self._relation(msg)
        elif kind is Truncate:
            assert isinstance(msg, Truncate)
            yield from self._truncate(msg)
        elif kind is Message:
            assert isinstance(msg, Message)
            if self.outbox is not None:
                yield from self.outbox.message(msg)
        elif kind is Update:
            assert isinstance(msg, Update)
            yield from self._update(msg)

    def _relation(self, msg: Relation) -> Iterator[SourceItem]:
        name = f"{msg.namespace}.{msg.name}"
        self.names[msg.relid] = name
        if self.outbox is not None:
            self.outbox.relation(msg)
        if name not in self.captured:
            self.relations[msg.relid] = None
            return
        known = self.relations.get(msg.relid)
        state = self.catalog.from_relation(msg)
        if known is not None and known.stream is not state.stream:
            self.log.info("the shape of %s changed; its new schemas are checked before the next event", name)
        self.relations[msg.relid] = state
        yield from ()

    def _update(self, msg: Update) -> Iterator[SourceItem]:
        state = self._state(msg.relid)
        if state is None:
            return
        covered = self._covered(state)
        if covered and msg.old is None:
            return  # the key did not change: an update the re-read already holds
        new = parse_tuple(state, msg.new)
        old = None if msg.old is None else parse_tuple(state, msg.old)
        full_old = old if msg.old_is_full else None
        headers: tuple[tuple[str, bytes], ...] = ()
        if UNCHANGED_TOAST in new:
            headers = fill_unchanged(state, new, full_old, self.config.toast_placeholder)
        after = value_datum(state, new)
        key = key_datum(state, new)
        before = None
        if full_old is not None:
            if UNCHANGED_TOAST in full_old:  # pragma: no cover - FULL old rows are sent detoasted
                fill_unchanged(state, full_old, None, self.config.toast_placeholder)
            before = value_datum(state, full_old)
        if old is not None and msg.old is not None:
            old_key = key_datum(state, old)
            if old_key != key:
                # The primary key changed: the old key is deleted, the new one created (each on its partition).
                if not covered or self._deleted_covered(state, msg.old):
                    yield from self._change(state, Op.delete, old_key, before, None)
                if not covered:
                    yield from self._change(state, Op.create, key, None, after, headers)
                return
        if not covered:
            yield from self._change(state, Op.update, key, before, after, headers)

    def _truncate(self, msg: Truncate) -> Iterator[SourceItem]:
        names = [self.names.get(r, str(r)) for r in msg.relids]
        names = [n for n in names if n in self.captured]
        if not names:
            return
        if self.config.truncate == "publish":
            # One keyless op 't' event per captured table, in the message's order, like Debezium's.
            for relid in msg.relids:
                state = self._state(relid)
                if state is None or self._covered(state):
                    continue
                self.order += 1
                value = change_value(
                    Op.truncate,
                    None,
                    None,
                    state.info,
                    position=self.lsn,
                    commit_ms=self.commit_ms,
                    transaction_id=self.xid,
                    order=self.order,
                )
                yield ChangeEvent(state.stream, None, value, self.commit_ms, None)
            return
        line = (
            f"TRUNCATE of {', '.join(names)} at {self.lsn}: the deleted rows cannot be published one by one; "
            "consumers keep them until they re-read the table"
        )
        if self.config.truncate == "fail":
            raise FatalSourceError(
                f"source {self.config.name}: {line}; set `truncate: warn` to go on, `truncate: publish` to publish "
                "it, or reset the offsets to snapshot again"
            )
        self.log.warning("%s", line)

    def _change(
        self,
        state: TableState,
        op: Op,
        key: dict[str, Any],
        before: dict[str, Any] | None,
        after: dict[str, Any] | None,
        headers: tuple[tuple[str, bytes], ...] = (),
    ) -> Iterator[ChangeEvent]:
        self.order += 1
        yield from self.maker.events(
            state,
            op,
            key,
            before,
            after,
            timestamp_ms=self.commit_ms,
            lsn_text=self.lsn,
            commit_ms=self.commit_ms,
            xid=self.xid,
            order=self.order,
            headers=headers,
        )
