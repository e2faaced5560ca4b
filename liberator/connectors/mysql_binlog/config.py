"""Configuration of the binlog source (`type: mysql_binlog`)."""

from __future__ import annotations

import fnmatch
import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from liberator.capture.moves import TableIncompatiblePolicies
from liberator.capture.rowerrors import TableErrorPolicies
from liberator.capture.transforms import TableTransforms
from liberator.capture.txmeta import TransactionSettings
from liberator.config import DatabaseTimeouts, Duration, SnapshotWorkers
from liberator.envelope import Envelope
from liberator.outbox import OutboxRouting
from liberator.source import SourceConfig

_TABLE = re.compile(r"^[^.\s]+\.[^.\s]+$")
_PATTERN = re.compile(r"[*?\[]")


class BinlogOutboxConfig(OutboxRouting):
    """Domain events from the binlog: each row inserted into the outbox table is one event.

    The routing rules (columns, topic, payload, on_invalid...) are the outbox source's (docs/outbox.md).
    Updates and deletes of outbox rows are ignored, so the application may delete a row right after inserting it.
    """

    table: str = Field(description="database.table of the outbox table: each inserted row is one domain event")

    @field_validator("table")
    @classmethod
    def _one_table(cls, table: str) -> str:
        if not _TABLE.match(table) or _PATTERN.search(table):
            raise ValueError(f"{table!r} must be one database.table (no patterns)")
        return table


class MySQLBinlogConfig(
    SourceConfig,
    DatabaseTimeouts,
    SnapshotWorkers,
    TableTransforms,
    TableErrorPolicies,
    TableIncompatiblePolicies,
    TransactionSettings,
):
    type: Literal["mysql_binlog"] = "mysql_binlog"
    url: str = Field(description="mysql://user:${PW}@host:port/ (a database in the path is ignored)")
    tables: list[str] = Field(
        min_length=1, description="db.table entries; shell patterns such as db.* or shop.order_* are allowed"
    )
    future_tables: list[str] = Field(
        [],
        description="db.table entries or patterns for tables that may not exist yet: captured like `tables` "
        "(tables created later from their first row), but matching no table at start is not an error",
    )
    server_id: int = Field(
        ge=1, le=2**32 - 1, description="replica server id, unique among the server's replicas and readers"
    )
    snapshot: Literal["initial", "never", "initial_only"] = Field(
        "initial", description="initial: read the tables, then stream; never: stream only; initial_only: no stream"
    )
    heartbeat: Duration = Field(10.0, description="how often the stored position moves while captured tables are idle")
    envelope: Envelope = Field(
        Envelope.change,
        description="change: before/after/op/source records; state: the row itself; debezium: Debezium's "
        "envelope, field for field (docs/envelopes.md)",
    )
    resume: Literal["auto", "gtid", "file"] = Field(
        "auto", description="resume by GTID (auto: when the server has GTIDs) or by binlog file/position"
    )
    topic: str = Field("{source}.{schema}.{table}", description="template; also {app}")
    snapshot_chunk: int = Field(5000, ge=1, le=1_000_000, description="rows per primary-key chunk of the snapshot")
    outbox: BinlogOutboxConfig | None = Field(
        None, description="publish rows inserted into this outbox table as domain events (not as row changes)"
    )
    truncate: Literal["warn", "fail", "publish"] = Field(
        "warn",
        description="TRUNCATE of a captured table: log a warning and go on, stop the source, or publish an "
        "op 't' change event with a null key (change envelope only)",
    )
    signal_table: str | None = Field(
        None,
        description="database.table with columns id, type, data (as Debezium's signal table): an inserted row of "
        "type execute-snapshot asks for an incremental or blocking snapshot (docs/snapshots.md)",
    )

    @field_validator("signal_table")
    @classmethod
    def _one_signal_table(cls, table: str | None) -> str | None:
        if table is not None and (not _TABLE.match(table) or _PATTERN.search(table)):
            raise ValueError(f"{table!r} must be one database.table (no patterns)")
        return table

    @model_validator(mode="after")
    def _truncate_needs_change_envelope(self) -> MySQLBinlogConfig:
        if self.truncate == "publish" and self.envelope is Envelope.state:
            raise ValueError(
                "truncate: publish needs envelope: change (a state record cannot say 'truncated'); "
                "set envelope: change or truncate: warn"
            )
        return self

    @model_validator(mode="after")
    def _exclude_captured_tables(self) -> MySQLBinlogConfig:
        named = [
            *self.transformed_tables(),
            *(("on_error_tables", t) for t in self.on_error_tables),
            *(("on_incompatible_tables", t) for t in self.on_incompatible_tables),
        ]
        for field_name, entry in named:
            self._captured_entry(field_name, entry)
        return self

    def _captured_entry(self, field_name: str, entry: str) -> None:
        if not _TABLE.match(entry) or _PATTERN.search(entry):
            raise ValueError(f"{field_name}: {entry!r} must be one database.table (no patterns)")
        database, table = entry.split(".", 1)
        if not self.captures(database, table):
            raise ValueError(
                f"{field_name}: {entry} is not a captured table; name a table that `tables` (or `future_tables`) "
                "captures, or remove the entry"
            )

    @field_validator("tables", "future_tables")
    @classmethod
    def _qualified(cls, tables: list[str]) -> list[str]:
        for entry in tables:
            if not _TABLE.match(entry):
                raise ValueError(f"{entry!r} must be database.table (patterns such as shop.* are allowed)")
        return tables

    def captures(self, database: str, table: str) -> bool:
        """Whether the table's row changes are published (not the outbox's: domain events; nor the signal table's)."""
        name = f"{database}.{table}"
        if (self.outbox is not None and name == self.outbox.table) or name == self.signal_table:
            return False
        return any(fnmatch.fnmatchcase(name, entry) for entry in (*self.tables, *self.future_tables))

    def literal_databases(self) -> list[str] | None:
        """The databases named in `tables`, or None when a database part is itself a pattern."""
        databases = {entry.split(".", 1)[0] for entry in (*self.tables, *self.future_tables)}
        if self.outbox is not None:
            databases.add(self.outbox.table.split(".", 1)[0])
        if self.signal_table is not None:
            databases.add(self.signal_table.split(".", 1)[0])
        if any(any(ch in db for ch in "*?[") for db in databases):
            return None
        return sorted(databases)
