"""Configuration of the binlog source (`type: mysql_binlog`)."""

from __future__ import annotations

import fnmatch
import re
from typing import Literal

from pydantic import Field, field_validator

from liberator.config import Duration
from liberator.envelope import Envelope
from liberator.source import SourceConfig

_TABLE = re.compile(r"^[^.\s]+\.[^.\s]+$")


class MySQLBinlogConfig(SourceConfig):
    type: Literal["mysql_binlog"] = "mysql_binlog"
    url: str = Field(description="mysql://user:${PW}@host:port/ (a database in the path is ignored)")
    tables: list[str] = Field(
        min_length=1, description="db.table entries; shell patterns such as db.* or shop.order_* are allowed"
    )
    server_id: int = Field(
        ge=1, le=2**32 - 1, description="replica server id, unique among the server's replicas and readers"
    )
    snapshot: Literal["initial", "never", "initial_only"] = Field(
        "initial", description="initial: read the tables, then stream; never: stream only; initial_only: no stream"
    )
    heartbeat: Duration = Field(10.0, description="how often the stored position moves while captured tables are idle")
    envelope: Envelope = Field(Envelope.change, description="change: before/after/op/source; state: the row")
    resume: Literal["auto", "gtid", "file"] = Field(
        "auto", description="resume by GTID (auto: when the server has GTIDs) or by binlog file/position"
    )
    topic: str = Field("{source}.{schema}.{table}", description="template; also {app}")
    snapshot_chunk: int = Field(5000, ge=1, le=1_000_000, description="rows per primary-key chunk of the snapshot")

    @field_validator("tables")
    @classmethod
    def _qualified(cls, tables: list[str]) -> list[str]:
        for entry in tables:
            if not _TABLE.match(entry):
                raise ValueError(f"{entry!r} must be database.table (patterns such as shop.* are allowed)")
        return tables

    def captures(self, database: str, table: str) -> bool:
        name = f"{database}.{table}"
        return any(fnmatch.fnmatchcase(name, entry) for entry in self.tables)

    def literal_databases(self) -> list[str] | None:
        """The databases named in `tables`, or None when a database part is itself a pattern."""
        databases = {entry.split(".", 1)[0] for entry in self.tables}
        if any(any(ch in db for ch in "*?[") for db in databases):
            return None
        return sorted(databases)
