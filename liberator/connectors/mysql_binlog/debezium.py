"""The MySQL/MariaDB part of `envelope: debezium`: Debezium's `BinlogSourceInfoStructMaker` fields (3.6.1).

`file`/`pos` are the binlog position of the change's rows event (of the snapshot's point for reads),
`server_id` the id of the server that wrote the event and `gtid` its transaction's GTID (both from
`Txn.native`: `(server_id, gtid)`; a snapshot read has 0 and null, as Debezium's); `row` is 0 (the row's
place in its event is not kept), `thread` and `query` are null. `transaction.id` is the GTID, or the binlog
position of the transaction's first rows event without GTIDs (docs/envelopes.md).
"""

from __future__ import annotations

from typing import Any

from liberator.capture import CapturedTable, Txn
from liberator.capture.debezium import DebeziumDialect, optional

FIELDS: tuple[dict[str, Any], ...] = (
    optional("table", "string"),
    {"name": "server_id", "type": "long"},
    optional("gtid", "string"),
    {"name": "file", "type": "string"},
    {"name": "pos", "type": "long"},
    {"name": "row", "type": "int"},
    optional("thread", "long"),
    optional("query", "string"),
)


def _values(table: CapturedTable, txn: Txn) -> dict[str, Any]:
    server_id, gtid = txn.native if txn.native is not None else (0, None)
    file, _, pos = (txn.position or "").rpartition(":")
    return {
        "db": table.schema_name,
        "table": table.table_name,
        "server_id": server_id,
        "gtid": gtid,
        "file": file,
        "pos": int(pos) if pos.isdigit() else 0,
        "row": 0,
        "thread": None,
        "query": None,
    }


def _transaction_id(txn: Txn) -> str:
    return txn.id or ""


MYSQL = DebeziumDialect("mysql", FIELDS, _values, _transaction_id)
