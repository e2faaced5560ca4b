"""Snapshots on demand: requests from the operator to a running source, and their progress back.

`liberator snapshot CONFIG --source NAME --table T [--where SQL]` posts a request to the daemon's admin
endpoint (liberator.admin); the endpoint hands it to the source's `SnapshotDesk`, and the source's reading
thread takes it at its next loop. From then on the request is part of the source's position (stored with
the offsets), so a daemon killed mid-backfill resumes it from the last chunk it published. The source
reports what it is doing back through the desk, for `--status` and /health.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from liberator.positions import decode_scalar, encode_scalar


@dataclass(frozen=True)
class SnapshotRequest:
    tables: tuple[str, ...]
    where: str | None = None  # an SQL condition on the table's columns: only those rows are read
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "tables": list(self.tables), "where": self.where}


def signal_requests(signal_id: str, kind: str, data: str | None) -> list[SnapshotRequest]:
    """The snapshot requests of one row of a Debezium-style signal table (`id, type, data`).

    `execute-snapshot` with `{"data-collections": [...], "type": "incremental", "additional-conditions":
    [{"data-collection": T, "filter": SQL}]}` asks for those tables (a table with a condition gets its own
    request); anything else raises ValueError with the reason, for one log line."""
    if kind != "execute-snapshot":
        raise ValueError(f"signal {signal_id}: type {kind!r} is not supported (only execute-snapshot)")
    try:
        body = json.loads(data or "{}")
    except ValueError:
        raise ValueError(f"signal {signal_id}: its data is not JSON") from None
    tables = body.get("data-collections") if isinstance(body, dict) else None
    if not isinstance(tables, list) or not tables or not all(isinstance(t, str) for t in tables):
        raise ValueError(f'signal {signal_id}: data needs "data-collections": ["schema.table", ...]')
    if body.get("type", "incremental").lower() != "incremental":
        raise ValueError(f"signal {signal_id}: only incremental snapshots are supported, not {body['type']!r}")
    conditions: dict[str, str] = {}
    for condition in body.get("additional-conditions") or []:
        if (
            isinstance(condition, dict)
            and isinstance(condition.get("data-collection"), str)
            and condition.get("filter")
        ):
            conditions[condition["data-collection"]] = str(condition["filter"])
    plain = tuple(t for t in tables if t not in conditions)
    requests = [SnapshotRequest(plain, None, signal_id)] if plain else []
    for i, table in enumerate(t for t in tables if t in conditions):
        requests.append(SnapshotRequest((table,), conditions[table], f"{signal_id}-{i}"))
    return requests


class SnapshotDesk:
    """Thread-safe: the admin endpoint submits and cancels, the source's reading thread takes and reports."""

    def __init__(self) -> None:
        self._requests: queue.SimpleQueue[SnapshotRequest] = queue.SimpleQueue()
        self._cancels: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._queued: dict[str, SnapshotRequest] = {}
        self._status: list[dict[str, Any]] = []  # what the source last reported: one entry per table backfill
        self._refused: dict[str, str] = {}  # request id -> why the source refused it

    def submit(self, request: SnapshotRequest) -> None:
        with self._lock:
            self._queued[request.id] = request
        self._requests.put(request)

    def cancel(self, request_id: str) -> bool:
        """True when the id is queued or running; the source drops it at its next loop."""
        with self._lock:
            known = request_id in self._queued or any(s["id"] == request_id for s in self._status)
        if known:
            self._cancels.put(request_id)
        return known

    def queued_tables(self) -> set[str]:
        """The tables of requests not taken yet, as they were named."""
        with self._lock:
            return {table for request in self._queued.values() for table in request.tables}

    # -- the source's side --------------------------------------------------------------------------

    def take(self) -> list[SnapshotRequest]:
        taken = []
        while True:
            try:
                taken.append(self._requests.get_nowait())
            except queue.Empty:
                return taken

    def take_cancels(self) -> set[str]:
        ids = set()
        while True:
            try:
                ids.add(self._cancels.get_nowait())
            except queue.Empty:
                return ids

    def taken(self, request: SnapshotRequest, refusal: str | None = None) -> None:
        with self._lock:
            self._queued.pop(request.id, None)
            if refusal is not None:
                self._refused[request.id] = refusal

    def intake(
        self,
        backfills: tuple[Backfill, ...],
        accept: Callable[[SnapshotRequest], tuple[list[Backfill], str | None]],
        captured: set[str],
        log: logging.Logger,
    ) -> tuple[tuple[Backfill, ...], bool]:
        """The source's backfills after the cancels and requests that arrived (`accept` turns a request into
        backfills or says why not), without those whose table is no longer captured; and whether they changed."""
        kept = list(backfills)
        changed = False
        cancelled = self.take_cancels()
        if cancelled:
            kept = [b for b in kept if b.id not in cancelled]
            changed = True
            log.info("snapshot %s cancelled", ", ".join(sorted(cancelled)))
        for request in self.take():
            if request.id in cancelled:  # cancelled while still queued
                self.taken(request, "cancelled before it started")
                continue
            new, refusal = accept(request)
            self.taken(request, refusal)
            if refusal is not None:
                log.warning("snapshot %s refused: %s", request.id, refusal)
                continue
            kept.extend(new)
            changed = True
            log.info("snapshot %s of %s started", request.id, ", ".join(b.stream for b in new))
        for backfill in kept:
            if backfill.stream not in captured:  # its table left the config since the request
                log.warning("snapshot %s of %s dropped: the table is no longer captured", backfill.id, backfill.stream)
                changed = True
        return tuple(b for b in kept if b.stream in captured), changed

    def report_backfills(self, backfills: Sequence[Backfill]) -> None:
        self.report([{**b.to_json(), "running": i == 0} for i, b in enumerate(backfills)])

    def report(self, status: list[dict[str, Any]]) -> None:
        with self._lock:
            self._status = status

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {
                "queued": [r.to_json() for r in self._queued.values()],
                "running": list(self._status),
                "refused": dict(self._refused),
            }


@dataclass(frozen=True)
class Backfill:
    """One table of a snapshot on demand, as a source's position carries it: rows in key order, read after `after`."""

    id: str  # the request's
    stream: str
    where: str | None = None
    after: tuple[object, ...] | None = None  # the key of the last row published; None: from the start
    rows: int = 0  # published so far

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "stream": self.stream,
            "where": self.where,
            "after": None if self.after is None else [encode_scalar(v) for v in self.after],
            "rows": self.rows,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Backfill:
        after = data.get("after")
        return cls(
            id=str(data["id"]),
            stream=str(data["stream"]),
            where=data.get("where"),
            after=None if after is None else tuple(decode_scalar(v) for v in after),
            rows=int(data.get("rows", 0)),
        )
