"""The in-flight window of one source: batches handed to Kafka and not yet acknowledged, oldest first.

Kafka acknowledges records out of order across partitions. A position may only be stored once every record
published before it is acknowledged; otherwise a crash after storing it would lose the slow ones. So each
batch counts its own acknowledgements (one bound method serves as the delivery callback of all its records:
no closure per record), and the window's committable position is that of the newest batch whose records --
and every earlier batch's -- are all acknowledged.

Single-threaded by design: delivery callbacks run inside `Producer.poll()`, which only the source's reading
thread calls, so nothing here takes a lock. The window is bounded by events and bytes (`max_events`,
`max_bytes`): the reading thread waits for acknowledgements before it hands over more.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from confluent_kafka import KafkaError

from liberator.positions import Position


class DeliveryFailed(Exception):
    """Kafka refused a record for good: nothing published after it may ever be stored."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class BatchDelivery:
    """The acknowledgements of one batch's records; `on_delivery` is their shared delivery callback."""

    __slots__ = ("acked", "count", "position", "size", "window")

    def __init__(self, window: InFlight, position: Position | None) -> None:
        self.window = window
        self.position = position
        self.count = 0  # records handed to the producer
        self.acked = 0
        self.size = 0  # their key and value bytes

    def on_delivery(self, error: KafkaError | None, message: Any) -> None:
        if error is None:
            self.acked += 1
            self.window.acked += 1
        elif self.window.failure is None:
            self.window.failure = (error, message)


class InFlight:
    """Batches awaiting acknowledgement, and the positions that became committable."""

    def __init__(self, max_events: int, max_bytes: int) -> None:
        self.max_events = max_events
        self.max_bytes = max_bytes
        self._batches: deque[BatchDelivery] = deque()
        self.events = 0  # records in flight (published, not yet acknowledged)
        self.bytes = 0
        self.committable: Position | None = None  # read by the committer thread: one reference, no lock
        self.acked = 0  # records acknowledged, in all
        # The first record Kafka refused for good (error, message): nothing after it may ever be stored.
        self.failure: tuple[KafkaError, Any] | None = None

    def batch(self, position: Position | None) -> BatchDelivery:
        return BatchDelivery(self, position)

    def add(self, batch: BatchDelivery) -> None:
        """Track a batch from before its first record is produced (the caller counts events and bytes in)."""
        self._batches.append(batch)

    def has_room(self) -> bool:
        return self.events < self.max_events and self.bytes < self.max_bytes

    def __len__(self) -> int:
        return len(self._batches)

    def settle(self) -> Position | None:
        """Drop the fully acknowledged batches at the head; the newest committable position if it moved.

        Once a record failed (`failure`), nothing moves any more: the batches after it must not be stored."""
        if self.failure is not None:
            return None
        moved: Position | None = None
        batches = self._batches
        while batches:
            head = batches[0]
            if head.acked < head.count:
                break
            batches.popleft()
            self.events -= head.count
            self.bytes -= head.size
            if head.position is not None:
                self.committable = moved = head.position
        return moved
