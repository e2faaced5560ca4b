"""What a source yields and the runtime publishes."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Union

from liberator.positions import Position

if TYPE_CHECKING:
    from liberator.capture.changes import ChangeBatch


@dataclass(frozen=True, eq=False)
class Stream:
    """A topic with the Avro schemas of its keys and values, as a source currently produces it.

    A source makes a new Stream when a table's shape changes; the runtime registers (and so checks the
    compatibility of) both schemas before it publishes the first event that refers to the new Stream.
    """

    topic: str
    key_schema: dict[str, Any]
    # None: the source hands over values already in the Confluent wire format (bytes whose schema id the
    # application registered, e.g. outbox rows written as Avro); the runtime publishes them unchanged.
    value_schema: dict[str, Any] | None
    # Where the stream comes from, for logs and errors ("public.orders").
    origin: str = ""

    @cached_property
    def fingerprint(self) -> tuple[str, str, str]:
        return (
            self.topic,
            json.dumps(self.key_schema, sort_keys=True),
            json.dumps(self.value_schema, sort_keys=True),
        )


@dataclass(slots=True)  # not frozen: its __init__ cost 1.8 us against 0.26, once per outbox event; never changed
class ChangeEvent:
    """One record for Kafka. `key` and `value` are Avro datums matching the stream's schemas.

    `value is None` is a tombstone; `bytes` is a value already in the wire format (see Stream).
    `position` is where the source stands once this event and every
    earlier one are acknowledged; None inside a transaction, where resuming is not possible.
    """

    stream: Stream
    # A Key record for table rows; the aggregate id string for outbox events; None for an event about a
    # whole table (a truncate, op 't'), which is produced with no key, as Debezium does; bytes: a key already
    # in the wire format (a reconciled delete's tombstone repeats the exact key bytes the topic holds).
    key: dict[str, Any] | str | bytes | None
    value: dict[str, Any] | bytes | None
    timestamp_ms: int
    position: Position | None
    headers: tuple[tuple[str, bytes], ...] = field(default=())


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A position with no record: a heartbeat, an idle poll, the end of a snapshot phase.

    It is stored once everything yielded before it is acknowledged, so idle sources still advance.

    `durable=True`: the runtime stores it before it reads the next item from the source, instead of at the
    next flush. A source yields one where a crash must not forget where it stands, e.g. the point its stream
    will start from, before the first event of its snapshot.
    """

    position: Position
    durable: bool = False


@dataclass(frozen=True, slots=True)
class Idle:
    """Nothing to publish: the source is waiting. Yielding it lets the runtime serve acknowledgements, so a
    source that waits on its database yields one at least every second or so."""


IDLE = Idle()

# What `Source.read` yields: batches of row changes (liberator.capture.ChangeBatch), a connector's own records,
# positions without records, and idle ticks.
SourceItem = Union["ChangeBatch", ChangeEvent, Checkpoint, Idle]
