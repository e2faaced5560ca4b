"""`envelope: debezium`: the value records Debezium 3.x writes with the Avro converter, field for field.

Consumers written for Debezium read these records unchanged (docs/envelopes.md). The shapes are Debezium's
(read from its sources, release 3.6.1.Final: `Envelope`, `SchemaFactory`, `AbstractSourceInfoStructMaker`
and each connector's `SourceInfoStructMaker`), as Confluent's AvroConverter turns Connect schemas into Avro:
a Connect struct named `a.b.C` becomes the record `C` in namespace `a.b` (with `connect.name`), an optional
field the union `["null", T]` with default null, and an optional field with a default the union `[T, "null"]`
with that default::

    <prefix>.<schema>.<table>.Envelope {
      before: null | <prefix>.<schema>.<table>.Value
      after: null | Value
      source: io.debezium.connector.<connector>.Source {version, connector, name, ts_ms, snapshot, db,
              sequence, ts_us, ts_ns, <the connector's fields>}
      transaction: null | event.block {id, total_order, data_collection_order}
      op: string; ts_ms, ts_us, ts_ns: null | long
    }

The prefix is the source's name (Debezium's `topic.prefix`). The core builds the envelope once for every
connector; a connector supplies only its `DebeziumDialect`: its name, its fields of `source` and their
values for a change.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from liberator import __version__
from liberator.capture.changes import ChangeBatch, Op, RowChange, Txn
from liberator.envelope import PROP_ENVELOPE, Envelope

if TYPE_CHECKING:
    from liberator.capture.tables import CapturedTable
    from liberator.events import SourceItem

# Debezium's SnapshotRecord values, lower-cased (its schema allows all; liberator writes true, last and false).
SNAPSHOT_VALUES = (
    "true",
    "first",
    "first_in_data_collection",
    "last_in_data_collection",
    "last",
    "false",
    "incremental",
)
VERSION = f"liberator-{__version__}"  # source.version: Debezium writes its own release there


def optional(name: str, avro_type: Any) -> dict[str, Any]:
    """An optional Connect field as the AvroConverter writes it."""
    return {"name": name, "type": ["null", avro_type], "default": None}


def _snapshot_field() -> dict[str, Any]:
    enum = {
        "type": "string",
        "connect.version": 1,
        "connect.parameters": {"allowed": ",".join(SNAPSHOT_VALUES)},
        "connect.default": "false",
        "connect.name": "io.debezium.data.Enum",
    }
    return {"name": "snapshot", "type": [enum, "null"], "default": "false"}


# SchemaFactory.sourceInfoSchemaBuilder(): the fields every connector's source block starts with.
COMMON_SOURCE_FIELDS: tuple[dict[str, Any], ...] = (
    {"name": "version", "type": "string"},
    {"name": "connector", "type": "string"},
    {"name": "name", "type": "string"},
    {"name": "ts_ms", "type": "long"},
    _snapshot_field(),
    {"name": "db", "type": "string"},
    optional("sequence", "string"),
    optional("ts_us", "long"),
    optional("ts_ns", "long"),
)


@dataclass(frozen=True)
class DebeziumDialect:
    """What one connector adds to the Debezium envelope.

    `connector` is Debezium's name for it (postgresql, mysql: the Source record's namespace
    `io.debezium.connector.<connector>` and `source.connector`); `fields` its fields of `source` after the
    common ones; `values(table, txn)` their values, with `db`, for the changes of `txn` to `table`;
    `transaction_id(txn)` the `transaction.id` (and transaction topic key) Debezium gives the transaction.
    """

    connector: str
    fields: tuple[dict[str, Any], ...]
    values: Callable[[CapturedTable, Txn], dict[str, Any]]
    transaction_id: Callable[[Txn], str]


def source_schema(dialect: DebeziumDialect) -> dict[str, Any]:
    name = f"io.debezium.connector.{dialect.connector}.Source"
    return {
        "type": "record",
        "name": "Source",
        "namespace": f"io.debezium.connector.{dialect.connector}",
        "fields": [*COMMON_SOURCE_FIELDS, *dialect.fields],
        "connect.version": 1,
        "connect.name": name,
    }


TRANSACTION_BLOCK: dict[str, Any] = {
    "type": "record",
    "name": "block",
    "namespace": "event",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "total_order", "type": "long"},
        {"name": "data_collection_order", "type": "long"},
    ],
    "connect.version": 1,
    "connect.name": "event.block",
}


def debezium_schema(value_schema: dict[str, Any], dialect: DebeziumDialect) -> dict[str, Any]:
    """The Envelope around a table's Value record (named in the `<prefix>.<schema>.<table>` namespace)."""
    namespace = value_schema.get("namespace", "")
    value = dict(value_schema, **{"connect.name": f"{namespace}.Value"})
    schema: dict[str, Any] = {"type": "record", "name": "Envelope", "namespace": namespace}
    schema[PROP_ENVELOPE] = Envelope.debezium.value
    schema["fields"] = [
        {"name": "before", "type": ["null", value], "default": None},
        {"name": "after", "type": ["null", value_schema["name"]], "default": None},
        {"name": "source", "type": source_schema(dialect)},
        optional("transaction", TRANSACTION_BLOCK),
        {"name": "op", "type": "string"},
        optional("ts_ms", "long"),
        optional("ts_us", "long"),
        optional("ts_ns", "long"),
    ]
    schema["connect.version"] = 2  # Envelope.SCHEMA_VERSION
    schema["connect.name"] = f"{namespace}.Envelope"
    return schema


def named_key(key_schema: dict[str, Any]) -> dict[str, Any]:
    """The Key record with Debezium's `connect.name` (`<prefix>.<schema>.<table>.Key`)."""
    return dict(key_schema, **{"connect.name": f"{key_schema.get('namespace', '')}.Key"})


def snapshot_value(txn: Txn) -> str:
    if not txn.snapshot:
        return "false"
    if txn.snapshot_incremental:
        return "incremental"
    return "last" if txn.snapshot_last else "true"


def source_block(dialect: DebeziumDialect, source: str, table: CapturedTable, txn: Txn) -> dict[str, Any]:
    """`source` for the changes of `txn` to `table`: the common fields, then the connector's."""
    ts_ms = txn.commit_ms if txn.commit_ms is not None else txn.timestamp_ms
    block: dict[str, Any] = {
        "version": VERSION,
        "connector": dialect.connector,
        "name": source,
        "ts_ms": ts_ms,
        "snapshot": snapshot_value(txn),
        "db": "",
        "sequence": None,
        "ts_us": ts_ms * 1000,
        "ts_ns": ts_ms * 1_000_000,
    }
    block.update(dialect.values(table, txn))
    return block


def debezium_value(
    op: Op,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    source: dict[str, Any],
    transaction: dict[str, Any] | None,
    ts_ms: int,
) -> dict[str, Any]:
    """A Debezium envelope datum; `before`/`after` are Value datums, `ts_ms` when liberator made it."""
    return {
        "before": before,
        "after": after,
        "source": source,
        "transaction": transaction,
        "op": op.value,
        "ts_ms": ts_ms,
        "ts_us": ts_ms * 1000,
        "ts_ns": ts_ms * 1_000_000,
    }


def mark_snapshot_end(items: Iterator[SourceItem], stopped: Callable[[], bool]) -> Iterator[SourceItem]:
    """A snapshot's items with its last row read marked `snapshot_last` (Debezium's `snapshot: last`).

    Which row is last is known only when the snapshot ends, so the newest batch of reads is held back, with
    whatever the snapshot yields after it (its checkpoints stay behind it), until the next batch of reads or
    the end; a snapshot that stopped early marks nothing.
    """
    held: list[SourceItem] = []
    for item in items:
        if isinstance(item, ChangeBatch) and any(c.__class__ is RowChange and c.op is Op.read for c in item.items):
            yield from held
            held = [item]
        elif held:
            held.append(item)
        else:
            yield item
    if held and not stopped():
        first = held[0]
        assert isinstance(first, ChangeBatch)
        _mark_last(first)
    yield from held


def _mark_last(batch: ChangeBatch) -> None:
    for place in range(len(batch.items) - 1, -1, -1):
        change = batch.items[place]
        if isinstance(change, RowChange) and change.op is Op.read:
            read = change.txn
            # Its own Txn (one is shared by a whole chunk), numbering on from the chunk's (`continues`).
            last = Txn(
                read.timestamp_ms,
                id=read.id,
                position=read.position,
                commit_ms=read.commit_ms,
                snapshot=True,
                continues=read,
                native=read.native,
            )
            last.snapshot_last = True
            batch.items[place] = RowChange(change.table, Op.read, last, after=change.after, headers=change.headers)
            return
