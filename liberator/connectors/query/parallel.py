"""`snapshot_workers` on the query source: several keyset pages of one table read at once.

A table far behind now() (its first run's bulk read, or a long outage) is read a window of N pages at a time:
one query of the cursor columns alone finds where each of the next N pages ends, then each page, bounded by
the end of the one before and its own, is read on its own connection and thread. The pages are handed over
in cursor order, so the rows, their batches and the positions after them are those of one reader.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any

import sqlalchemy as sa

Rows = Sequence[Sequence[Any]]


class ParallelPages:
    """`workers` connections of the source's engine, each read by its own thread."""

    def __init__(self, engine: Callable[[], sa.Engine], workers: int, name: str) -> None:
        self.workers = workers
        self._engine = engine
        self._name = name
        self._conns: list[sa.Connection] = []
        self._pool: ThreadPoolExecutor | None = None
        self.windows = 0  # windows read at once so far (in the log at the end of a snapshot, and for tests)

    def read(
        self, queries: Sequence[sa.Select[Any]], fetch: Callable[[sa.Connection, sa.Select[Any]], Rows]
    ) -> list[Rows]:
        """Each query's rows, in the order given; all reads have ended when this returns or raises."""
        if len(queries) > self.workers:
            raise ValueError(f"{len(queries)} pages at once, but only {self.workers} workers")
        # Connected here, on the calling thread: a connection failure is raised as the source's own.
        while len(self._conns) < len(queries):
            self._conns.append(self._engine().connect().execution_options(isolation_level="AUTOCOMMIT"))
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix=f"{self._name}-pages")
        futures = [self._pool.submit(fetch, conn, query) for conn, query in zip(self._conns, queries, strict=False)]
        wait(futures)
        self.windows += 1
        try:
            return [future.result() for future in futures]
        except BaseException:
            self.reset()  # a connection that failed a read (or whose plans are outdated) is not used again
            raise

    def reset(self) -> None:
        """Close the connections (opened again at the next read): after an error, or when plans went stale."""
        conns, self._conns = self._conns, []
        for conn in conns:
            with contextlib.suppress(sa.exc.SQLAlchemyError):  # already broken: closing is all that was left
                conn.close()

    def close(self) -> None:
        self.reset()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
