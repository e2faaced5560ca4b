"""The change envelope (`liberator.envelope`) assembled from pre-encoded parts.

fastavro spends most of an envelope's 40 µs walking the nested dicts of `change_value` and choosing union
branches. In Avro binary a record is the concatenation of its fields, so the envelope is too:

    before | after | op | ts_ms | source{connector name server database table | position commit_ms snapshot}
    | transaction{id | order}

The table's part of `source` is constant (`ChangeWriter` encodes it once), the transaction's part is the
same for every row of a transaction (`change_context`, encoded once per transaction and shared by all its
tables), and the row brings only its op, its before/after bodies (from `RowEncoder`), ts_ms and order.
The bytes are those fastavro writes for `change_value(...)` under `change_schema(...)`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from liberator.avro.binary import NON_NULL, NULL, SMALL, long_bytes, string_bytes
from liberator.avro.wire import frame
from liberator.envelope import Op, SourceInfo
from liberator.errors import SchemaError

_OPS = {op.value: string_bytes(op.value) for op in Op}


@dataclass(frozen=True, slots=True)
class ChangeContext:
    """The envelope's parts that one transaction (or snapshot chunk) shares, encoded once.

    `source_tail` is Source's position, commit_ms and snapshot; `transaction` the Transaction branch with
    its id (the order is written per row), or None for changes outside a transaction.
    """

    source_tail: bytes
    transaction: bytes | None


def change_context(
    *,
    position: str | None = None,
    commit_ms: int | None = None,
    snapshot: bool = False,
    transaction_id: str | None = None,
) -> ChangeContext:
    """The shared part of `change_value`'s keyword arguments of the same names, for `ChangeWriter.write`."""
    try:
        tail = NULL if position is None else NON_NULL + string_bytes(position)
        if commit_ms is not None and commit_ms.__class__ is bool:  # fastavro's long refuses a bool in a union
            raise TypeError(f"{commit_ms!r} is not an integer")
        tail += NULL if commit_ms is None else NON_NULL + long_bytes(commit_ms)
        tail += b"\x01" if snapshot else b"\x00"
        transaction = None if transaction_id is None else NON_NULL + string_bytes(transaction_id)
    except (TypeError, OverflowError) as exc:
        raise SchemaError(f"cannot encode a change envelope's source or transaction: {exc}") from None
    return ChangeContext(tail, transaction)


class ChangeWriter:
    """Writes the change envelopes of one table of one source.

    ``write(op, before, after, context, order, ts_ms)`` returns the bytes of ``change_value(op, before,
    after, info, position=..., commit_ms=..., snapshot=..., transaction_id=..., order=order, ts_ms=ts_ms)``
    under ``change_schema(value_schema(table, ...))``, where `before`/`after` are the bodies `RowEncoder`
    wrote for the table's Value record (not checked: they are copied as they are) and `context` carries the
    other keywords. With `schema_id` the message is framed (Confluent header first).
    """

    def __init__(self, info: SourceInfo, *, schema_id: int | None = None) -> None:
        self.info = info
        self._header = b"" if schema_id is None else frame(schema_id, b"")
        try:
            self._source = b"".join(
                string_bytes(part) for part in (info.connector, info.name, info.server, info.database, info.table)
            )
        except TypeError as exc:
            raise SchemaError(f"cannot encode the source block of {info}: {exc}") from None
        # ts_ms is the same for the rows of one batch (or one millisecond): its varint is kept
        self._ts_cache: tuple[int | None, bytes] = (None, b"")

    def write(
        self,
        op: Op,
        before: bytes | None,
        after: bytes | None,
        context: ChangeContext,
        order: int = 0,
        ts_ms: int | None = None,
    ) -> bytes:
        buf = bytearray(self._header)
        if before is None:
            buf += NULL
        else:
            buf += NON_NULL
            buf += before
        if after is None:
            buf += NULL
        else:
            buf += NON_NULL
            buf += after
        try:
            buf += _OPS[op]
            if ts_ms is None:
                ts_ms = int(time.time() * 1000)
            cached = self._ts_cache  # one tuple, replaced whole: safe between threads
            if cached[0] == ts_ms and ts_ms.__class__ is int:
                buf += cached[1]
            else:
                encoded = long_bytes(ts_ms)
                self._ts_cache = (ts_ms, encoded)
                buf += encoded
            buf += self._source
            buf += context.source_tail
            if context.transaction is None:
                buf += NULL
            else:
                buf += context.transaction
                buf += SMALL[order << 1] if order.__class__ is int and 0 <= order < 8192 else long_bytes(order)
        except (KeyError, TypeError, OverflowError) as exc:
            raise SchemaError(
                f"cannot encode a change envelope of {self.info.database}.{self.info.table}: "
                f"op {op!r}, ts_ms {ts_ms!r}, order {order!r}: {exc!r}"
            ) from None
        return bytes(buf)
