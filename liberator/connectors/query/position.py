"""Where a query-based source stands: per stream, the last cursor emitted and the NULL-cursor pass; and the
snapshots on demand under way, each at the last key it published (liberator.snapshots)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Self

from liberator.positions import Position, decode_scalar, encode_scalar
from liberator.snapshots import Backfill


@dataclass(frozen=True)
class StreamCursor:
    # The cursor values (timestamp, tie-breakers) of the last row emitted; None: nothing emitted yet.
    cursor: tuple[object, ...] | None = None
    # Rows whose timestamp is NULL are read once, by key, before anything else: the last key read.
    nulls_after: tuple[object, ...] | None = None
    nulls_done: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "cursor": None if self.cursor is None else [encode_scalar(v) for v in self.cursor],
            "nulls_after": None if self.nulls_after is None else [encode_scalar(v) for v in self.nulls_after],
            "nulls_done": self.nulls_done,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StreamCursor:
        cursor = data.get("cursor")
        nulls_after = data.get("nulls_after")
        return cls(
            cursor=None if cursor is None else tuple(decode_scalar(v) for v in cursor),
            nulls_after=None if nulls_after is None else tuple(decode_scalar(v) for v in nulls_after),
            nulls_done=bool(data.get("nulls_done", False)),
        )


@dataclass(frozen=True)
class QueryPosition(Position):
    streams: tuple[tuple[str, StreamCursor], ...] = ()
    backfills: tuple[Backfill, ...] = ()  # in the order they run: the first one is read until done
    signals: tuple[str, ...] = ()  # ids of the signal table's rows already taken (and still in it)

    def get(self, stream: str) -> StreamCursor:
        for name, cursor in self.streams:
            if name == stream:
                return cursor
        return StreamCursor()

    def with_cursor(self, stream: str, cursor: StreamCursor) -> QueryPosition:
        # Called once per row: swap in place when the stream is known, sort only when one is added.
        for index, (name, _old) in enumerate(self.streams):
            if name == stream:
                return QueryPosition(
                    (*self.streams[:index], (stream, cursor), *self.streams[index + 1 :]), self.backfills, self.signals
                )
        streams = tuple(sorted((*self.streams, (stream, cursor)), key=lambda item: item[0]))
        return QueryPosition(streams, self.backfills, self.signals)

    def with_backfills(self, backfills: tuple[Backfill, ...]) -> QueryPosition:
        return QueryPosition(self.streams, backfills, self.signals)

    def with_signals(self, signals: tuple[str, ...]) -> QueryPosition:
        return QueryPosition(self.streams, self.backfills, signals)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"streams": {name: cursor.to_json() for name, cursor in self.streams}}
        if self.backfills:  # absent otherwise: positions stored before snapshots on demand read the same
            out["backfills"] = [b.to_json() for b in self.backfills]
        if self.signals:  # likewise
            out["signals"] = list(self.signals)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        streams = data["streams"]
        if not isinstance(streams, dict):
            raise ValueError("streams must be an object")
        backfills = tuple(Backfill.from_json(b) for b in data.get("backfills") or ())
        signals = tuple(str(s) for s in data.get("signals") or ())
        return cls(tuple(sorted((str(k), StreamCursor.from_json(v)) for k, v in streams.items())), backfills, signals)
