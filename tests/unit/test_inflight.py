"""The in-flight window: a position becomes committable only when its batch and every earlier one are acked."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Self

from confluent_kafka import KafkaError

from liberator.inflight import BatchDelivery, InFlight
from liberator.positions import Position


@dataclass(frozen=True)
class P(Position):
    n: int

    def to_json(self) -> dict[str, Any]:
        return {"n": self.n}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        return cls(int(data["n"]))


def _batch(window: InFlight, position: Position | None, records: int) -> BatchDelivery:
    batch = window.batch(position)
    window.add(batch)
    batch.count = records
    window.events += records
    return batch


def test_positions_move_only_over_fully_acknowledged_prefixes() -> None:
    window = InFlight(100, 1 << 20)
    first = _batch(window, P(1), 2)
    second = _batch(window, None, 1)  # ends inside a transaction
    third = _batch(window, P(3), 1)
    third.on_delivery(None, None)
    second.on_delivery(None, None)
    assert window.settle() is None and window.committable is None  # the first batch is still out
    first.on_delivery(None, None)
    assert window.settle() is None
    first.on_delivery(None, None)
    assert window.settle() == P(3) and window.committable == P(3)
    assert window.events == 0 and len(window) == 0 and window.acked == 4


def test_a_batch_without_records_is_committable_once_what_came_before_is() -> None:
    window = InFlight(100, 1 << 20)
    out = _batch(window, P(1), 1)
    _batch(window, P(2), 0)  # a checkpoint
    assert window.settle() is None
    out.on_delivery(None, None)
    assert window.settle() == P(2)


def test_a_failure_stops_every_later_position() -> None:
    window = InFlight(100, 1 << 20)
    first = _batch(window, P(1), 1)
    second = _batch(window, P(2), 1)
    second.on_delivery(KafkaError(KafkaError._MSG_TIMED_OUT), "message")
    first.on_delivery(None, None)
    assert window.settle() is None and window.committable is None
    assert window.failure is not None and window.failure[1] == "message"


def test_room_is_bounded_by_events_and_bytes() -> None:
    window = InFlight(3, 100)
    _batch(window, None, 2)
    assert window.has_room()
    _batch(window, None, 1)
    assert not window.has_room()
    small = InFlight(1000, 100)
    batch = _batch(small, None, 1)
    batch.size = 150
    small.bytes += 150
    assert not small.has_room()
