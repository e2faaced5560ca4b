from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from liberator.config import Duration
from liberator.source import SourceConfig


class TableEntry(BaseModel):
    """One captured table, view or query; fields left out take the source's defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    table: str | None = None  # schema.table, or table in the default schema
    query: str | None = None  # a SELECT whose result is captured like a table
    name: str | None = None  # the stream's name (required with query)
    key: list[str] | None = None  # default: the primary key (required with query)
    cursor: list[str] | None = None
    topic: str | None = None
    exclude: list[str] = []  # columns left out of the events

    @model_validator(mode="after")
    def _one_of_table_or_query(self) -> TableEntry:
        if (self.table is None) == (self.query is None):
            raise ValueError("give exactly one of `table` or `query`")
        if self.query is not None and (not self.name or not self.key):
            raise ValueError("a `query` needs a `name` for its stream and the `key` columns of its rows")
        return self


class QuerySourceConfig(SourceConfig):
    type: Literal["query"] = "query"
    url: str = Field(description="SQLAlchemy URL of the database")
    tables: list[TableEntry] = Field(min_length=1)
    cursor: list[str] = Field(
        min_length=1, description="incremental columns: a timestamp (or increasing number), then tie-breakers"
    )
    poll_interval: Duration = 1.0
    # Rows newer than the database's now() minus this wait for a later poll, so a transaction that
    # commits late with an older timestamp is still read.
    safety_delay: Duration = 2.0
    batch_size: int = Field(5000, ge=1, le=1_000_000)
    topic: str = "{source}.{schema}.{table}"
    schema_refresh: Duration = 30.0

    @model_validator(mode="before")
    @classmethod
    def _tables_as_entries(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("tables"), list):
            data = dict(data)
            data["tables"] = [{"table": t} if isinstance(t, str) else t for t in data["tables"]]
        return data
