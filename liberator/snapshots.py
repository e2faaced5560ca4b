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
    blocking: bool = False  # the stream pauses while the tables are read in one consistent snapshot

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "tables": list(self.tables), "where": self.where, "blocking": self.blocking}


def signal_requests(signal_id: str, kind: str, data: str | None) -> list[SnapshotRequest]:
    """The snapshot requests of one row of a Debezium-style signal table (`id, type, data`).

    `execute-snapshot` with `{"data-collections": [...], "type": "incremental" | "blocking",
    "additional-conditions": [{"data-collection": T, "filter": SQL}]}` asks for those tables (a table with a
    condition gets its own request); anything else raises ValueError with the reason, for one log line."""
    if kind != "execute-snapshot":
        raise ValueError(f"signal {signal_id}: type {kind!r} is not supported (only execute-snapshot)")
    try:
        body = json.loads(data or "{}")
    except ValueError:
        raise ValueError(f"signal {signal_id}: its data is not JSON") from None
    tables = body.get("data-collections") if isinstance(body, dict) else None
    if not isinstance(tables, list) or not tables or not all(isinstance(t, str) for t in tables):
        raise ValueError(f'signal {signal_id}: data needs "data-collections": ["schema.table", ...]')
    snapshot_type = str(body.get("type", "incremental")).lower()
    if snapshot_type not in ("incremental", "blocking"):
        raise ValueError(f"signal {signal_id}: snapshot type {body['type']!r} is not incremental or blocking")
    blocking = snapshot_type == "blocking"
    conditions: dict[str, str] = {}
    for condition in body.get("additional-conditions") or []:
        if (
            isinstance(condition, dict)
            and isinstance(condition.get("data-collection"), str)
            and condition.get("filter")
        ):
            conditions[condition["data-collection"]] = str(condition["filter"])
    plain = tuple(t for t in tables if t not in conditions)
    requests = [SnapshotRequest(plain, None, signal_id, blocking)] if plain else []
    for i, table in enumerate(t for t in tables if t in conditions):
        requests.append(SnapshotRequest((table,), conditions[table], f"{signal_id}-{i}", blocking))
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
        # Every backfill reported in this process, newest last, and those still running: for the progress
        # figures (liberator.progress), which read them each second; bounded like the refusals are not.
        self._seen: dict[tuple[str, str], Backfill] = {}
        self._running: set[tuple[str, str]] = set()
        # The progress figures per table (rows, estimate, rate, ETA), set by the source's runner, for `status`.
        self.figures: Callable[[], dict[str, dict[str, Any]]] = dict

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
        blocking: bool = False,
    ) -> tuple[tuple[Backfill, ...], bool]:
        """The source's backfills after the cancels and requests that arrived (`accept` turns a request into
        backfills or says why not), without those whose table is no longer captured; and whether they changed.
        A blocking request is refused unless the source takes those (`blocking`)."""
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
            new: list[Backfill]
            refusal: str | None
            if request.blocking and not blocking:
                new, refusal = (
                    [],
                    ("this source does not take blocking snapshots (postgres_wal and mysql_binlog do); ask without it"),
                )
            else:
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

    def failed(self, request_id: str, reason: str) -> None:
        """A request the source took but could not carry out (its snapshot could not start): --status says why."""
        with self._lock:
            self._refused[request_id] = reason

    def report_backfills(self, backfills: Sequence[Backfill]) -> None:
        """The source's backfills now, first the one being read (on every change: a chunk, a request, a cancel)."""
        with self._lock:
            for backfill in backfills:
                self._seen[(backfill.id, backfill.stream)] = backfill
            self._running = {(b.id, b.stream) for b in backfills}
            for key in [k for k in self._seen if k not in self._running][: max(0, len(self._seen) - _SEEN_KEPT)]:
                del self._seen[key]
        self.report([{**b.to_json(), "running": i == 0} for i, b in enumerate(backfills)])

    def finished(self, backfill: Backfill, log: logging.Logger) -> None:
        """A backfill read to its end (`backfill` with its final row count): one log line, and its figures."""
        log.info("snapshot %s of %s done: %d rows", backfill.id, backfill.stream, backfill.rows)
        with self._lock:
            self._seen[(backfill.id, backfill.stream)] = backfill

    def backfill_progress(self) -> list[tuple[Backfill, bool]]:
        """Each backfill reported in this process, oldest first, and whether it is still under way."""
        with self._lock:
            return [(backfill, key in self._running) for key, backfill in self._seen.items()]

    def report(self, status: list[dict[str, Any]]) -> None:
        with self._lock:
            self._status = status

    def status(self) -> dict[str, Any]:
        """Queued, running (with the table's progress figures) and refused requests."""
        figures = self.figures()
        with self._lock:
            return {
                "queued": [r.to_json() for r in self._queued.values()],
                "running": [_with_progress(entry, figures) for entry in self._status],
                "refused": dict(self._refused),
            }


_SEEN_KEPT = 100  # finished backfills remembered for their progress figures


def _with_progress(entry: dict[str, Any], figures: dict[str, dict[str, Any]]) -> dict[str, Any]:
    table = figures.get(entry["stream"])
    if table is None or table.get("run") != entry["id"]:
        return dict(entry)
    return {**entry, **{k: table[k] for k in ("estimate", "percent", "rows_per_second", "eta_seconds")}}


@dataclass(frozen=True)
class Backfill:
    """One table of a snapshot on demand, as a source's position carries it: rows in key order, read after `after`."""

    id: str  # the request's
    stream: str
    where: str | None = None
    after: tuple[object, ...] | None = None  # the key of the last row published; None: from the start
    rows: int = 0  # published so far
    blocking: bool = False  # read whole in one snapshot while the stream waits, not in chunks

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "stream": self.stream,
            "where": self.where,
            "after": None if self.after is None else [encode_scalar(v) for v in self.after],
            "rows": self.rows,
        }
        if self.blocking:  # absent otherwise: positions stored before blocking snapshots read the same
            out["blocking"] = True
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Backfill:
        after = data.get("after")
        return cls(
            id=str(data["id"]),
            stream=str(data["stream"]),
            where=data.get("where"),
            after=None if after is None else tuple(decode_scalar(v) for v in after),
            rows=int(data.get("rows", 0)),
            blocking=bool(data.get("blocking", False)),
        )


def new_table_backfills(
    topics: dict[str, str],
    backfills: tuple[Backfill, ...],
    with_records: Callable[[Sequence[str]], list[str]],
    log: logging.Logger,
) -> tuple[Backfill, ...]:
    """Backfills for the captured tables (qualified name -> topic) whose topics hold no record: they were added
    to `tables` since the snapshot (or were empty then), so their rows are read while streaming. Reading an
    empty table again costs one chunk query and publishes nothing twice: its topic holds nothing."""
    running = {b.stream for b in backfills}
    waiting = {name: topic for name, topic in topics.items() if name not in running}
    holding = set(with_records(sorted(set(waiting.values()))))
    new = [name for name, topic in waiting.items() if topic not in holding]
    if not new:
        return backfills
    log.info("no events yet for %s: reading their rows while streaming", ", ".join(new))
    return (*backfills, *(Backfill(f"new-{uuid.uuid4().hex[:8]}", name) for name in new))
