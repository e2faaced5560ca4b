"""Transaction metadata: the events of each transaction counted, and its BEGIN and END records.

With `transactions: {topic: ...}` a CDC source publishes Debezium's transaction metadata: a BEGIN record
before the first event of a transaction and an END record, with the number of its events per table, once
every event of it is produced (docs/envelopes.md). Keys and values are Debezium's
`TransactionMetadataKey` / `TransactionMetadataValue` (its `SchemaFactory`, 3.6.1.Final). The same count gives
the Debezium envelope's `transaction {id, total_order, data_collection_order}`.

A transaction is known by its id; transactions arrive one after the other, so one is open at a time: the
connector's commit (`ChangeBatch.committed`) ends it, and so, should a commit never be reported, does the
first event of the next. Tombstones are not events (as in Debezium); snapshot reads belong to no transaction.
A transaction none of whose changes is published (all filtered out) has no BEGIN and no END.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field, model_validator

from liberator.capture.changes import Txn
from liberator.events import ChangeEvent, Stream

if TYPE_CHECKING:
    from liberator.capture.tables import CapturedTable

Append = Callable[[Any], None]

KEY_SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "TransactionMetadataKey",
    "namespace": "io.debezium.connector.common",
    "fields": [{"name": "id", "type": "string"}],
    "connect.version": 1,
    "connect.name": "io.debezium.connector.common.TransactionMetadataKey",
}

_COLLECTION: dict[str, Any] = {
    "type": "record",
    "name": "collection",
    "namespace": "event",
    "fields": [{"name": "data_collection", "type": "string"}, {"name": "event_count", "type": "long"}],
    "connect.version": 1,
    "connect.name": "event.collection",
}

VALUE_SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "TransactionMetadataValue",
    "namespace": "io.debezium.connector.common",
    "fields": [
        {"name": "status", "type": "string"},
        {"name": "id", "type": "string"},
        {"name": "event_count", "type": ["null", "long"], "default": None},
        {"name": "data_collections", "type": ["null", {"type": "array", "items": _COLLECTION}], "default": None},
        {"name": "ts_ms", "type": "long"},
    ],
    "connect.version": 1,
    "connect.name": "io.debezium.connector.common.TransactionMetadataValue",
}


class TransactionTopic(BaseModel):
    """Where a CDC source publishes its transactions' BEGIN and END records."""

    topic: str = Field("{source}.transaction", description="template with {source} and {app}")


class TransactionSettings(BaseModel):
    """The `transactions` setting of the CDC sources (mixed into their configs)."""

    transactions: TransactionTopic | None = Field(
        None,
        description="publish each transaction's BEGIN and END (event counts per table), Debezium's transaction "
        'metadata: {topic: "{source}.transaction"}; needs envelope change or debezium',
    )

    def transaction_topic(self) -> str | None:
        """The CaptureSettings `transactions` template, or None."""
        return None if self.transactions is None else self.transactions.topic

    @model_validator(mode="after")
    def _needs_change_events(self) -> TransactionSettings:
        if self.transactions is not None and str(getattr(self, "envelope", "")) == "state":
            raise ValueError(
                "transactions needs envelope: change or debezium (state records are not counted as a "
                "transaction's events); set envelope: change, or remove transactions"
            )
        return self


def transaction_stream(topic: str) -> Stream:
    return Stream(topic, KEY_SCHEMA, VALUE_SCHEMA, "transactions")


@dataclass
class _Open:
    txn_id: str  # the connector's id of the transaction (Txn.id)
    id: str  # the id published (Debezium's form with envelope: debezium)
    ms: int
    stream: Stream | None
    total: int = 0
    tables: dict[str, int] = field(default_factory=dict)


class TransactionCounter:
    """Counts the events of the open transaction, and publishes its BEGIN and END on the tables'
    transaction stream (if any).

    `append` is where records go (the Eventifier points it at the batch's records before each batch), `event`
    encodes a ChangeEvent as the runtime does.
    """

    def __init__(self, event: Callable[[ChangeEvent], tuple[Any, Any]]) -> None:
        self._event = event
        self.append: Append = lambda record: None
        self.open: _Open | None = None
        self.events = 0  # events counted ever: what `undo` takes back

    def counted(self, txn: Txn, table: CapturedTable) -> tuple[str, int, int] | None:
        """One more event of `table` in `txn`: (transaction id, total order, order in the table), or None
        outside a transaction (snapshot reads). The first event of a transaction is preceded by its BEGIN."""
        txn_id = txn.id
        if txn_id is None or txn.snapshot:
            return None
        state = self.open
        if state is None or state.txn_id != txn_id:
            if state is not None:
                self._end(state)  # its commit was not reported: the next transaction's first event ends it
            ms = txn.commit_ms if txn.commit_ms is not None else txn.timestamp_ms
            state = self.open = _Open(txn_id, table.transaction_id(txn) or txn_id, ms, table.transactions)
            self._publish(state, "BEGIN")
        state.total += 1
        self.events += 1
        order = state.tables.get(table.name, 0) + 1
        state.tables[table.name] = order
        return state.id, state.total, order

    def undo(self, opened: _Open | None, events: int, table: str) -> None:
        """Take back what one change of `table` counted since `events` were counted and `opened` was the open
        transaction: its records were dropped (a poison row), and with them a BEGIN (and the END before it)
        that its first event published."""
        taken = self.events - events
        if taken == 0:
            return
        self.events = events
        state = self.open
        if state is not opened:
            self.open = opened  # the transaction it began is not begun; the one it ended is still open
            return
        assert state is not None
        state.total -= taken
        left = state.tables[table] - taken
        if left:
            state.tables[table] = left
        else:
            del state.tables[table]

    def committed(self, txns: Iterable[Txn]) -> None:
        """The transactions whose commit was read: END for the open one among them."""
        for txn in txns:
            state = self.open
            if state is not None and state.txn_id == txn.id:
                self._end(state)

    def restart(self) -> None:
        """The source reads again from its last position: an open transaction is read again from its start."""
        self.open = None

    def _end(self, state: _Open) -> None:
        self.open = None
        self._publish(state, "END")

    def _publish(self, state: _Open, status: str) -> None:
        stream = state.stream
        if stream is None:
            return
        value: dict[str, Any] = {
            "status": status,
            "id": state.id,
            "event_count": None,
            "data_collections": None,
            "ts_ms": state.ms,
        }
        if status == "END":
            value["event_count"] = state.total
            value["data_collections"] = [{"data_collection": t, "event_count": n} for t, n in state.tables.items()]
        key, encoded = self._event(ChangeEvent(stream, {"id": state.id}, value, state.ms, None))
        self.append((stream.topic, key, encoded, state.ms, None))
