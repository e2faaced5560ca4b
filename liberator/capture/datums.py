"""Batches as events with Avro datums instead of bytes: for `liberator schemas`, tests and dry runs.

The same `Eventifier` makes them as the runtime does, only with `DatumCodec`, so what a test sees of a
source's output is what Kafka gets, decoded.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from liberator.capture.changes import ChangeBatch
from liberator.capture.eventify import DatumCodec, Eventifier
from liberator.capture.tables import CapturedTable
from liberator.envelope import Envelope
from liberator.events import ChangeEvent, Checkpoint, SourceItem, Stream


def datum_events(items: Iterable[SourceItem], envelope: Envelope) -> Iterator[ChangeEvent | Checkpoint]:
    """Each batch's records as `ChangeEvent`s with datums, then a `Checkpoint` at its position (if any);
    checkpoints and a connector's own records pass through; idle ticks are dropped."""
    streams: dict[str, Stream] = {}

    def prepare(table: CapturedTable, topic: str) -> DatumCodec:
        streams[topic] = table.stream_to(topic)
        return DatumCodec(table, topic)

    def prepare_event(event: ChangeEvent) -> tuple[object, object]:
        streams[event.stream.topic] = event.stream
        return event.key, event.value

    eventifier = Eventifier(envelope, prepare, prepare_event)
    for item in items:
        if isinstance(item, ChangeBatch):
            for topic, key, value, timestamp, headers in eventifier.records(item.items, item.committed):
                yield ChangeEvent(streams[topic], key, value, timestamp, None, tuple(headers or ()))
            if item.position is not None:
                yield Checkpoint(item.position)
        elif isinstance(item, ChangeEvent | Checkpoint):
            yield item
