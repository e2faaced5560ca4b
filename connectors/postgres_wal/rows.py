"""Tuples (text values from pgoutput or the snapshot) -> key and value datums, and the events around them."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from connectors.postgres_wal.pgoutput import UNCHANGED_TOAST, TupleValue
from connectors.postgres_wal.tables import TableState
from liberator.avro import DatumError
from liberator.envelope import Envelope, Op, change_value
from liberator.errors import FatalSourceError
from liberator.events import ChangeEvent
from liberator.positions import Position
from liberator.schema import BytesType, JsonType, StringType, TextRepr

UNCHANGED_HEADER = "liberator.unchanged_toast"


def parse_tuple(state: TableState, values: Sequence[TupleValue]) -> list[Any]:
    """A streamed tuple (every column of the table) -> Python values of the captured columns."""
    index = state.wire_index
    if index is not None:
        if len(values) <= index[-1]:
            raise FatalSourceError(
                f"table {state.name}: a change has {len(values)} values, fewer than the table's columns; "
                "restart the source so it re-reads the table's shape"
            )
        values = [values[i] for i in index]
    return parse_values(state, values)


def parse_values(state: TableState, values: Sequence[TupleValue]) -> list[Any]:
    """Text values -> Python values in column order (UNCHANGED_TOAST left in place for the caller)."""
    if len(values) != len(state.parsers):
        raise FatalSourceError(
            f"table {state.name}: a change has {len(values)} values for {len(state.parsers)} columns; "
            "restart the source so it re-reads the table's shape"
        )
    out: list[Any] = []
    append = out.append
    for parse, value in zip(state.parsers, values, strict=True):
        if value is None or parse is None or value is UNCHANGED_TOAST:
            append(value)
        else:
            try:
                append(parse(value))  # type: ignore[arg-type]
            except (ValueError, ArithmeticError) as exc:
                column = state.table.columns[len(out)].name
                raise FatalSourceError(
                    f"table {state.name} column {column}: {value!r:.80} cannot be read exactly ({exc})"
                ) from None
    return out


def fill_unchanged(
    state: TableState, after: list[Any], before: list[Any] | None, placeholder: str
) -> tuple[tuple[str, bytes], ...]:
    """Replace unchanged TOAST markers: by the old value when the old row is known, else a placeholder.

    Returns the header naming the columns whose value is not the real one (empty when none).
    """
    unknown: list[str] = []
    for index, value in enumerate(after):
        if value is not UNCHANGED_TOAST:
            continue
        if before is not None and before[index] is not UNCHANGED_TOAST:
            after[index] = before[index]
            continue
        column = state.table.columns[index]
        unknown.append(column.name)
        if isinstance(column.type, StringType | JsonType | TextRepr):
            after[index] = placeholder
        elif isinstance(column.type, BytesType):
            after[index] = placeholder.encode()
        elif column.nullable:
            after[index] = None
        else:
            raise FatalSourceError(
                f"table {state.name} column {column.name}: an unchanged TOASTed value has no placeholder of its "
                f"type; run ALTER TABLE {state.name} REPLICA IDENTITY FULL so the old value is sent"
            )
    if not unknown:
        return ()
    return ((UNCHANGED_HEADER, ",".join(unknown).encode()),)


def value_datum(state: TableState, values: list[Any]) -> dict[str, Any]:
    try:
        return state.value_converter.convert_values(values)
    except DatumError as exc:
        raise FatalSourceError(str(exc)) from None


def key_datum(state: TableState, values: list[Any]) -> dict[str, Any]:
    key_values = [values[i] for i in state.key_index]
    if any(v is None or v is UNCHANGED_TOAST for v in key_values):
        raise FatalSourceError(
            f"table {state.name}: a change arrived without its primary key values (the replica identity is "
            f"another index); run ALTER TABLE {state.name} REPLICA IDENTITY DEFAULT (or FULL)"
        )
    try:
        return state.key_converter.convert_values(key_values)
    except DatumError as exc:
        raise FatalSourceError(str(exc)) from None


class EventMaker:
    """Builds the events of one source in its envelope; one per read()."""

    def __init__(self, envelope: Envelope) -> None:
        self.change = envelope == Envelope.change

    def events(
        self,
        state: TableState,
        op: Op,
        key: dict[str, Any],
        before: dict[str, Any] | None,
        after: dict[str, Any] | None,
        *,
        timestamp_ms: int,
        lsn_text: str,
        commit_ms: int | None,
        snapshot: bool = False,
        xid: str | None = None,
        order: int = 0,
        position: Position | None = None,
        headers: tuple[tuple[str, bytes], ...] = (),
    ) -> list[ChangeEvent]:
        """The event(s) of one change; a delete also gets its tombstone (the only event with `state`)."""
        stream = state.stream
        out: list[ChangeEvent] = []
        if self.change:
            value = change_value(
                op,
                before,
                after,
                state.info,
                position=lsn_text,
                commit_ms=commit_ms,
                snapshot=snapshot,
                transaction_id=xid,
                order=order,
                ts_ms=int(time.time() * 1000),
            )
            out.append(ChangeEvent(stream, key, value, timestamp_ms, None, headers))
        elif op != Op.delete:
            out.append(ChangeEvent(stream, key, after, timestamp_ms, None, headers))
        if op == Op.delete:
            out.append(ChangeEvent(stream, key, None, timestamp_ms, None))
        if position is not None:
            last = out[-1]
            out[-1] = ChangeEvent(last.stream, last.key, last.value, last.timestamp_ms, position, last.headers)
        return out
