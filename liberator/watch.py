"""Noticing trouble that raises nothing: deliveries that stopped coming back, and a stored position that
stays put while Kafka keeps acknowledging events.

AckWatch and StallDetector are pure logic on an injectable clock (seconds, monotonic); SourceWatch puts
what they notice into a source's status on each of the daemon's ticks and says each transition once in
the log, never on every tick.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

from liberator.metrics import SourceStatus

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

    def restart(self, acked: int) -> None:
        """Count from now, as if the position had just moved: after a pause, a position that stayed put
        while nothing was read is no stall, and the first acknowledgements after it must not look like one."""
        self._moved_at = self._clock()
        self._acked_at_move = acked
        self.stalled = False

    def unchanged_seconds(self) -> float:
        """Seconds since the stored position last moved (or since the source started)."""
        return self._clock() - self._moved_at

    def acked_since_move(self, acked: int) -> int:
        return acked - self._acked_at_move


class SourceWatch:
    """Both watches of one source, fed by its runner's hooks and checked on every tick of the daemon."""

    def __init__(self, status: SourceStatus, log: logging.Logger, stall_warning: float) -> None:
        self.status = status
        self.log = log
        self.acks = AckWatch()
        self.stall = StallDetector(stall_warning)

    def publishing(self) -> None:
        """An event is about to be produced."""
        if self.status.events_published <= self.status.events_acked:
            self.acks.progress()  # nothing was waiting: the wait for an acknowledgement starts now

    def acknowledged(self) -> None:
        self.acks.progress()

    def stored(self) -> None:
        """The stored position moved."""
        stalled_for = self.stall.moved(self.status.events_acked)
        if stalled_for is not None:
            self.log.info("the stored position moves again after %.0fs", stalled_for)

    def resumed(self) -> None:
        """An operator's pause ended."""
        self.stall.restart(self.status.events_acked)

    def tick(self, in_flight: int) -> None:
        status = self.status
        pending = max(0, status.events_published - status.events_acked)
        change = self.acks.check(pending)
        if change is not None or status.backpressure is not None:
            status.backpressure = (
                f"Kafka acknowledged none of the {pending} events waiting for {self.acks.seconds():.0f}s "
                "(broker down, hung or unreachable?); reading pauses once the producer queue is full"
                if self.acks.since is not None
                else None
            )
            if change is True:
                self.log.warning("backpressure: %s", status.backpressure)
            elif change is False:
                self.log.info("Kafka acknowledges again; the backpressure is over")
        if not status.paused and self.stall.check(status.events_acked):  # a paused position stays put by design
            stored = json.dumps(status.position, sort_keys=True) if status.position is not None else "none yet"
            self.log.warning(
                "the stored position (%s) has not moved for %.0fs although Kafka acknowledged %d events since "
                "(%d items in flight); meanwhile a replication slot or binlog is held back and a restart would "
                "replay everything since it; one transaction this large holds it until its commit, otherwise "
                "this is a bug: report it with this log",
                stored,
                self.stall.unchanged_seconds(),
                self.stall.acked_since_move(status.events_acked),
                in_flight,
            )
        status.position_stalled = self.stall.stalled
        status.position_unchanged_seconds = self.stall.unchanged_seconds()
