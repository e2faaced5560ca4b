"""What a connector hands the core: row changes, grouped in batches, with the position after each batch.

A connector decodes its log or its queries into `RowChange`s -- which captured table, which operation, the
row's values before and after in the table's column order -- and yields them in a `ChangeBatch` together
with the position it stands at once the batch (and everything before it) is in Kafka. The core turns the
changes into records (keys, envelopes, tombstones, schemas) and the runtime publishes them and stores the
position. What the rows of one transaction share (its id, commit time, source position) is one `Txn` object,
so it is encoded once per transaction, not once per row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Union

from liberator.envelope import Op
from liberator.positions import Position

__all__ = ["BatchItem", "ChangeBatch", "Op", "RowChange", "Txn"]

if TYPE_CHECKING:
    from liberator.capture.rowerrors import PoisonRow
    from liberator.capture.tables import CapturedTable
    from liberator.events import ChangeEvent


class Txn:
    """What the changes of one transaction (or one snapshot read) share.

    `position` is the source's own spelling of where the changes were read (an LSN, a binlog file:pos), shown
    in the change envelope's `source.position`; `timestamp_ms` is the Kafka record time of its records (the
    commit time, or the time of reading for snapshots and polls). `encoded` is the core's cache of this
    transaction's encoded envelope parts, and `order` the number of envelopes made of it so far (each gets the
    next `transaction.order`): a Txn must not be changed once a change that refers to it is yielded.

    `continues`: the previous part of the same transaction, where one transaction shows several positions (a
    MySQL transaction's rows events each have their own binlog position): this part's envelopes number on
    from the last of that one's, as if both were one Txn.

    `native`: what else the connector knows of where the changes were read, in its own form, for its part of
    the Debezium envelope's `source` block (liberator.capture.debezium.DebeziumDialect). `snapshot_last`: the
    last row of the snapshot (Debezium's `source.snapshot: last`; see `mark_snapshot_end`).
    """

    __slots__ = (
        "commit_ms",
        "continues",
        "encoded",
        "id",
        "native",
        "order",
        "position",
        "snapshot",
        "snapshot_incremental",
        "snapshot_last",
        "timestamp_ms",
    )

    def __init__(
        self,
        timestamp_ms: int,
        *,
        id: str | None = None,
        position: str | None = None,
        commit_ms: int | None = None,
        snapshot: bool = False,
        continues: Txn | None = None,
        native: Any = None,
    ) -> None:
        self.timestamp_ms = timestamp_ms
        self.id = id
        self.position = position
        self.commit_ms = commit_ms
        self.snapshot = snapshot
        self.order = 0
        self.encoded: Any = None
        self.continues = continues
        self.native = native
        self.snapshot_last = False
        self.snapshot_incremental = False  # a snapshot on demand, read while streaming (Debezium's `incremental`)

    def take_order(self) -> None:
        """Start numbering where the parts this one continues ended (the core calls it before this part's first
        envelope); the link is dropped then, so a long transaction does not keep its parts alive."""
        parts = []
        part = self
        while part.continues is not None:  # parts never eventified (no changes of theirs) add nothing
            parts.append(part)
            part = part.continues
        for earlier in parts:
            earlier.order, earlier.continues = part.order, None

    def __repr__(self) -> str:
        return f"Txn(id={self.id!r}, position={self.position!r}, commit_ms={self.commit_ms}, snapshot={self.snapshot})"


class RowChange:
    """One change of one row: the values are in the captured table's column order (`CapturedTable.columns`).

    `before` is the old row where the source knows it (updates and deletes with a full before-image), `after`
    the new row (creates, updates, reads); a delete without a before-image carries the key values in `key`.
    A truncate has neither row nor key.
    """

    __slots__ = ("after", "before", "headers", "key", "op", "table", "txn")

    def __init__(
        self,
        table: CapturedTable,
        op: Op,
        txn: Txn,
        before: Sequence[Any] | None = None,
        after: Sequence[Any] | None = None,
        key: Sequence[Any] | None = None,
        headers: tuple[tuple[str, bytes], ...] = (),
    ) -> None:
        self.table = table
        self.op = op
        self.txn = txn
        self.before = before
        self.after = after
        self.key = key
        self.headers = headers

    def key_values(self) -> Sequence[Any]:
        """The key columns' values, from the key given, else the newest row image."""
        if self.key is not None:
            return self.key
        image = self.after if self.after is not None else self.before
        if image is None:
            raise ValueError(f"a {self.op.name} of {self.table.name} carries no row and no key")
        return [image[i] for i in self.table.key_index]

    def __repr__(self) -> str:
        return f"RowChange({self.table.name} {self.op.value} before={self.before!r} after={self.after!r})"


# What a batch holds: row changes, a connector's own records, and rows it could not turn into either.
BatchItem = Union["RowChange", "ChangeEvent", "PoisonRow"]


@dataclass(slots=True)
class ChangeBatch:
    """Changes to publish in order, and where the source stands once they (and all before them) are in Kafka.

    `position` None: the batch ends inside a transaction, where the source cannot resume; the position comes
    with a later batch or Checkpoint. Besides row changes, `items` may hold records a connector made itself
    (`ChangeEvent`s: outbox domain events), and rows a connector could not turn into events itself (`PoisonRow`s,
    handled by the source's on_error policy); all are handled in `items` order.

    `committed`: the transactions whose commit the connector read with this batch (their changes are in it or
    in earlier batches), for the transaction topic's END records; a connector fills it only when its
    `CaptureSettings.tracks_transactions` asks for it.
    """

    items: list[BatchItem] = field(default_factory=list)
    position: Position | None = None
    committed: list[Txn] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.items)
