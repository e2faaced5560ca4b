"""The cleanup of acknowledged batches (skip_locked), committed on a worker thread.

With skip_locked each batch's cleanup runs in its claim's own transaction, on its own connection, and
nothing else touches that connection once Kafka acknowledged the batch: so one worker runs the DELETE (or
UPDATE) and the COMMIT, in acknowledgement order, while the reading thread routes and claims the next
batches. Those two round trips were about a sixth of the reading thread's time, all of it waiting
(py-spy --idle, bench/outbox.py on PostgreSQL). The reading thread alone submits and asks; the worker only
runs the cleanups and keeps the first error, which the reading thread raises. A row whose cleanup did not
commit is still in the table, so it is published again: never lost.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from liberator.errors import LiberatorError


class Cleaner:
    def __init__(self, name: str, classify: Callable[[Exception], LiberatorError]) -> None:
        self._classify = classify
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"outbox-cleanup-{name}")
        self._pending: deque[tuple[Sequence[Any], Future[None]]] = deque()
        self._failed: LiberatorError | None = None

    def submit(self, ids: Sequence[Any], cleanup: Callable[[], None], release: Callable[[], None]) -> None:
        """Run `cleanup` (the batch of `ids`) after the ones submitted before; `release` lets go of the
        batch's transaction if it fails."""
        self._pending.append((ids, self._worker.submit(self._run, cleanup, release)))

    def _run(self, cleanup: Callable[[], None], release: Callable[[], None]) -> None:
        try:
            cleanup()
        except SQLAlchemyError as exc:
            release()
            if self._failed is None:
                self._failed = self._classify(exc)

    def pending(self) -> list[Sequence[Any]]:
        """The ids of the batches whose cleanup has not committed yet (their rows are still locked)."""
        pending = self._pending
        while pending and pending[0][1].done():
            pending.popleft()
        return [ids for ids, future in pending if not future.done()]

    def failure(self) -> LiberatorError | None:
        """The first cleanup error since the last call, if any (the batch's rows are published again)."""
        failed, self._failed = self._failed, None
        return failed

    def drain(self) -> None:
        """Wait until every submitted cleanup has committed or failed."""
        while self._pending:
            self._pending.popleft()[1].result()

    def close(self) -> None:
        self.drain()
        self._worker.shutdown(wait=True)
