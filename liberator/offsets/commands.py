"""`liberator offsets show | reset | set`: what an operator does to stored positions, on either store."""

from __future__ import annotations

import json
import sys
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


def show(store: OffsetStore) -> str:
    stored = store.load_all()
    return json.dumps({name: doc.to_json() for name, doc in sorted(stored.items())}, indent=2)


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
