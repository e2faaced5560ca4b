"""What happens to a row that cannot become an event: the `on_error` policy every source shares.

A row is poison when its values cannot be converted, encoded or transformed (a value its Avro type cannot
hold, an outbox payload that does not match its schema). The policy is applied here, once, for every source:

- `stop` (the default): the source stops with the one-line reason; nothing after the row is published;
- `dead_letter`: the row goes to the dead-letter topic as JSON text (its raw values) with headers naming the
  source, table, position and reason, in the same batch as the events around it, so the position moves past
  it only once Kafka acknowledged the dead letter too (a crash re-sends it, never loses it);
- `skip`: the row is counted (`liberator_source_skipped_rows_total{source,table,reason}`) and logged.

Either way a row is never dropped silently. Problems with a table's shape (a column type with no mapping, an
incompatible schema) are not row errors: they stop the source whatever the policy.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import math
import string
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from liberator.envelope import Op
from liberator.errors import FatalSourceError, LiberatorError

if TYPE_CHECKING:
    from liberator.capture.changes import RowChange
    from liberator.capture.eventify import Record
    from liberator.positions import Position

OnError = Literal["stop", "dead_letter", "skip"]
DEFAULT_DEAD_LETTER_TOPIC = "{source}.dlq"
DEAD_LETTER_FIELDS = ("source", "app")

# The dead letter's headers (its value is the row as JSON text: {"op", "before", "after"}).
HEADER_SOURCE = "liberator.source"
HEADER_TABLE = "liberator.table"
HEADER_POSITION = "liberator.position"
HEADER_ERROR = "liberator.error"
HEADER_OP = "liberator.op"

# Reasons, as the skipped-rows metric labels them (few values: a label, not a message).
CONVERSION = "conversion"  # a value its Avro type cannot hold
TRANSFORM = "transform"  # a mask, filter or other transform failed on the row
INVALID = "invalid"  # a connector's own validation refused the row (an outbox payload)


class TransformError(LiberatorError):
    """A transform could not be applied to one row (the row goes to its table's `on_error` policy)."""


_FIX = "set on_error: dead_letter or skip to let the stream move past such rows"


class DeadLetterTopic(BaseModel):
    """Where `on_error: dead_letter` sends the rows that cannot become events."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    topic: str = Field(
        DEFAULT_DEAD_LETTER_TOPIC,
        description="template ({source}, {app}): each poison row as JSON text, with the source, table, position "
        "and reason in headers",
    )

    @field_validator("topic")
    @classmethod
    def _template(cls, value: str) -> str:
        return check_dead_letter_template(value)


def check_dead_letter_template(template: str) -> str:
    try:
        names = [name for _text, name, _spec, _conv in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        raise ValueError(
            f"dead-letter topic {template!r} is not a valid template ({exc}); write e.g. {{source}}.dlq"
        ) from None
    unknown = [name for name in names if name not in DEAD_LETTER_FIELDS]
    if unknown:
        raise ValueError(f"dead-letter topic {template!r} uses {{{unknown[0]}}}; allowed: {{source}}, {{app}}")
    return template


class TableErrorPolicies(BaseModel):
    """Per-table `on_error` for sources that capture named tables (the source's `on_error` is the default)."""

    on_error_tables: dict[str, OnError] = Field(
        {},
        description="on_error per table, where it differs from the source's (keys as `tables` names them): "
        "{schema.audit_log: skip}",
    )


class PoisonRow:
    """A row that cannot become an event: its raw values, the reason, and the policy that applies. A connector
    puts one in its ChangeBatch, in order, for a row it could not read; the core makes one of a change it
    could not convert (`of_change`)."""

    __slots__ = (
        "after",
        "before",
        "key",
        "kind",
        "on_error",
        "op",
        "position",
        "reason",
        "table",
        "timestamp_ms",
        "topic",
    )

    def __init__(
        self,
        table: str,
        reason: str,
        *,
        on_error: OnError,
        op: Op = Op.create,
        after: Mapping[str, Any] | None = None,
        before: Mapping[str, Any] | None = None,
        key: Mapping[str, Any] | None = None,
        position: str | None = None,
        timestamp_ms: int | None = None,
        kind: str = INVALID,
        topic: str | None = None,
    ) -> None:
        self.table = table
        self.reason = reason
        self.on_error = on_error
        self.op = op
        self.after = after
        self.before = before
        self.key = key
        self.position = position
        self.timestamp_ms = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
        self.kind = kind
        self.topic = topic  # None: the source's dead_letter.topic

    @classmethod
    def of_change(cls, change: RowChange, reason: str, kind: str, on_error: OnError) -> PoisonRow:
        """The poison row of a change the core could not turn into records (values by column name)."""
        table = change.table
        names = table.columns
        mask = table.mask  # masked values stay hidden; a masked column is never what failed (masks come first)

        def image(values: Sequence[Any] | None) -> dict[str, Any] | None:
            if values is None:
                return None
            return dict(zip(names, values if mask is None else mask(values), strict=False))

        key = None
        if change.key is not None:
            key = dict(zip(table.shape.key, change.key, strict=False))
        elif change.after is not None or change.before is not None:
            row = change.after if change.after is not None else change.before
            assert row is not None
            key = {names[i]: row[i] for i in table.key_index if i < len(row)}
        return cls(
            table.name,
            reason,
            on_error=on_error,
            op=change.op,
            after=image(change.after),
            before=image(change.before),
            key=key,
            position=change.txn.position,
            timestamp_ms=change.txn.timestamp_ms,
            kind=kind,
        )

    def value_json(self) -> str:
        document = {"op": self.op.value, "before": _plain_row(self.before), "after": _plain_row(self.after)}
        return json.dumps(document, ensure_ascii=False, separators=(",", ":"))

    def key_json(self) -> str | None:
        return None if self.key is None else json.dumps(_plain_row(self.key), ensure_ascii=False, separators=(",", ":"))


class RowErrors:
    """Applies the policy to poison rows of one source: a record for the dead-letter topic, a count, or the
    error that stops the source. Lives on the source's reading thread."""

    def __init__(
        self,
        source: str,
        app: str,
        dead_letter_topic: str,
        *,
        log: logging.Logger,
        ensure_topic: Callable[[str], None] = lambda _topic: None,
        counted: Callable[[PoisonRow], None] = lambda _row: None,
    ) -> None:
        self.source = source
        self.app = app
        self.topic = dead_letter_topic.format(source=source, app=app)
        self.log = log
        self._ensure_topic = ensure_topic
        self._counted = counted
        self._ready: set[str] = set()
        self._lines = _LineBudget()

    def handle(self, row: PoisonRow, append: Callable[[Record], None], position: Position | None) -> None:
        """Apply the row's policy; `position` is the batch's, shown where the row carries none of its own."""
        where = row.position or _position_text(position)
        if row.on_error == "stop":
            raise FatalSourceError(f"{row.reason} (at {where or 'the start'}); fix the row, or {_FIX}")
        if row.on_error == "dead_letter":
            topic = row.topic or self.topic
            if topic not in self._ready:
                self._ensure_topic(topic)
                self._ready.add(topic)
            key = row.key_json()
            headers = [
                (HEADER_SOURCE, self.source.encode()),
                (HEADER_TABLE, row.table.encode()),
                (HEADER_POSITION, where.encode()),
                (HEADER_ERROR, row.reason.encode()),
                (HEADER_OP, row.op.value.encode()),
            ]
            append((topic, None if key is None else key.encode(), row.value_json().encode(), row.timestamp_ms, headers))
            done = f"sent to {topic}"
        else:
            done = "skipped"
        self._counted(row)
        if self._lines.allow():
            suppressed = self._lines.take_suppressed()
            more = f" ({suppressed} more rows since the last such line)" if suppressed else ""
            self.log.warning(
                "on_error: %s: a row of %s at %s %s: %s%s", row.on_error, row.table, where, done, row.reason, more
            )


class _LineBudget:
    """At most `burst` log lines per `window` seconds; the rest are counted and reported with the next line."""

    def __init__(self, burst: int = 10, window: float = 10.0) -> None:
        self.burst = burst
        self.window = window
        self._started = 0.0
        self._used = 0
        self._suppressed = 0

    def allow(self) -> bool:
        now = time.monotonic()
        if now - self._started >= self.window:
            self._started, self._used = now, 0
        if self._used < self.burst:
            self._used += 1
            return True
        self._suppressed += 1
        return False

    def take_suppressed(self) -> int:
        suppressed, self._suppressed = self._suppressed, 0
        return suppressed


def _position_text(position: Position | None) -> str:
    if position is None:
        return ""
    return json.dumps(position.to_json(), ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def _plain_row(row: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return None if row is None else {str(name): _plain(value) for name, value in row.items()}


def _plain(value: Any) -> Any:
    """A raw value as JSON can hold it, as close to the database's text as possible."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return "base64:" + base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, set | frozenset):
        return sorted(_plain(v) for v in value)
    if isinstance(value, Sequence):
        return [_plain(v) for v in value]
    return str(value)
