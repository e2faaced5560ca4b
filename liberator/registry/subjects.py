"""Subject names under Confluent's three strategies, for keys and values separately.

- `topic` (TopicNameStrategy, the default): `<topic>-key` / `<topic>-value`; one schema history per topic.
- `record` (RecordNameStrategy): the record's full name; one history per record type, shared by every
  topic that carries it (for topics that mix event types).
- `topic_record` (TopicRecordNameStrategy): `<topic>-<record full name>`; several types in one topic,
  each with its own history there.
"""

from __future__ import annotations

from typing import Any, Literal

from liberator.errors import ConfigError

SubjectStrategy = Literal["topic", "record", "topic_record"]


def record_fullname(schema: Any) -> str | None:
    """The full name of a record schema (namespace.name), or None when `schema` is not a record."""
    if not isinstance(schema, dict) or schema.get("type") not in ("record", "error"):
        return None
    name = str(schema["name"])
    namespace = schema.get("namespace")
    return name if "." in name or not namespace else f"{namespace}.{name}"


def subject_name(strategy: SubjectStrategy, topic: str, schema: Any, part: Literal["key", "value"]) -> str:
    """The subject the `part` schema of `topic` is registered under."""
    if strategy == "topic":
        return f"{topic}-{part}"
    fullname = record_fullname(schema)
    if fullname is None:
        raise ConfigError(
            f"topic {topic}: schema_registry.{part}_subject: {strategy} names subjects after the record, but the "
            f"{part} schema is not a record ({json_type(schema)}); use {part}_subject: topic"
        )
    return fullname if strategy == "record" else f"{topic}-{fullname}"


def json_type(schema: Any) -> str:
    if isinstance(schema, dict):
        return str(schema.get("type"))
    return str(schema)
