"""In-order acknowledgement tracking: which position may be stored now.

Kafka acknowledges deliveries out of order across partitions. A position may only be stored when every
item yielded before it is acknowledged; otherwise a crash after storing it would lose the slow ones.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from liberator.positions import Position


@dataclass
class _Pending:
    position: Position | None
    acked: bool


class DeliveryFailed(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Checkpointer:
    """Tracks yielded items in order; `committable()` is the position of the longest acknowledged prefix.

    Thread-safe: items are added by the source thread, acknowledged from delivery callbacks.
    `on_advance` hears each new committable position, in order, while the lock is held: it must be quick.
    """

    def __init__(self, on_advance: Callable[[Position], None] | None = None) -> None:
        self._on_advance = on_advance
        self._lock = threading.Lock()
        self._items: dict[int, _Pending] = {}
        self._order: deque[int] = deque()
        self._next = 0
        self._committable: Position | None = None
        self._failure: str | None = None

    def add(self, position: Position | None, *, acked: bool = False) -> int:
        """Record the next item; `acked=True` for items with nothing to deliver (checkpoints)."""
        with self._lock:
            seq = self._next
            self._next += 1
            self._items[seq] = _Pending(position, acked)
            self._order.append(seq)
            if acked:
                self._advance()
            return seq

    def ack(self, seq: int) -> None:
        with self._lock:
            item = self._items.get(seq)
            if item is None:
                return
            item.acked = True
            self._advance()

    def withdraw(self, seq: int) -> None:
        """Forget an item that never reached Kafka (producing it raised): nothing would ever acknowledge it,
        and left in place it would hold back every later position for the life of the process."""
        with self._lock:
            if self._items.pop(seq, None) is None:
                return
            if self._order and self._order[-1] == seq:
                self._order.pop()  # the usual case: the newest item, withdrawn right after it was added
            else:
                self._order.remove(seq)
            self._advance()

    def fail(self, seq: int, reason: str) -> None:
        """A delivery failed for good: nothing after it may ever be stored."""
        with self._lock:
            if self._failure is None:
                self._failure = reason

    def _advance(self) -> None:
        before = self._committable
        while self._order:
            item = self._items[self._order[0]]
            if not item.acked:
                break
            del self._items[self._order.popleft()]
            if item.position is not None:
                self._committable = item.position
        if self._on_advance is not None and self._committable is not None and self._committable is not before:
            self._on_advance(self._committable)

    def committable(self) -> Position | None:
        """The newest position whose items, and all before them, are acknowledged."""
        with self._lock:
            return self._committable

    @property
    def failure(self) -> str | None:
        with self._lock:
            return self._failure

    @property
    def in_flight(self) -> int:
        with self._lock:
            return len(self._order)
