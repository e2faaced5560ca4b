from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from liberator.capture.headers import HeaderRule
from liberator.capture.hooks import HookRule
from liberator.capture.masks import MaskRule
from liberator.capture.moves import OnIncompatible
from liberator.capture.routes import RouteRule
from liberator.capture.rowerrors import OnError
from liberator.config import DatabaseTimeouts, Duration, published_names, snapshot_workers_field
from liberator.source import SourceConfig


class TableEntry(BaseModel):
    """One captured table, view or query; fields left out take the source's defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    table: str | None = Field(None, description="schema.table, or a table (or view) in the default schema")
    query: str | None = Field(None, description="a SELECT captured like a table (needs name and key)")
    name: str | None = Field(None, description="the stream's name; required with query")
    key: list[str] | None = Field(None, description="key columns; default: the primary key")
    cursor: list[str] | None = Field(None, description="overrides the source's cursor")
    topic: str | None = Field(None, description="overrides the source's topic template")
    exclude: list[str] = Field([], description="columns left out of the events")
    include: list[str] | None = Field(
        None, description="the only columns published (key and cursor columns are read anyway); absent: all"
    )
    mask: dict[str, MaskRule] = Field(
        {}, description="column values hidden: hash (SHA-256 with mask_salt), redact, null, {truncate: N}"
    )
    filter: str | None = Field(
        None, description="the rows published, as an expression over the columns (docs/transforms.md)"
    )
    rename: dict[str, str] = Field({}, description="columns published under another name: {email: contact}")
    on_error: OnError | None = Field(
        None, description="overrides the source's on_error for this entry's rows (stop, dead_letter, skip)"
    )
    on_incompatible: OnIncompatible | None = Field(
        None, description="overrides the source's on_incompatible for this entry (stop, new_topic)"
    )
    route: RouteRule | None = Field(
        None, description="the topic by template or by a column's value (docs/transforms.md); not with `topic`"
    )
    headers: HeaderRule | None = Field(None, description="Kafka record headers: {static: {...}, columns: {...}}")
    hook: HookRule | None = Field(None, description="a Python function over each row change (docs/transforms.md)")

    @field_validator("rename")
    @classmethod
    def _published_names(cls, value: dict[str, str]) -> dict[str, str]:
        return published_names(value)

    @model_validator(mode="after")
    def _one_of_table_or_query(self) -> TableEntry:
        if (self.table is None) == (self.query is None):
            raise ValueError("give exactly one of `table` or `query`")
        if self.query is not None and (not self.name or not self.key):
            raise ValueError("a `query` needs a `name` for its stream and the `key` columns of its rows")
        if self.topic is not None and self.route is not None:
            raise ValueError("give `topic` or `route`, not both (route: {topic: ...} is the same as topic: ...)")
        return self


class QuerySourceConfig(SourceConfig, DatabaseTimeouts):
    type: Literal["query"] = "query"
    url: str = Field(description="SQLAlchemy URL of the database")
    tables: list[TableEntry] = Field(min_length=1)
    cursor: list[str] = Field(
        min_length=1, description="incremental columns: a timestamp (or increasing number), then tie-breakers"
    )
    poll_interval: Duration = Field(1.0, description="pause between polls once caught up")
    # Rows newer than the database's now() minus this wait for a later poll, so a transaction that
    # commits late with an older timestamp is still read.
    safety_delay: Duration = Field(2.0, description="rows newer than the database's now() minus this wait")
    batch_size: int = Field(5000, ge=1, le=1_000_000, description="rows per keyset page")
    snapshot_workers: int = snapshot_workers_field(
        "pages read at once, each on its own connection: while a table is far behind (full pages in a row) and "
        "per step of a snapshot on demand; rows go out in the order and with the positions of one reader "
        "(docs/snapshots.md)"
    )
    topic: str = Field("{source}.{schema}.{table}", description="template; also {app}")
    mask_salt: str | None = Field(None, description="the secret salt of `hash` masks; use ${ENV} or ${file:...}")
    schema_refresh: Duration = Field(30.0, description="how often table shapes are re-read")
    deletes: Literal["ignore", "reconcile"] = Field(
        "ignore",
        description="hard deletes, which polling cannot see: `reconcile` compares the keys each topic holds with "
        "the table's every reconcile_interval and publishes a tombstone for each vanished one (docs/deletes.md)",
    )
    reconcile_interval: Duration = Field(300.0, description="with `deletes: reconcile`: how often keys are compared")
    signal_table: str | None = Field(
        None,
        description="[schema.]table with columns id, type, data (as Debezium's signal table), read on each poll: a "
        "new row of type execute-snapshot asks for a snapshot (docs/snapshots.md)",
    )

    @model_validator(mode="before")
    @classmethod
    def _tables_as_entries(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("tables"), list):
            data = dict(data)
            data["tables"] = [{"table": t} if isinstance(t, str) else t for t in data["tables"]]
        return data
