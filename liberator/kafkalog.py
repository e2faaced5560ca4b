"""librdkafka's own log lines, folded: one line per distinct problem, then a count now and then.

A broker that is down makes every client log a FAIL line per reconnect attempt (every 50 ms to 10 s,
per client); `check` printed 156 of them, `tail` 196. Every producer, consumer and admin client
liberator makes logs through `KAFKA_LOGGER` (`with_kafka_logger`), whose filter lets the first line of
a problem through and then, at most every `FOLD_SECONDS`, one line saying how often it happened since.
Lines also go through the process's handlers, so they are scrubbed of secrets like every other line.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

FOLD_SECONDS = 60.0
_MAX_PROBLEMS = 1000

# What varies between two lines about one problem: timings, counters, which client said it.
_VOLATILE = (
    re.compile(r"\s*\(after \d+ms in state \w+(?:, \d+ identical error\(s\) suppressed)?\)"),
    re.compile(r"\b\d+(?:\.\d+)?\s*(?:ms|s)\b"),
    re.compile(r"[\w.-]+#(?:producer|consumer)-\d+"),  # the client: rdkafka#producer-1, liberator-app#consumer-2
)


def problem_of(record: logging.LogRecord) -> tuple[int, str]:
    """The distinct problem a line is about: its level and its text without the parts that vary."""
    text = record.getMessage()
    for pattern in _VOLATILE:
        text = pattern.sub("", text)
    return record.levelno, text


class RepeatFolder(logging.Filter):
    """Passes a problem's first line; later ones only every `interval` seconds, counting the rest."""

    def __init__(self, interval: float = FOLD_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.interval = interval
        self.clock = clock
        self._lock = threading.Lock()
        self._problems: dict[tuple[int, str], tuple[float, int]] = {}  # problem -> (last shown, hidden since)

    def filter(self, record: logging.LogRecord) -> bool:
        key = problem_of(record)
        now = self.clock()
        with self._lock:
            shown = self._problems.get(key)
            if shown is not None and now - shown[0] < self.interval:
                self._problems[key] = (shown[0], shown[1] + 1)
                return False
            if len(self._problems) >= _MAX_PROBLEMS:
                self._problems.clear()
            self._problems[key] = (now, 0)
        if shown is not None and shown[1]:
            record.msg = f"{record.getMessage()} (and {shown[1]} more like it in the last {now - shown[0]:.0f}s)"
            record.args = None
        return True


KAFKA_LOGGER = logging.getLogger("liberator.kafka")
KAFKA_LOGGER.addFilter(RepeatFolder())


def with_kafka_logger(settings: Mapping[str, Any]) -> dict[str, Any]:
    """librdkafka client settings whose log lines go through the folding logger instead of stderr."""
    return {**settings, "logger": KAFKA_LOGGER}
