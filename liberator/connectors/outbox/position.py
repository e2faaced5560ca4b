"""Where an outbox source stands: which claimed batch of this run Kafka has acknowledged.

The outbox table itself is the durable queue (a row is gone or marked once published), so a restart
never needs the stored value to resume; it exists so the runtime can tell the source, through
`acknowledged()`, that a batch is safe to clean up. `run` makes positions of different runs unequal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Self

from liberator.positions import Position, decode_scalar, encode_scalar


@dataclass(frozen=True)
class OutboxPosition(Position):
    run: str
    batch: int
    last_id: object = None  # the batch's last outbox id, for operators reading `offsets show`

    def covers(self, other: OutboxPosition) -> bool:
        return self.run == other.run and self.batch >= other.batch

    def to_json(self) -> dict[str, Any]:
        return {"run": self.run, "batch": self.batch, "last_id": encode_scalar(self.last_id)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        return cls(str(data["run"]), int(data["batch"]), decode_scalar(data.get("last_id")))
