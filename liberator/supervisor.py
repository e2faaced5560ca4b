"""One supervisor for the threads that do the daemon's work: source runners and sink runners.

A runner says only what is its own -- one attempt at its work, which errors pass, how it waits between two
attempts (a source serves Kafka's acknowledgements meanwhile, a sink stays in its consumer group) and what it
releases after each -- and the Supervisor does what is the same for all of them: the state /health shows
(running; retrying with the reason and a count; failed with the one line; stopped; finished), exponential
backoff between attempts, the error cleared once the work goes on again, and a failure said once in the log.

A retry lasts until the work says it goes on again (`recovered`: a source read an item, a sink wrote a batch
or was assigned its partitions), not merely until the next attempt begins.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Protocol

from liberator.errors import LiberatorError

FIRST_BACKOFF = 1.0
MAX_BACKOFF = 30.0


class Supervised(Protocol):
    """The part of a source's or sink's status the supervisor keeps (liberator.metrics)."""

    state: str
    error: str | None
    retries: int


class Backoff:
    """Seconds to wait before each next retry: `first`, doubled each time, at most `most`."""

    def __init__(self, first: float = FIRST_BACKOFF, most: float = MAX_BACKOFF) -> None:
        self.first = first
        self.most = most
        self._next = first

    def next(self) -> float:
        seconds = self._next
        self._next = min(seconds * 2, self.most)
        return seconds

    def reset(self) -> None:
        self._next = self.first


def mark_retrying(statuses: Sequence[Supervised], reason: str) -> None:
    """What /health shows while something is retried: the state, the reason, one more retry."""
    for status in statuses:
        status.state = "retrying"
        status.retries += 1
        status.error = reason


def mark_recovered(statuses: Sequence[Supervised], state: str = "running") -> bool:
    """The retried work goes on again: its reason is cleared. Whether any of them was retrying."""
    any_retrying = False
    for status in statuses:
        if status.state == "retrying":
            status.state, status.error = state, None
            any_retrying = True
    return any_retrying


def unexpected(exc: BaseException) -> str:
    return f"unexpected {type(exc).__name__}: {exc}; this is a bug, please report it with the log"


class Supervisor:
    """Runs one unit of work in the calling thread until it finishes, is stopped or fails for good.

    `transient`: the errors retried after a backoff. `stopped`: errors that only mean the work noticed the
    stop while it waited. Any other `LiberatorError` fails the work with its one line; anything else fails it
    as a bug, with the traceback in the log. `pause(seconds)` waits between attempts (default: on `stop`).
    """

    def __init__(
        self,
        status: Supervised,
        log: logging.Logger,
        stop: threading.Event,
        *,
        transient: tuple[type[BaseException], ...],
        stopped: tuple[type[BaseException], ...] = (),
        pause: Callable[[float], object] | None = None,
    ) -> None:
        self.status = status
        self.log = log
        self.stop = stop
        self.transient = transient
        self.stopped = stopped
        self.pause: Callable[[float], object] = pause or stop.wait
        self.backoff = Backoff()

    def run(self, attempt: Callable[[], bool], after_attempt: Callable[[], None] | None = None) -> None:
        """Call `attempt` (True: the work is finished; False: it stopped) again after each transient error;
        `after_attempt` runs after each attempt however it ended (after the pause that follows an error)."""
        status = self.status
        while not self.stop.is_set():
            try:
                if status.state != "retrying":  # a retry lasts until the work goes on again
                    status.state = "running"
                if attempt():
                    status.state = "finished"
                    return
                break
            except self.transient as exc:
                self.pause(self.retrying(exc))
            except self.stopped:
                break
            except LiberatorError as exc:
                self.fail(str(exc))
                return
            except Exception as exc:
                self.log.exception("unexpected error")
                self.fail(unexpected(exc))
                return
            finally:
                if after_attempt is not None:
                    after_attempt()
        status.state = "stopped"

    def retrying(self, reason: object, backoff: Backoff | None = None) -> float:
        """Show the retry and say it once; the seconds to wait before it (from `backoff`, else the
        supervisor's own: it grows with each attempt until the work goes on again)."""
        seconds = (backoff or self.backoff).next()
        mark_retrying([self.status], str(reason))
        self.log.warning("%s; retrying in %gs", reason, seconds)
        return seconds

    def recovered(self) -> bool:
        """The work goes on again: running, the error cleared, and the next outage's first retry is soon
        again. Whether it was retrying."""
        if not mark_recovered([self.status]):
            return False
        self.backoff.reset()
        return True

    def fail(self, message: str) -> None:
        self.status.state = "failed"
        self.status.error = message
        self.log.error("%s", message)
