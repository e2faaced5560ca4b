from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from liberator.errors import ConfigError


@dataclass(frozen=True)
class StoredOffset:
    """A source's stored position document: the connector's JSON plus when and by what it was stored."""

    source: str
    source_type: str
    position: dict[str, Any]
    stored_at: str

    @classmethod
    def now(cls, source: str, source_type: str, position: dict[str, Any]) -> StoredOffset:
        stamp = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
        return cls(source, source_type, position, stamp)

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "type": self.source_type,
            "position": self.position,
            "stored_at": self.stored_at,
        }

    @classmethod
    def from_json(cls, data: Any) -> StoredOffset:
        """Rebuild a stored document; raises ValueError naming what is wrong with `data`."""
        if not isinstance(data, dict):
            raise ValueError(f"a stored position is a JSON object, not {_json_kind(data)}")
        missing = [field for field in ("source", "type", "position", "stored_at") if field not in data]
        if missing:
            raise ValueError(f"it has no {', '.join(missing)}")
        if not isinstance(data["position"], dict):
            raise ValueError(f"its position is {_json_kind(data['position'])}, not a JSON object")
        return cls(str(data["source"]), str(data["type"]), dict(data["position"]), str(data["stored_at"]))


def _json_kind(value: object) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


class CorruptOffsets(ConfigError):
    """The store holds something that is not a position; `source` is None when the whole store is unreadable."""

    def __init__(self, message: str, source: str | None = None) -> None:
        super().__init__(message)
        self.source = source


class OffsetStore(ABC):
    """Positions per source of one app. `save` returns only once the position is durable."""

    needs_broker: bool = False  # whether reading and saving positions need the Kafka broker

    @abstractmethod
    def load_all(self) -> dict[str, StoredOffset]: ...

    def load(self, source: str) -> StoredOffset | None:
        return self.load_all().get(source)

    @abstractmethod
    def save(self, offset: StoredOffset) -> None: ...

    @abstractmethod
    def reset(self, source: str) -> None:
        """Forget a source's position: its next run starts from scratch (a new snapshot)."""

    def reset_all(self, sources: Iterable[str]) -> str | None:
        """Forget the positions of `sources`, even when the store cannot be read; returns a note on
        anything done besides (a file moved aside)."""
        for source in sources:
            self.reset(source)
        return None

    @abstractmethod
    def describe(self) -> str:
        """Where the positions live, for messages."""

    def close(self) -> None:  # noqa: B027 - optional hook
        pass
