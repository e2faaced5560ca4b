"""The PostgreSQL part of `envelope: debezium`: Debezium's `PostgresSourceInfoStructMaker` fields (3.6.1).

`lsn` is the LSN of the transaction's commit (Debezium writes each change's own LSN, which pgoutput v1 does
not give per row); `sequence` and `xmin` are null, and so are `origin`/`origin_lsn` (replication origins are
not read). A snapshot read has no `txId` and the snapshot's point as `lsn`. `transaction.id` is Debezium's
`<xid>:<lsn>` (docs/envelopes.md).
"""

from __future__ import annotations

from typing import Any

from liberator.capture import CapturedTable, Txn
from liberator.capture.debezium import DebeziumDialect, optional
from liberator.connectors.postgres_wal.position import parse_lsn

FIELDS: tuple[dict[str, Any], ...] = (
    {"name": "schema", "type": "string"},
    {"name": "table", "type": "string"},
    optional("txId", "long"),
    optional("lsn", "long"),
    optional("xmin", "long"),
    optional("origin", "string"),
    optional("origin_lsn", "long"),
)


def postgres_dialect(database: str) -> DebeziumDialect:
    """The dialect of a source reading `database`."""

    def values(table: CapturedTable, txn: Txn) -> dict[str, Any]:
        return {
            "db": database,
            "schema": table.schema_name,
            "table": table.table_name,
            "txId": None if txn.id is None or txn.snapshot else int(txn.id),
            "lsn": None if txn.position is None else parse_lsn(txn.position),
            "xmin": None,
            "origin": None,
            "origin_lsn": None,
        }

    return DebeziumDialect("postgresql", FIELDS, values, transaction_id)


def transaction_id(txn: Txn) -> str:
    lsn = "" if txn.position is None else str(parse_lsn(txn.position))
    return f"{txn.id}:{lsn}"
