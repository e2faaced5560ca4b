"""`type: sql`: the SQL sink's configuration."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from liberator.config import DatabaseTimeouts, Duration
from liberator.sink import SinkConfig


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BatchConfig(_Model):
    """When a batch is written: whichever limit is reached first."""

    size: int = Field(1000, ge=1, le=1_000_000, description="records per batch (one transaction)")
    time: Duration = Field(1.0, description="the longest a consumed record waits before its batch is written")


class ConsumerConfig(_Model):
    """The sink's Kafka consumer group."""

    group_id: str | None = Field(None, description="default: liberator-{app}-{sink name}")
    start: Literal["earliest", "latest"] = Field(
        "earliest", description="where a partition starts when neither the target nor the group stored an offset"
    )
    settings: dict[str, str | int | float | bool] = Field(
        {}, description="librdkafka consumer settings applied last (session.timeout.ms, ...)"
    )


class SqlSinkConfig(SinkConfig, DatabaseTimeouts):
    """Writes topics into tables of PostgreSQL, MySQL/MariaDB or SQLite."""

    type: Literal["sql"] = "sql"
    url: str = Field(description="SQLAlchemy URL of the target database")
    topics: list[str] | str = Field(description="topic names, or one regular expression matching topic names")
    table: str = Field(
        "{table}",
        description="target table template: {table} (the source table), {schema}, {topic}, {app}, {sink}",
    )
    target_schema: str | None = Field(None, description="schema (PostgreSQL) / database (MySQL) of the tables")
    mode: Literal["upsert", "insert"] = Field("upsert", description="upsert by key, or append every record")
    key: list[str] | None = Field(None, description="key columns; default: the fields of the record key")
    delete: bool = Field(True, description="delete events and tombstones delete the row")
    truncate: bool = Field(
        False,
        description="a truncate event (op t) deletes every row of the target table, in record order; false "
        "(Debezium JDBC sink's truncate.enabled default): skipped, logged once per table",
    )
    batch: BatchConfig = BatchConfig()
    create: bool = Field(False, description="create missing tables from the Avro schema (types, primary key)")
    evolve: bool = Field(
        False, description="add nullable columns for new fields; never drops, narrows or retypes a column"
    )
    on_error: Literal["stop", "dead_letter"] = Field(
        "stop", description="a bad record (undecodable, violating a constraint) stops the sink or is dead-lettered"
    )
    dead_letter_topic: str = Field(
        "{sink}.dead-letter", description="template: original bytes, the reason in header liberator.error"
    )
    offsets_table: str = Field(
        "liberator_sink_offsets", description="table in the target holding the highest applied offset per partition"
    )
    consumer: ConsumerConfig = ConsumerConfig()

    @field_validator("topics")
    @classmethod
    def _topics(cls, value: list[str] | str) -> list[str] | str:
        if isinstance(value, str):
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(
                    f"{value!r} is not a regular expression ({exc}); or give a list of topic names"
                ) from None
        elif not value:
            raise ValueError("give at least one topic, or a pattern")
        return value

    @model_validator(mode="after")
    def _table_template(self) -> SqlSinkConfig:
        try:
            self.table.format(table="t", schema="s", topic="x", app="a", sink="k")
            self.dead_letter_topic.format(sink="k", app="a")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                f"table/dead_letter_topic template has an unknown placeholder {exc}; "
                "use {table}, {schema}, {topic}, {app}, {sink}"
            ) from None
        return self
