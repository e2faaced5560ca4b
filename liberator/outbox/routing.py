"""The outbox routing rules as configuration: which column means what, where events go, what is invalid.

Shared by the outbox-table source and the CDC sources' `outbox:` option, so the outbox TABLE name is not
here: each connector config names its table (the outbox source as `table`, the CDC sources in their own
`outbox:` entry) and hands only these rules to `OutboxRouter`.
"""

from __future__ import annotations

import string
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from liberator.config import Duration

TOPIC_FIELDS = ("aggregate_type", "event_type", "source")
SUBJECT_FIELDS = (*TOPIC_FIELDS, "topic")


def _check_template(template: str, allowed: tuple[str, ...], what: str) -> str:
    try:
        names = [name for _text, name, _spec, _conv in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        raise ValueError(
            f"{what} {template!r} is not a valid template ({exc}); write e.g. outbox.event.{{aggregate_type}}"
        ) from None
    unknown = [name for name in names if name not in allowed]
    if unknown:
        raise ValueError(
            f"{what} {template!r} uses {{{unknown[0]}}}; allowed placeholders: "
            + ", ".join(f"{{{name}}}" for name in allowed)
        )
    return template


class OutboxColumns(BaseModel):
    """Which column of the outbox table holds what; the defaults match `liberator outbox ddl`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field("id", description="unique, never reused: the event id consumers deduplicate on")
    aggregate_type: str = Field("aggregate_type", description="names the topic through the `topic` template")
    aggregate_id: str = Field("aggregate_id", description="the Kafka key (as a string)")
    event_type: str = Field("event_type", description="sent as the `event_type` header")
    payload: str = Field("payload", description="the event body: JSON, or Avro bytes (see `payload`)")
    occurred_at: str | None = Field(
        "occurred_at", description="the event time (naive = UTC, or epoch s/ms/us); null: time of reading"
    )
    headers: str | None = Field(None, description="optional: a JSON object of extra string headers")
    schema_id: str | None = Field(None, description="optional: the payload's registry schema id, checked or used")


class OutboxRouting(BaseModel):
    """How outbox rows become Kafka records (topic, key, headers, value) and what happens to invalid ones."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    columns: OutboxColumns = Field(OutboxColumns(), description="column mapping (see docs/outbox.md)")
    topic: str = Field("outbox.event.{aggregate_type}", description="template; also {event_type} and {source}")
    payload: Literal["json", "avro"] = Field(
        "json",
        description="json: validated and encoded against the subject's latest registered Avro schema; "
        "avro: bytes the application already encoded, published unchanged once checked",
    )
    avro_framing: Literal["wire", "raw"] = Field(
        "wire",
        description="avro payloads: wire = Confluent wire format (magic byte, schema id, body); "
        "raw = the Avro body only, its schema id in columns.schema_id",
    )
    subject: str = Field("{topic}-value", description="json payloads: the subject whose latest schema applies")
    schema_refresh: Duration = Field(30.0, description="json payloads: how long a subject's latest schema is cached")
    on_invalid: Literal["stop", "dead_letter", "skip"] | None = Field(
        None,
        description="outbox rows that cannot be published: overrides the source's on_error for them (older "
        "name; on_error is the one setting for every source, docs/errors.md)",
    )
    dead_letter_topic: str | None = Field(
        None,
        description="template ({source}): overrides the source's dead_letter.topic for outbox rows (older name)",
    )

    @field_validator("topic")
    @classmethod
    def _topic_template(cls, value: str) -> str:
        return _check_template(value, TOPIC_FIELDS, "topic")

    @field_validator("subject")
    @classmethod
    def _subject_template(cls, value: str) -> str:
        return _check_template(value, SUBJECT_FIELDS, "subject")

    @field_validator("dead_letter_topic")
    @classmethod
    def _dead_letter_template(cls, value: str | None) -> str | None:
        return None if value is None else _check_template(value, ("source",), "dead_letter_topic")

    @model_validator(mode="after")
    def _raw_needs_schema_column(self) -> OutboxRouting:
        if self.payload == "avro" and self.avro_framing == "raw" and self.columns.schema_id is None:
            raise ValueError("avro_framing: raw needs columns.schema_id (the column holding each payload's schema id)")
        return self
