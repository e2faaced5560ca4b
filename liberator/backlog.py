"""How much of its database's log each source has not had stored yet: WAL a replication slot holds, binlog
after the stored position. A slot that falls behind keeps WAL until the disk fills, so this is the figure an
operator alerts on (Debezium has no such metric; the usual alert queries pg_replication_slots by hand).

One daemon thread samples every source each `BACKLOG_INTERVAL` seconds, off the reading threads: a source
answers with a short connection of its own, bounded by its timeouts (`Source.backlog_bytes`). A failed sample
clears the figure (unknown, not stale) and says why once at debug level; the source's own retries report
outages.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Protocol

from liberator.metrics import SourceStatus
from liberator.positions import Position
from liberator.source import AnySource, Source

BACKLOG_INTERVAL = 10.0

log = logging.getLogger("liberator.backlog")


class Sampled(Protocol):
    """What the sampler needs of a source runner."""

    source: AnySource
    status: SourceStatus
    stored: Position | None


class BacklogSampler:
    def __init__(self, runners: Sequence[Sampled], interval: float | None = None) -> None:
        self.runners = list(runners)
        self.interval = BACKLOG_INTERVAL if interval is None else interval
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="backlog", daemon=True)

    def start(self) -> None:
        if any(type(r.source).backlog_bytes is not _NO_BACKLOG for r in self.runners):
            self.thread.start()

    def _run(self) -> None:
        while True:
            self.sample()
            if self._stop.wait(self.interval):
                return

    def sample(self) -> None:
        for runner in self.runners:
            if self._stop.is_set():
                return
            if type(runner.source).backlog_bytes is _NO_BACKLOG:
                continue
            try:
                runner.status.backlog_bytes = runner.source.backlog_bytes(runner.stored)
            except Exception as exc:  # a figure, not the stream: the source's own retries report outages
                runner.status.backlog_bytes = None
                log.debug("no backlog figure for source %s: %s", runner.status.name, exc)

    def stop(self) -> None:
        self._stop.set()
        if self.thread.is_alive():
            self.thread.join(5)


_NO_BACKLOG = Source.backlog_bytes  # the default: the sources that do not override it have no log to measure
