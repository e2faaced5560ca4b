"""Tuples (text values from pgoutput or the snapshot) -> Python values in the captured columns' order."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from liberator.capture import Op, PoisonRow, Txn
from liberator.capture.rowerrors import CONVERSION
from liberator.connectors.postgres_wal.pgoutput import UNCHANGED_TOAST, TupleValue
from liberator.connectors.postgres_wal.tables import TableState
from liberator.errors import FatalSourceError
from liberator.schema import BytesType, JsonType, StringType, TextRepr

UNCHANGED_HEADER = "liberator.unchanged_toast"


class UnreadableValue(FatalSourceError):
    """A value of one row that cannot be read exactly: a row error (the source's `on_error` applies), where
    the other errors of this module concern the table's shape and stop the source."""


def poison_row(
    state: TableState,
    op: Op,
    txn: Txn,
    reason: str,
    new: Sequence[TupleValue] | None = None,
    old: Sequence[TupleValue] | None = None,
) -> PoisonRow:
    """The row a change of which could not be read, with its values as the server sent them (text)."""
    return PoisonRow(
        state.name,
        reason,
        on_error=state.captured.on_error,
        op=op,
        after=_raw(state, new),
        before=_raw(state, old),
        position=txn.position,
        timestamp_ms=txn.timestamp_ms,
        kind=CONVERSION,
    )


def _raw(state: TableState, values: Sequence[TupleValue] | None) -> dict[str, Any] | None:
    if values is None:
        return None
    index = state.wire_index
    if index is not None and len(values) > index[-1]:
        values = [values[i] for i in index]
    shown = [None if v is UNCHANGED_TOAST else v for v in values]
    return dict(zip(state.captured.columns, shown, strict=False))


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
                raise UnreadableValue(
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
