"""`on_incompatible: new_topic`: a table whose new schema the registry refuses moves to a versioned topic.

The book's "eventual migration via two event streams": instead of stopping the source, the table's events go
from then on to `{topic}.v2` (the `new_topic` template), under that topic's own subjects, and the table is
read again into it by the source's incremental snapshot (a backfill between watermarks on postgres_wal, key
pages on the query source), so the new topic holds every row and every later change in per-key order, while
the old topic keeps every record it had. A second incompatible change moves it on to `.v3`.

Where a table stands survives a restart without anything stored: the versioned topics are the record. At
start a source asks the broker once for its topics, and a table whose `{topic}.vN` exists writes to the
highest such N. The move itself is made safe against a crash by its order: the refused batch is not published,
the source reads again from its last position and first takes the table's re-read request into a durable
checkpoint, and only then publishes, to the new topic. Docs: docs/errors.md ("Incompatible schema changes").
"""

from __future__ import annotations

import logging
import re
import string
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field

from liberator.errors import LiberatorError

if TYPE_CHECKING:
    from liberator.capture.tables import CapturedTable

OnIncompatible = Literal["stop", "new_topic"]
DEFAULT_NEW_TOPIC = "{topic}.v{version}"
NEW_TOPIC_FIELDS = ("topic", "version")


def check_new_topic_template(template: str) -> str:
    """A `new_topic` template: it names {version} (else every move would go to one topic) and only the fields
    it may use."""
    try:
        names = [name for _text, name, _spec, _conv in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        example = "{topic}.v{version}"
        raise ValueError(f"new_topic {template!r} is not a valid template ({exc}); write e.g. {example}") from None
    unknown = [name for name in names if name not in NEW_TOPIC_FIELDS]
    if unknown:
        raise ValueError(f"new_topic {template!r} uses {{{unknown[0]}}}; allowed: {{topic}}, {{version}}")
    if "version" not in names:
        raise ValueError(f"new_topic {template!r} needs {{version}}, e.g. {{topic}}.v{{version}}")
    return template


class TableMoved(LiberatorError):
    """A table moved to a new topic: the source reads again from its last position, and takes the table's
    re-read request (a durable checkpoint) before it publishes anything to the new topic."""


class TableIncompatiblePolicies(BaseModel):
    """Per-table `on_incompatible` for sources that capture named tables (the source's is the default)."""

    on_incompatible_tables: dict[str, OnIncompatible] = Field(
        {},
        description="on_incompatible per table, where it differs from the source's (keys as `tables` names them): "
        "{public.orders: new_topic}",
    )


@dataclass(frozen=True)
class TopicMove:
    """One table moved to a new topic: what the log line, the metric and /health name."""

    table: str
    old_topic: str
    new_topic: str
    reason: str
    at: float

    def to_json(self) -> dict[str, object]:
        return {
            "table": self.table,
            "old_topic": self.old_topic,
            "new_topic": self.new_topic,
            "reason": self.reason,
            "at": self.at,
        }


class TopicMoves:
    """The versioned topics of one source's tables: where each configured topic's table writes now.

    `existing` lists the broker's topics; it is asked once, on the first question, so a restart finds the
    moves made before. Thread-safe: the reading thread moves, /health and /metrics read `moves`.
    """

    def __init__(
        self,
        template: str = DEFAULT_NEW_TOPIC,
        existing: Callable[[], Collection[str]] | None = None,
        log: logging.Logger | None = None,
    ) -> None:
        self.template = template
        self._existing = existing
        self._topics: Collection[str] | None = None
        self._version: dict[str, int] = {}  # configured topic -> its current version (1: not moved)
        self._base: dict[str, str] = {}  # a versioned topic -> its configured topic
        self._lock = threading.Lock()
        self.moves: list[TopicMove] = []  # made by this daemon, oldest first
        self.log = log or logging.getLogger("liberator.capture.moves")

    def render(self, base: str, version: int) -> str:
        return self.template.format(topic=base, version=version)

    def current(self, base: str) -> str:
        """The topic a table configured to write to `base` writes to now: `base`, or its newest versioned one."""
        with self._lock:
            version = self._current_version(base)
        return base if version == 1 else self.render(base, version)

    def move(self, table: CapturedTable, reason: str) -> TopicMove:
        """Move `table` (its current version and every later one) to the next versioned topic."""
        old = table.stream.topic
        with self._lock:
            base = self._base.get(old, old)
            version = self._current_version(base) + 1
            self._version[base] = version
            new = self.render(base, version)
            self._base[new] = base
            move = TopicMove(table.name, old, new, reason, time.time())
            self.moves.append(move)
        # The table object changes in place: the connector and its backfill hold it, and every reader of its
        # topic (a backfill's check for records, delete reconciliation) must see where its events go now.
        table.stream = table.stream_to(new)
        return move

    def _current_version(self, base: str) -> int:
        known = self._version.get(base)
        if known is not None:
            return known
        if self._topics is None:
            self._topics = set(self._existing()) if self._existing is not None else set()
        pattern = re.compile(
            re.escape(self.template)
            .replace(re.escape("{topic}"), re.escape(base))
            .replace(re.escape("{version}"), r"([0-9]+)")
        )
        found = [int(m.group(1)) for t in self._topics if (m := pattern.fullmatch(t)) is not None]
        version = max([1, *(v for v in found if v >= 2)])
        self._version[base] = version
        for v in range(2, version + 1):
            self._base[self.render(base, v)] = base
        if version > 1:
            self.log.info("topic %s moved to %s before (on_incompatible: new_topic)", base, self.render(base, version))
        return version
