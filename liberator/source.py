"""The one small interface every source connector implements.

A connector reads its database and yields `ChangeEvent`s (Avro datums plus the position after each)
and `Checkpoint`s. The runtime does the rest: schema registration, serialisation, publishing, storing
positions only after Kafka acknowledged everything before them, retries, metrics.
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from liberator.errors import FatalSourceError
from liberator.events import SourceItem, Stream
from liberator.positions import Position
from liberator.registry.client import RegistryClient


class SourceConfig(BaseModel):
    """Fields every source has; a connector subclasses this with its own, validated at load time."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    type: str


@dataclass(frozen=True)
class SourceContext:
    app_name: str  # the config's `name`: part of client ids and offset keys
    stop: threading.Event  # set on shutdown; sources leave their loops promptly when it is
    log: logging.Logger
    # The daemon's schema registry, for sources that must read schemas the application registered
    # (outbox payloads validated against their subject). None where no registry is configured (tests, bench).
    registry: RegistryClient | None = None
    # The first of these topics that already holds a record, or None: evidence that a source without a
    # stored position ran before. None where there is no broker to ask (tests, bench): no such evidence.
    published: Callable[[Sequence[str]], str | None] | None = None
    # `liberator run --from-scratch`: a source without a stored position starts over even where the evidence
    # says it ran before (see `lost_position`).
    from_scratch: bool = False


def lost_position(source: str, evidence: str, start_over: str) -> FatalSourceError:
    """The error of a source with no stored position that evidently ran before (a lost or reset offsets store).

    Starting from scratch silently would publish everything again and never retract what was deleted in
    between; the operator chooses instead (Debezium's offset.mismatch.strategy).
    """
    return FatalSourceError(
        f"source {source}: no stored position, but {evidence} (the offsets store was lost or reset?); "
        f"run `liberator run CONFIG --from-scratch` to {start_over}, or "
        f"`liberator offsets set CONFIG --source {source} POSITION` to resume"
    )


class Source(ABC):
    config_model: ClassVar[type[SourceConfig]]
    position_type: ClassVar[type[Position]]
    # What the source is doing, for /health: "snapshot", "polling", "streaming"...
    phase: str = ""

    def __init__(self, config: SourceConfig, context: SourceContext) -> None:
        self.config = config
        self.context = context

    @abstractmethod
    def check(self) -> list[str]:
        """Connect and verify everything the source needs; one line per problem, each naming the fix."""

    @abstractmethod
    def streams(self) -> list[Stream]:
        """The streams the source would publish now (for `liberator schemas` and start-up registration)."""

    @abstractmethod
    def read(self, start: Position | None) -> Iterator[SourceItem]:
        """Yield events from `start` (None: from the beginning, snapshot first) until `context.stop` is set.

        Raise TransientSourceError when the database goes away (the runtime reopens at the last position
        yielded), FatalSourceError when only an operator can help.
        """

    def delivered(self, position: Position) -> None:  # noqa: B027 - optional hook
        """Kafka acknowledged every event up to `position`; the position may not be stored yet.

        Called, in position order, from whichever thread moved the position (a Kafka delivery callback,
        or the reading thread yielding a checkpoint) while the runtime holds its acknowledgement lock:
        record the fact and return at once. For sources whose own table is the
        durable record of what is left (the outbox), this is the moment to clean up; sources that resume
        from the stored position act on `acknowledged` instead.
        """

    def acknowledged(self, position: Position) -> None:  # noqa: B027 - optional hook
        """Everything up to `position` is acknowledged by Kafka and the position is stored.

        Called from the daemon's committer thread (or, for a durable Checkpoint, from the reading thread
        before `read` goes on), in position order, so keep it to recording the fact: the reading thread acts
        on it (confirm a replication slot's flush LSN, delete published outbox rows). It may also come after
        `close()`, for the last positions stored at shutdown.
        """

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; called once after `read` ends, however it ended."""
