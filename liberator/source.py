"""The one small interface every source connector implements.

A connector reads its database and yields batches of row changes (`liberator.capture.ChangeBatch`) with the
position after each, `Checkpoint`s (a position with nothing to publish) and `IDLE` while it waits. The core
and the runtime do the rest: keys, envelopes, schemas, serialisation, publishing, storing positions only
after Kafka acknowledged everything before them, retries, metrics. docs/new-connector.md walks through one.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from liberator.capture.moves import DEFAULT_NEW_TOPIC, OnIncompatible, TopicMoves, check_new_topic_template
from liberator.capture.rowerrors import DeadLetterTopic, OnError
from liberator.errors import FatalSourceError
from liberator.events import IDLE, Idle, SourceItem, Stream
from liberator.positions import Position
from liberator.registry.client import RegistryClient
from liberator.snapshots import SnapshotDesk

if TYPE_CHECKING:  # liberator.topickeys needs the config, which needs this module
    from liberator.topickeys import TopicKeys


class SourceConfig(BaseModel):
    """Fields every source has; a connector subclasses this with its own, validated at load time."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    type: str
    on_error: OnError = Field(
        "stop",
        description="a row that cannot be converted, encoded or transformed: stop the source with the reason, "
        "send it to the dead-letter topic (dead_letter), or count and log it (skip); docs/errors.md",
    )
    dead_letter: DeadLetterTopic = Field(DeadLetterTopic(), description="where on_error: dead_letter sends rows")
    on_incompatible: OnIncompatible = Field(
        "stop",
        description="a table change whose new schema the registry refuses: stop the source with the reason, or "
        "move the table to a new versioned topic and read it again into it (new_topic); docs/errors.md",
    )
    new_topic: str = Field(
        DEFAULT_NEW_TOPIC,
        description="with on_incompatible: new_topic: the versioned topic's template ({topic}: the table's "
        "configured topic, {version}: 2, 3, ...)",
    )

    @field_validator("new_topic")
    @classmethod
    def _new_topic_template(cls, value: str) -> str:
        return check_new_topic_template(value)

    def moves_tables(self) -> bool:
        """Whether a table of this source may move to a new topic (on_incompatible: new_topic anywhere)."""
        tables = getattr(self, "on_incompatible_tables", None) or {}
        entries = getattr(self, "tables", None) or []
        return (
            self.on_incompatible == "new_topic"
            or "new_topic" in tables.values()
            or any(getattr(entry, "on_incompatible", None) == "new_topic" for entry in entries)
        )


class Pacing:
    """How long a source may wait on its database before it yields IDLE.

    The runtime serves Kafka's acknowledgements between two items a source yields, so while records are in
    flight it shortens the wait (`busy`): their acknowledgements, and the positions they free, are heard
    within milliseconds instead of at the next idle tick. Sources read `max_wait` each time they wait.
    """

    idle = 0.5
    busy = 0.005

    def __init__(self) -> None:
        self.max_wait = self.idle


@dataclass(frozen=True)
class SourceContext:
    app_name: str  # the config's `name`: part of client ids and offset keys
    stop: threading.Event  # set on shutdown; sources leave their loops promptly when it is
    log: logging.Logger
    # The daemon's schema registry, for sources that must read schemas the application registered
    # (outbox payloads validated against their subject). None where no registry is configured (tests, bench).
    registry: RegistryClient | None = None
    pacing: Pacing = field(default_factory=Pacing)
    # The first of these topics that already holds a record, or None: evidence that a source without a
    # stored position ran before. None where there is no broker to ask (tests, bench): no such evidence.
    published: Callable[[Sequence[str]], str | None] | None = None
    # Those of these topics that hold a record (liberator.topics.with_records); None where there is no broker.
    with_records: Callable[[Sequence[str]], list[str]] | None = None
    # `liberator run --from-scratch`: a source without a stored position starts over even where the evidence
    # says it ran before (see `lost_position`).
    from_scratch: bool = False
    # The live keys of a topic (liberator.topickeys), for sources that find deletes by comparing them with
    # their table (the query source's `deletes: reconcile`). None where there is no broker (tests, bench).
    topic_keys: Callable[[str], TopicKeys] | None = None
    # Snapshots the operator asked for while the source runs (liberator.snapshots); sources that take them
    # say so with `snapshots_on_demand`.
    snapshots: SnapshotDesk = field(default_factory=SnapshotDesk)
    # The versioned topics of tables moved by on_incompatible: new_topic (liberator.capture.moves); the runtime
    # gives it the broker's topic list, so moves made before a restart are found.
    topic_moves: TopicMoves = field(default_factory=TopicMoves)

    def idle(self, seconds: float) -> Iterator[Idle]:
        """Wait `seconds` (or until stop), yielding IDLE at least every `pacing.max_wait`: for sources that
        wait on a clock (a poll interval) rather than on their database's socket."""
        deadline = time.monotonic() + seconds
        while not self.stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self.stop.wait(min(left, self.pacing.max_wait))
            yield IDLE


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


ConfigT = TypeVar("ConfigT", bound=SourceConfig)
PositionT = TypeVar("PositionT", bound=Position)


class Source(ABC, Generic[ConfigT, PositionT]):
    """A source of one config model and one position type: `Source[MyConfig, MyPosition]`.

    The runtime builds it with a config of `config_model` (validated at load) and hands `read` a position of
    `position_type` (decoded from the offset store) or None, so the connector needs no type checks of its own.
    """

    config_model: ClassVar[type[SourceConfig]]
    position_type: ClassVar[type[Position]]
    # What the source is doing, for /health: "snapshot", "polling", "streaming"...
    phase: str = ""
    snapshots_on_demand: ClassVar[bool] = False  # reads `context.snapshots` (liberator.snapshots)
    # Re-reads a table moved by on_incompatible: new_topic (liberator.capture.moves, docs/errors.md); needs
    # snapshots on demand, the moves passed to its CaptureSettings and the desk taken when `read` starts.
    table_moves: ClassVar[bool] = False
    # True while the runtime holds this source's lease (docs/ha.md): a slot or server_id another session
    # still uses then belongs to a daemon that lost the lease and is ending, so wait for it (transient).
    leased: bool = False

    def __init__(self, config: ConfigT, context: SourceContext) -> None:
        self.config: ConfigT = config
        self.context = context

    @abstractmethod
    def check(self) -> list[str]:
        """Connect and verify everything the source needs; one line per problem, each naming the fix."""

    @abstractmethod
    def streams(self) -> list[Stream]:
        """The streams the source would publish now (for `liberator schemas` and start-up registration)."""

    @abstractmethod
    def read(self, start: PositionT | None) -> Iterator[SourceItem]:
        """Yield batches from `start` (None: from the beginning, snapshot first) until `context.stop` is set.

        Yield `IDLE` at least every second or so while waiting on the database: the runtime serves Kafka's
        acknowledgements (and the hooks below) between two items. A delivery failure is raised into the
        generator at the item it yielded last. Raise TransientSourceError when the database goes away (the
        runtime reopens at the last position yielded), FatalSourceError when only an operator can help.
        """

    def delivered(self, position: PositionT) -> None:
        """Kafka acknowledged every record up to `position`; the position may not be stored yet.

        Called on the reading thread, between two items, in position order. For sources whose own table is
        the durable record of what is left (the outbox), this is the moment to clean up; sources that resume
        from the stored position act on `acknowledged` instead.
        """

    def acknowledged(self, position: PositionT) -> None:
        """Everything up to `position` is acknowledged by Kafka and the position is stored.

        Called on the reading thread, between two items (or before `read` goes on after a durable Checkpoint),
        in position order: confirm a replication slot's flush LSN, forget what is safely stored. Positions
        stored at shutdown may never be heard.
        """

    def close(self) -> None:
        """Release connections; called once after `read` ends, however it ended."""

    def backlog_bytes(self, stored: PositionT | None) -> int | None:
        """Bytes of the database's log not yet covered by the stored position `stored` (the WAL a slot
        holds, the binlog after it), or None where the source reads no such log (liberator.backlog).

        Called every few seconds on the daemon's backlog thread, never on the reading thread: use a short
        connection of your own, bounded by the source's timeouts, and touch no state `read` changes."""
        return None

    # -- the single-writer lease (liberator.lease, docs/ha.md) -----------------------------------------

    def lease_url(self) -> str | None:
        """The database that holds this source's lease: the one it reads (None: the source cannot have one)."""
        url = getattr(self.config, "url", None)
        return url if isinstance(url, str) else None

    def lease_key(self) -> str:
        """What the lease names: this app's source. A source draining a resource that other apps could drain
        too (the outbox's table) names that resource instead."""
        return f"liberator {self.context.app_name}/{self.config.name}"

    def lease_required(self) -> bool:
        """Whether the source needs the lease even with `ha.mode: off` (the outbox's `locking: leader`)."""
        return False


AnySource = Source[Any, Any]
