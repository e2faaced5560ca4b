"""`snapshot_workers` on the query source: several keyset pages of one table read at once.

A table far behind now() (its first run's bulk read, or a long outage) is read a window of N pages at a time:
one query of the cursor columns alone finds where each of the next N pages ends, then each page, bounded by
the end of the one before and its own, is read on its own connection and thread, up to N pages ahead of the
one being handed over. Pages are handed over in cursor order, so the rows, their batches and the positions
after them are those of one reader.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

import sqlalchemy as sa

Rows = Sequence[Sequence[Any]]
Fetch = Callable[[sa.Connection, sa.Select[Any]], Rows]


class ParallelPages:
    """`workers` connections of the source's engine, each read by its own thread, shared by the tables."""

    def __init__(self, engine: Callable[[], sa.Engine], workers: int, name: str) -> None:
        self.workers = workers
        self._engine = engine
        self._name = name
        self._free: list[sa.Connection] = []
        self._opened = 0  # connections open now, free or reading
        self._pool: ThreadPoolExecutor | None = None
        self.pages = 0  # pages read on the workers so far (for tests: the feature was used)

    def read(self, spans: Iterator[sa.Select[Any]], fetch: Fetch, own: sa.Connection) -> Iterator[Rows]:
        """Each span's rows, in the order of `spans`, read up to `workers` spans ahead.

        Several tables merged row by row each read their own spans through here: a span that finds no free
        connection (another table's reads hold them) is read on `own`, the source's connection, right away."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix=f"{self._name}-pages")
        ahead: deque[tuple[Future[Rows], sa.Connection]] = deque()
        broken = False
        try:
            for span in spans:
                if len(ahead) >= self.workers:
                    yield self._done(ahead)
                conn = self._take()
                if conn is None and ahead:
                    yield self._done(ahead)  # frees a connection of this table's own
                    conn = self._take()
                if conn is None:
                    yield fetch(own, span)
                    continue
                self.pages += 1
                ahead.append((self._pool.submit(fetch, conn, span), conn))
            while ahead:
                yield self._done(ahead)
        except GeneratorExit:  # the caller stopped reading (a stop): the reads ahead are simply not needed
            raise
        except BaseException:
            broken = True
            raise
        finally:
            # No read outlives the caller: wait for the reads ahead. After an error (a read's, or the database
            # gone) every connection may be broken: close them all, to be opened again by the next read.
            wait([future for future, _conn in ahead])
            for _future, conn in ahead:
                if broken:
                    self._drop(conn)
                else:
                    self._free.append(conn)
            if broken:
                self.reset()

    def _done(self, ahead: deque[tuple[Future[Rows], sa.Connection]]) -> Rows:
        future, conn = ahead[0]
        rows = future.result()  # raises the read's error; the connections are closed by the caller's finally
        ahead.popleft()
        self._free.append(conn)
        return rows

    def _take(self) -> sa.Connection | None:
        if self._free:
            return self._free.pop()
        if self._opened >= self.workers:
            return None
        # Connected here, on the source's thread: a connection failure is raised as the source's own.
        conn = self._engine().connect().execution_options(isolation_level="AUTOCOMMIT")
        self._opened += 1
        return conn

    def _drop(self, conn: sa.Connection) -> None:
        self._opened -= 1
        with contextlib.suppress(sa.exc.SQLAlchemyError):  # already broken: closing is all that was left
            conn.close()

    def reset(self) -> None:
        """Close the free connections (opened again when needed): when their prepared plans went stale."""
        free, self._free = self._free, []
        for conn in free:
            self._drop(conn)

    def close(self) -> None:
        self.reset()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
