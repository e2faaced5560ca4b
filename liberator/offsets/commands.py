"""`liberator offsets show | reset | set`: what an operator does to stored positions, on either store."""

from __future__ import annotations

import json
import sys
import threading
from typing import Any

from liberator import plugins
from liberator.config import AppConfig
from liberator.errors import LiberatorError, one_line
from liberator.offsets.base import OffsetStore, StoredOffset
from liberator.source import SourceConfig

_DOCUMENT_FIELDS = {"source", "type", "position", "stored_at"}


def source_config(config: AppConfig, name: str) -> SourceConfig:
    for source in config.sources:
        if source.name == name:
            return source
    known = ", ".join(sorted(s.name for s in config.sources)) or "none"
    raise LiberatorError(f"no source named {name!r} in {config.path}; known: {known}")


def show(store: OffsetStore, config: AppConfig | None = None) -> str:
    """The stored positions per source; with `config` and sinks in it, also the offsets each sink's consumer
    group committed, under `sinks`."""
    stored = store.load_all()
    shown: dict[str, Any] = {name: doc.to_json() for name, doc in sorted(stored.items())}
    if config is not None and config.sinks:
        shown["sinks"] = sink_offsets(config)
    return json.dumps(shown, indent=2)


SINK_OFFSETS_TIMEOUT = 10.0


def sink_offsets(config: AppConfig) -> dict[str, Any]:
    """Per sink: its consumer group and the offsets the group committed, {topic: {partition: offset}} (the
    next offset to read: one past the last applied). The target's own stored offsets stay authoritative
    (the sink seeks to them on assignment); these are what lag tools read. A broker that does not answer is
    the entry's `error`, so the positions still show."""
    from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException
    from confluent_kafka.admin import AdminClient

    from liberator.runtime import registry_client
    from liberator.sinkrunner import DeadLetterProducer, build_sink
    from liberator.topics import admin_settings

    admin = AdminClient(admin_settings(config.kafka))
    registry = registry_client(config)  # a sink asks it only to decode records: never here
    out: dict[str, Any] = {}
    for sink_config in config.sinks:
        sink = build_sink(sink_config, config.name, threading.Event(), registry, DeadLetterProducer({}))
        try:
            group = sink.consuming.group_id
        finally:
            sink.close()
        entry: dict[str, Any] = {"type": sink_config.type, "group_id": group}
        try:
            future = admin.list_consumer_group_offsets(
                [ConsumerGroupTopicPartitions(group)], request_timeout=SINK_OFFSETS_TIMEOUT
            )[group]
            committed: dict[str, dict[str, int]] = {}
            for tp in future.result(SINK_OFFSETS_TIMEOUT).topic_partitions or []:
                if tp.error is None and tp.offset >= 0:
                    committed.setdefault(tp.topic, {})[str(tp.partition)] = tp.offset
            entry["committed"] = {topic: committed[topic] for topic in sorted(committed)}
        except (KafkaException, TimeoutError) as exc:
            reason = exc.args[0].str() if exc.args and hasattr(exc.args[0], "str") else str(exc) or type(exc).__name__
            entry["error"] = (
                f"cannot read group {group}'s committed offsets from {config.kafka.bootstrap_servers}: "
                f"{one_line(reason, 160)}; is the broker up?"
            )
        out[sink_config.name] = entry
    return out


def reset(config: AppConfig, store: OffsetStore, only: str | None) -> list[str]:
    names = [source_config(config, only).name] if only else [s.name for s in config.sources]
    if only:
        store.reset(only)
        note = None
    else:
        note = store.reset_all(names)
    lines = [note] if note else []
    lines += [f"reset {name}: its next run starts from the beginning ({store.describe()})" for name in names]
    return lines


def set_position(config: AppConfig, store: OffsetStore, name: str, argument: str) -> StoredOffset:
    """Store `argument` (the JSON `offsets show` prints) as the position of source `name`, once the source's
    own position type has read it back."""
    source = source_config(config, name)
    text = sys.stdin.read() if argument == "-" else argument
    try:
        data: Any = json.loads(text)
    except ValueError as exc:
        raise LiberatorError(
            f"POSITION for source {name} is not JSON ({exc}); give the JSON `liberator offsets show` prints"
        ) from None
    if isinstance(data, dict) and {"type", "position"} <= data.keys() <= _DOCUMENT_FIELDS:
        # The whole stored document, as `offsets show` prints it per source.
        if data["type"] != source.type:
            raise LiberatorError(
                f"POSITION is for a {data['type']!r} source; source {name} is {source.type!r}; "
                "give a position of that source"
            )
        data = data["position"]
    source_cls = plugins.load(plugins.SOURCE_GROUP, source.type, f"source {name}")
    reason: str | None = None
    if not isinstance(data, dict):
        reason = "it is not a JSON object"
    else:
        try:
            position = source_cls.position_type.from_json(data).to_json()
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            reason = f"missing {exc}" if isinstance(exc, KeyError) else one_line(exc, 160)
    if reason is not None:
        raise LiberatorError(
            f"POSITION is not a position of source {name} ({source.type}): {reason}; give the JSON "
            f"`liberator offsets show` prints under {name}.position"
        )
    offset = StoredOffset.now(name, source.type, position)
    store.save(offset)
    return offset
