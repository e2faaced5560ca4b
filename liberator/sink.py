"""The one small interface every sink connector implements.

A sink says what to consume (`Consuming`), where it stands (`applied_offsets`: the highest offset per
topic-partition it has applied, read from its own store) and applies batches (`write`). The runtime
(liberator.sinkrunner) does the rest: the consumer group, seeking each assigned partition to the sink's
own stored offset + 1, batching by size and time, committing Kafka offsets only after `write` returned,
retries with backoff, dead-letter publishing, metrics and clean shutdown.

Effectively once is the sink's side of the contract: `write` must store the highest offset it applied per
partition atomically with the data, and skip records at or below an offset already stored (another group
member may have applied them after a rebalance).
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, NamedTuple, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from liberator.errors import LiberatorError
from liberator.registry.client import RegistryClient


class SinkConfig(BaseModel):
    """Fields every sink has; a connector subclasses this with its own, validated at load time."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    type: str
    static_membership: bool = Field(
        True,
        description="join the consumer group as a static member (group.instance.id), so a restarted sink takes its "
        "partitions back at once instead of after the dead member's session.timeout.ms; false: a dynamic member",
    )
    group_instance_id: str | None = Field(
        None,
        description="the static member's id; default: liberator-{app}-{sink}-{host}-{slot} (slot: the lowest "
        "free number among this config's daemons on the host, so it is stable across restarts); every daemon "
        "running at once needs its own, e.g. ${POD_NAME}",
    )


class FatalSinkError(LiberatorError):
    """Only an operator can help (missing table, impossible type change, a bad record under on_error: stop).

    The runtime stops that sink; nothing after the last applied batch is marked as consumed.
    """


class TransientSinkError(LiberatorError):
    """The target went away or a lock conflict aborted the batch; the runtime retries the same batch."""


class SinkRecord(NamedTuple):
    """One consumed Kafka record, bytes as they were on the topic (a named tuple: one is made per record)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None = None
    headers: tuple[tuple[str, bytes | None], ...] = ()


@dataclass(frozen=True)
class Consuming:
    """What and how a sink consumes; the runtime builds the consumer from it."""

    topics: tuple[str, ...]  # names, or regular expressions starting with "^" (librdkafka's rule)
    group_id: str
    batch_size: int = 1000
    batch_time: float = 1.0  # seconds: a batch is written when it is this old, even if not full
    # Where a partition starts when the sink has stored nothing for it and the group has no committed offset.
    start: str = "earliest"
    settings: dict[str, Any] = field(default_factory=dict)  # librdkafka consumer settings, applied last


# dead_letter(record, reason): publish the record's original bytes to the sink's dead-letter topic with the
# reason in headers, and return once the broker acknowledged it. Raises FatalSinkError when it cannot.
DeadLetter = Callable[[SinkRecord, str, str], None]


@dataclass(frozen=True)
class SinkContext:
    app_name: str
    stop: threading.Event
    log: logging.Logger
    registry: RegistryClient
    dead_letter: DeadLetter


ConfigT = TypeVar("ConfigT", bound=SinkConfig)


class Sink(ABC, Generic[ConfigT]):
    """A sink of one config model: `Sink[MyConfig]`.

    The runtime builds it with a config of `config_model` (validated at load), so the connector needs no type
    checks of its own.
    """

    config_model: ClassVar[type[SinkConfig]]

    def __init__(self, config: ConfigT, context: SinkContext) -> None:
        self.config: ConfigT = config
        self.context = context

    @property
    @abstractmethod
    def consuming(self) -> Consuming:
        """Topics, group and batching."""

    @abstractmethod
    def check(self) -> list[str]:
        """Connect and verify what the sink needs; one line per problem, each naming the fix."""

    @abstractmethod
    def applied_offsets(self, partitions: Sequence[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """The highest offset already applied per (topic, partition), for those the sink has stored."""

    @abstractmethod
    def write(self, records: Sequence[SinkRecord]) -> int:
        """Apply a batch (in offset order per partition) atomically with its offsets; return rows changed.

        Raise TransientSinkError to have the same batch retried, FatalSinkError to stop.
        """

    def close(self) -> None:
        """Release connections."""


AnySink = Sink[Any]
