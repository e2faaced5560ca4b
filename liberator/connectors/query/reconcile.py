"""`deletes: reconcile`: the hard deletes polling cannot see, found by comparing keys.

Every `reconcile_interval` the source reads what each of its topics gained since the last time
(liberator.topickeys: the keys with a live record), scans the keys of the tables publishing to it (the
primary key index, in pages), and publishes a tombstone for each key the topic holds and no table has.

Why no row is deleted wrongly: a key counts as vanished only when it is in the topic, so its row was read
once, and absent from the scan, which runs after the topic was read. A row inserted or re-inserted after its
key was scanned is published by a later poll, after the tombstone, since this runs on the source's own
thread between polls; consumers folding by key end with the row. A row deleted after the scan passed its key
is found at the next interval. Tables sharing a topic are scanned together, so one's keys never look like
deletes of the other's.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence

import sqlalchemy as sa

from liberator.avro import RowEncoder
from liberator.capture import BatchItem, ChangeBatch
from liberator.connectors.query.position import QueryPosition
from liberator.connectors.query.reader import TableReader
from liberator.events import ChangeEvent
from liberator.topickeys import TopicKeys


class DeleteReconciler:
    def __init__(
        self,
        topic_keys: Callable[[str], TopicKeys],
        interval: float,
        page_size: int,
        batch_size: int,
        log: logging.Logger,
    ) -> None:
        self._topic_keys = topic_keys
        self.interval = interval
        self._page = page_size
        self._batch = batch_size
        self._log = log
        self._ledgers: dict[str, TopicKeys] = {}
        self._last = time.monotonic()
        self.deleted = 0  # tombstones published, over the source's life

    def due(self) -> bool:
        return time.monotonic() - self._last >= self.interval

    def run(
        self, conn: sa.Connection, readers: Sequence[TableReader], position: QueryPosition, stop: threading.Event
    ) -> Iterator[ChangeBatch]:
        """Tombstones for the vanished keys of every topic, in batches at the (unchanged) position."""
        started = time.monotonic()
        by_topic: dict[str, list[TableReader]] = {}
        for reader in readers:
            if reader.table is not None:
                by_topic.setdefault(reader.table.stream.topic, []).append(reader)
        for topic, group in by_topic.items():
            ledger = self._ledgers.get(topic)
            if ledger is None:
                ledger = self._ledgers[topic] = self._topic_keys(topic)
            live = ledger.refresh(stop)
            if stop.is_set():
                return
            if not live:
                continue
            vanished = set(live)
            scanned = 0
            for reader in group:
                assert reader.table is not None
                encode = RowEncoder.for_key(reader.table.published).encode
                for page in reader.key_pages(conn, self._page):
                    scanned += len(page)
                    vanished.difference_update(map(encode, page))
                    if stop.is_set():
                        return
            if not vanished:
                continue
            stream = group[0].table.stream  # type: ignore[union-attr]
            now_ms = int(time.time() * 1000)
            items: list[BatchItem] = []
            for body in vanished:
                items.append(ChangeEvent(stream, TopicKeys.framed_key(body, live.pop(body)), None, now_ms, None))
                if len(items) >= self._batch:
                    yield ChangeBatch(items, position)
                    items = []
            if items:
                yield ChangeBatch(items, position)
            self.deleted += len(vanished)
            self._log.info(
                "deletes reconciled on %s: %d vanished of %d keys in the topic (%d in the table)",
                topic,
                len(vanished),
                len(vanished) + len(live),
                scanned,
            )
        self._last = time.monotonic()
        self._log.debug("delete reconciliation took %.1fs", self._last - started)
