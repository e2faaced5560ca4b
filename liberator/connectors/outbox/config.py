"""`type: outbox`: the table, how to clean up after Kafka acknowledged, locking, polling; plus the routing."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from liberator.config import DatabaseTimeouts, Duration
from liberator.outbox import OutboxRouting
from liberator.source import SourceConfig


class OutboxSourceConfig(SourceConfig, OutboxRouting, DatabaseTimeouts):
    """The outbox table, its cleanup, locking and polling, plus the routing rules (docs/outbox.md).

    The routing fields (columns, topic, payload, on_invalid, ...) are `liberator.outbox.OutboxRouting`'s,
    shared with the CDC sources' `outbox:` option."""

    type: Literal["outbox"] = "outbox"
    url: str = Field(description="SQLAlchemy URL of the application's database")
    table: str = Field("outbox", description="the outbox table, or schema.table")
    cleanup: Literal["delete", "mark"] = Field(
        "delete", description="after Kafka acknowledged a row: delete it, or set published_column"
    )
    published_column: str = Field(
        "published_at", description="cleanup: mark sets this column to the current time; NULL = not yet published"
    )
    order_by: Literal["occurred_at", "id"] = Field(
        "occurred_at", description="publishing order: (occurred_at, id), or id alone"
    )
    batch_size: int = Field(500, ge=1, le=100_000, description="rows claimed, published and cleaned up at a time")
    max_in_flight: int = Field(
        4,
        ge=1,
        le=64,
        description="batches published and awaiting Kafka's acknowledgement at once (skip_locked: one connection each)",
    )
    poll_interval: Duration = Field(1.0, description="pause between polls once the outbox is empty")
    locking: Literal["auto", "skip_locked", "leader"] = Field(
        "auto",
        description="skip_locked: several daemons share the table (PostgreSQL, MySQL 8, MariaDB 10.6+; needs "
        "ha.mode: off); leader: one daemon publishes, the others stand by (the ha lease, even with ha.mode: "
        "off); auto: skip_locked where the database has it, leader on SQLite",
    )
    notify_channel: str | None = Field(
        None, description="PostgreSQL: LISTEN on this channel and poll as soon as a NOTIFY arrives"
    )

    @field_validator("table")
    @classmethod
    def _table_name(cls, value: str) -> str:
        if not value or value.count(".") > 1 or any(not part for part in value.split(".")):
            raise ValueError(f"{value!r} is not a table name; write outbox or schema.outbox")
        return value

    @model_validator(mode="after")
    def _notify_on_postgres_only(self) -> OutboxSourceConfig:
        if self.notify_channel is not None and not self.url.startswith(("postgres", "postgresql")):
            raise ValueError("notify_channel works only with PostgreSQL (LISTEN/NOTIFY); remove it for this database")
        if self.notify_channel is not None and not self.notify_channel.replace("_", "").isalnum():
            raise ValueError("notify_channel must be a plain identifier (letters, digits, _)")
        return self
