from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any


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
    def from_json(cls, data: dict[str, Any]) -> StoredOffset:
        return cls(str(data["source"]), str(data["type"]), dict(data["position"]), str(data["stored_at"]))


class OffsetStore(ABC):
    """Positions per source of one app. `save` returns only once the position is durable."""

    @abstractmethod
    def load_all(self) -> dict[str, StoredOffset]: ...

    def load(self, source: str) -> StoredOffset | None:
        return self.load_all().get(source)

    @abstractmethod
    def save(self, offset: StoredOffset) -> None: ...

    @abstractmethod
    def reset(self, source: str) -> None:
        """Forget a source's position: its next run starts from scratch (a new snapshot)."""

    @abstractmethod
    def describe(self) -> str:
        """Where the positions live, for messages."""

    def close(self) -> None:  # noqa: B027 - optional hook
        pass
