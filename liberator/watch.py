"""Noticing trouble that raises nothing: deliveries that stopped coming back, and a stored position that
stays put while Kafka keeps acknowledging events.

Pure logic on an injectable clock (seconds, monotonic); the daemon checks both for every source on each
tick and logs the transitions once each, never on every tick.
"""

from __future__ import annotations

import time
from collections.abc import Callable

# Events waiting this long with no acknowledgement at all: the broker is away, hung or far too slow.
# Under load acknowledgements keep arriving (within linger.ms plus a round trip), so a healthy broker
# that is merely slower than the database does not count.
BACKPRESSURE_AFTER = 5.0

Clock = Callable[[], float]


class AckWatch:
    """Backpressure: events are waiting for Kafka and none was acknowledged for `after` seconds."""

    def __init__(self, after: float = BACKPRESSURE_AFTER, clock: Clock = time.monotonic) -> None:
        self.after = after
        self._clock = clock
        self._progress_at = clock()
        self.since: float | None = None  # when the current backpressure began

    def progress(self) -> None:
        """Kafka acknowledged an event, or the first event after a quiet spell was published (the wait
        for an acknowledgement starts then, not at the last acknowledgement an hour ago)."""
        self._progress_at = self._clock()

    def check(self, pending: int) -> bool | None:
        """True when backpressure begins, False when it ends, None when nothing changed."""
        waiting = pending > 0 and self._clock() - self._progress_at >= self.after
        if waiting and self.since is None:
            self.since = self._progress_at
            return True
        if not waiting and self.since is not None:
            self.since = None
            return False
        return None

    def seconds(self) -> float:
        """How long the current backpressure has lasted (0 when there is none)."""
        return 0.0 if self.since is None else self._clock() - self.since


class StallDetector:
    """A stall: the stored position has not moved for `threshold` seconds although Kafka acknowledged
    events since it last moved. Idle sources (nothing acknowledged) and outages (nothing acknowledged
    either: that is backpressure) are not stalls. `threshold` 0 turns the warning off."""

    def __init__(self, threshold: float, acked: int = 0, clock: Clock = time.monotonic) -> None:
        self.threshold = threshold
        self._clock = clock
        self._moved_at = clock()
        self._acked_at_move = acked
        self.stalled = False

    def moved(self, acked: int) -> float | None:
        """The stored position moved with `acked` events acknowledged so far. Returns how long the stall
        that this ends lasted, or None when there was none."""
        now = self._clock()
        ended = now - self._moved_at if self.stalled else None
        self._moved_at = now
        self._acked_at_move = acked
        self.stalled = False
        return ended

    def check(self, acked: int) -> bool:
        """True once, when a stall begins."""
        if self.stalled or self.threshold <= 0:
            return False
        if self.unchanged_seconds() >= self.threshold and acked > self._acked_at_move:
            self.stalled = True
            return True
        return False

    def unchanged_seconds(self) -> float:
        """Seconds since the stored position last moved (or since the source started)."""
        return self._clock() - self._moved_at

    def acked_since_move(self, acked: int) -> int:
        return acked - self._acked_at_move
