"""What the daemon waits for before it starts its sources and sinks: a broker that answers, and the stored
positions read (from the Kafka offset store, that needs the broker too).

A broker that is down or hung at start is an outage like any other: waited out with backoff, shown as
`retrying` with the reason on every source and sink in /health, and given up at once on stop.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from liberator.metrics import SinkStatus, SourceStatus
from liberator.offsets import OffsetStore, StoredOffset
from liberator.offsets.kafka import OffsetStoreUnavailable
from liberator.supervisor import Backoff, mark_recovered, mark_retrying
from liberator.topics import BrokerUnavailable, StoppedWaiting, TopicManager

log = logging.getLogger("liberator")


def wait_for_kafka(
    topics: TopicManager,
    store: OffsetStore,
    statuses: Sequence[SourceStatus | SinkStatus],
    stop: threading.Event,
    stored: dict[str, StoredOffset] | None = None,
    beat: Callable[[], None] = lambda: None,
) -> dict[str, StoredOffset] | None:
    """The stored positions (`stored` when already read), once the broker answers and they are read; None
    when stopped meanwhile. `beat` is called on every attempt: waiting for a broker is not being wedged."""
    backoff = Backoff()
    while True:
        beat()
        try:
            topics.wait_for_broker(stop)
            if stored is None:
                stored = store.load_all()
        except StoppedWaiting:
            return None
        except (BrokerUnavailable, OffsetStoreUnavailable) as exc:
            seconds = backoff.next()
            mark_retrying(statuses, str(exc))  # every source and sink waits for the same broker
            log.warning("%s; retrying in %gs", exc, seconds)
            beat()
            if stop.wait(seconds):
                return None
            continue
        mark_recovered(statuses, "starting")  # the wait is over; the runners take it from here
        return stored
