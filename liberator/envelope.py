"""The two value shapes of CDC sources: the change envelope and the row state.

`envelope: change` (the CDC default) wraps the row images in a record like Debezium's, so consumers that
know that shape feel at home::

    Envelope {
      before: null | Value          # the row before the change (updates, deletes; null for inserts/reads)
      after: null | Value           # the row after the change (null for deletes)
      op: string                    # c insert, u update, d delete, r snapshot read, t truncate
      ts_ms: long                   # when liberator made the event (wall clock, ms)
      source: Source {connector, name, server, database, table, position, commit_ms, snapshot}
      transaction: null | Transaction {id: string, order: long}   # order: 1-based place in the transaction
    }

The schema carries ``"liberator.envelope": "change"`` so sinks recognise it without guessing.
`envelope: state` publishes the Value record itself (the row after the change) and a delete as a
tombstone only. With either envelope a delete is followed by a tombstone on the same key, so compacted
topics forget deleted rows. `envelope: debezium` is Debezium's envelope itself, for consumers that already
read it (liberator.capture.debezium, docs/envelopes.md).
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass
from typing import Any

PROP_ENVELOPE = "liberator.envelope"


class Envelope(enum.StrEnum):
    change = "change"
    state = "state"
    debezium = "debezium"  # Debezium's own envelope, field for field (docs/envelopes.md, liberator.capture.debezium)


class Op(enum.StrEnum):
    create = "c"
    update = "u"
    delete = "d"
    read = "r"  # a row read by the snapshot
    truncate = "t"


SOURCE_FIELDS: list[dict[str, Any]] = [
    {"name": "connector", "type": "string"},  # the source type: mysql_binlog, postgres_wal
    {"name": "name", "type": "string"},  # the source's name in the config
    {"name": "server", "type": "string"},  # server id / host:port the change was read from
    {"name": "database", "type": "string"},  # MySQL database, PostgreSQL schema
    {"name": "table", "type": "string"},
    # The source position of the change as text (GTID, binlog file:pos, LSN); null inside a transaction
    # when the source can only resume at transaction ends.
    {"name": "position", "type": ["null", "string"], "default": None},
    {"name": "commit_ms", "type": ["null", "long"], "default": None},  # commit time of the transaction
    {"name": "snapshot", "type": "boolean", "default": False},
]

TRANSACTION_FIELDS: list[dict[str, Any]] = [
    {"name": "id", "type": "string"},
    {"name": "order", "type": "long"},
]


def change_schema(value_schema: dict[str, Any]) -> dict[str, Any]:
    """The change envelope around a table's Value record (as made by `liberator.avro.value_schema`)."""
    namespace = value_schema.get("namespace", "")
    value_name = value_schema["name"]
    schema: dict[str, Any] = {"type": "record", "name": "Envelope"}
    if namespace:
        schema["namespace"] = namespace
    schema[PROP_ENVELOPE] = Envelope.change.value
    schema["fields"] = [
        {"name": "before", "type": ["null", value_schema], "default": None},
        {"name": "after", "type": ["null", value_name], "default": None},
        {"name": "op", "type": "string"},
        {"name": "ts_ms", "type": "long"},
        {"name": "source", "type": {"type": "record", "name": "Source", "fields": SOURCE_FIELDS}},
        {
            "name": "transaction",
            "type": ["null", {"type": "record", "name": "Transaction", "fields": TRANSACTION_FIELDS}],
            "default": None,
        },
    ]
    return schema


def is_change_schema(schema: Any) -> bool:
    """Whether a (parsed JSON) value schema is liberator's change envelope."""
    if not isinstance(schema, dict) or schema.get("type") != "record":
        return False
    if schema.get(PROP_ENVELOPE) == Envelope.change.value:
        return True
    names = {f.get("name") for f in schema.get("fields", [])}
    return {"before", "after", "op"} <= names


@dataclass(frozen=True, slots=True)
class SourceInfo:
    """The constant part of `source` for one table of one source."""

    connector: str
    name: str
    server: str
    database: str
    table: str


def change_value(
    op: Op,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    info: SourceInfo,
    *,
    position: str | None = None,
    commit_ms: int | None = None,
    snapshot: bool = False,
    transaction_id: str | None = None,
    order: int = 0,
    ts_ms: int | None = None,
) -> dict[str, Any]:
    """A change-envelope datum; `before`/`after` are Value datums (from a DatumConverter)."""
    return {
        "before": before,
        "after": after,
        "op": op.value,
        "ts_ms": int(time.time() * 1000) if ts_ms is None else ts_ms,
        "source": {
            "connector": info.connector,
            "name": info.name,
            "server": info.server,
            "database": info.database,
            "table": info.table,
            "position": position,
            "commit_ms": commit_ms,
            "snapshot": snapshot,
        },
        "transaction": None if transaction_id is None else {"id": transaction_id, "order": order},
    }
