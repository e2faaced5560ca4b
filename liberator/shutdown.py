"""Stopping within `shutdown_timeout`, whatever a server is doing.

A thread inside a driver call (a read from a hung database, say) cannot be interrupted from Python; the
read timeouts end such calls eventually, but a shutdown must not wait for them. Source and sink threads
are daemon threads, so the daemon leaves a stuck one behind: it names it, stores the positions Kafka
acknowledged (always safe: the rest is read again on restart) and exits non-zero.

The budget keeps the last part of `shutdown_timeout` (a fifth, at most 5 s) for storing positions, so a
slow flush to a frozen broker cannot take that away.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

log = logging.getLogger("liberator")

_STORE_SHARE = 0.2
_STORE_MAX = 5.0


class ShutdownBudget:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds
        self._work_until = self.deadline - min(_STORE_MAX, seconds * _STORE_SHARE)

    def for_work(self) -> float:
        """Seconds left for stopping threads and flushing deliveries."""
        return max(0.0, self._work_until - time.monotonic())

    def for_positions(self) -> float:
        """Seconds left before the daemon must be gone."""
        return max(0.0, self.deadline - time.monotonic())


def join_all(threads: Sequence[tuple[str, threading.Thread]], budget: ShutdownBudget) -> list[str]:
    """Join every thread within the budget's work time; the names of those still running."""
    for _name, thread in threads:
        thread.join(budget.for_work())
    return [name for name, thread in threads if thread.is_alive()]


def run_bounded(task: Callable[[], None], seconds: float, name: str) -> bool:
    """Run `task` in a daemon thread; whether it finished within `seconds` (its errors are logged)."""

    def run() -> None:
        try:
            task()
        except Exception:
            log.exception("%s failed during shutdown", name)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    thread.join(seconds)
    return not thread.is_alive()
