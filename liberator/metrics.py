"""Per-source counters and state, rendered as JSON for /health and Prometheus text for /metrics; what the
probes answer (/health/ready from the states, /health/live from the main loop's heartbeat)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from liberator.capture.moves import TopicMove
    from liberator.capture.rowerrors import PoisonRow

# A source's phase before it has connected (connectors set their phase once they read: snapshot, streaming,
# polling, standby...).
_NOT_CONNECTED_PHASES = ("", "starting")


@dataclass
class SourceStatus:
    name: str
    type: str
    state: str = "starting"  # starting | running | retrying | failed | stopped | finished (the reading thread's)
    phase: str = ""  # what the source says it is doing: snapshot, streaming, polling...
    error: str | None = None
    # Set by the daemon's supervision while Kafka acknowledges nothing of what waits: the reason.
    backpressure: str | None = None
    position_stalled: bool = False  # the stored position stays put although events are acknowledged
    paused: bool = False  # an operator paused it (POST /sources/NAME/pause): it reads nothing until resumed
    snapshot: dict[str, dict[str, Any]] = field(default_factory=dict)  # per table (liberator.progress)
    position_unchanged_seconds: float = 0.0
    events_published: int = 0
    events_acked: int = 0
    bytes_published: int = 0
    retries: int = 0
    last_event_ms: int | None = None  # the event time (commit/cursor time) of the newest published event
    backlog_bytes: int | None = None  # the database's log not yet covered by the stored position (liberator.backlog)
    positions_stored: int = 0
    last_stored_at: float | None = None
    position: dict[str, Any] | None = None
    started_at: float = field(default_factory=time.time)
    # Rows that could not become events (liberator.capture.rowerrors): skipped ones per (table, reason).
    rows_skipped: dict[tuple[str, str], int] = field(default_factory=dict)
    rows_dead_lettered: int = 0
    # Tables moved to a new topic after the registry refused their new schema (on_incompatible: new_topic).
    topic_moves: list[TopicMove] = field(default_factory=list)

    def count_poison_row(self, row: PoisonRow) -> None:
        """Count a poison row the policy skipped or sent to the dead-letter topic (on the reading thread)."""
        if row.on_error == "skip":
            label = (row.table, row.kind)
            self.rows_skipped[label] = self.rows_skipped.get(label, 0) + 1
        elif row.on_error == "dead_letter":
            self.rows_dead_lettered += 1

    def shown_state(self) -> str:
        """The state for operators: paused, while the source would otherwise run or retry; backpressure
        while it runs."""
        if self.paused and self.state in ("starting", "running", "retrying"):
            return "paused"
        return "backpressure" if self.state == "running" and self.backpressure is not None else self.state

    def degraded(self) -> bool:
        return self.shown_state() in ("retrying", "backpressure") or self.position_stalled

    def not_ready(self) -> str | None:
        """Why the source is not ready, or None when it is: connected and running, standing by, or finished."""
        state = self.shown_state()
        if state in ("retrying", "failed", "backpressure"):
            return f"{state}: {self.error or self.backpressure}"
        if state in ("finished", "paused"):
            return None  # a paused source is where the operator wants it, not broken
        if self.phase == "standby" and state in ("starting", "running"):
            return None  # another daemon leads; this one is ready to take over
        if state != "running":
            return state  # starting, stopped
        if self.phase in _NOT_CONNECTED_PHASES:
            return "connecting"
        return None

    def seconds_behind_source(self, now: float) -> float:
        """From the event time of the newest event still waiting for Kafka to now; 0 once Kafka has them all
        (as Debezium's MilliSecondsBehindSource: how far what we hold lags the database, not idle time)."""
        if self.events_published <= self.events_acked or self.last_event_ms is None:
            return 0.0
        return max(0.0, round(now - self.last_event_ms / 1000, 3))


@dataclass
class SinkStatus:
    name: str
    type: str
    state: str = "starting"  # starting | running | retrying | failed | stopped
    error: str | None = None
    records_consumed: int = 0
    records_applied: int = 0  # records whose batch committed in the target (dead-lettered ones included)
    rows_changed: int = 0
    batches: int = 0
    dead_lettered: int = 0
    retries: int = 0
    rebalances: int = 0
    assigned: list[str] = field(default_factory=list)  # "topic[partition]"
    last_batch_at: float | None = None
    last_record_ms: int | None = None  # Kafka timestamp of the newest applied record
    # Per assigned "topic[partition]": records on the broker not yet applied to the target (high watermark
    # minus the next offset to apply); absent until the partition's first fetch told its high watermark.
    lag_records: dict[str, int] = field(default_factory=dict)
    started_at: float = field(default_factory=time.time)

    @property
    def lag_records_total(self) -> int | None:
        lags = list(self.lag_records.values())
        return sum(lags) if lags else None

    def not_ready(self) -> str | None:
        """Why the sink is not ready, or None when it is: subscribed once the broker answered (a topic that
        does not exist yet is waited for, ready), not retrying a batch and not out of its consumer group."""
        if self.state == "running":
            return None
        return f"{self.state}: {self.error}" if self.error else self.state


class Heartbeat:
    """The daemon's main loop beats on every tick (and its start-up waits on each attempt); /health/live
    answers 503 once no beat came for `timeout` seconds: the loop is wedged, a restart is the cure."""

    def __init__(self, timeout: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout = timeout
        self._clock = clock
        self._at = clock()

    def beat(self) -> None:
        self._at = self._clock()

    def age(self) -> float:
        """Seconds since the last beat."""
        return self._clock() - self._at

    def live(self) -> bool:
        return self.age() < self.timeout


LIVE_TIMEOUT = 60.0


class Metrics:
    def __init__(self, app: str, live_timeout: float = LIVE_TIMEOUT) -> None:
        self.app = app
        self._lock = threading.Lock()
        self.sources: dict[str, SourceStatus] = {}
        self.sinks: dict[str, SinkStatus] = {}
        self.heartbeat = Heartbeat(live_timeout)

    def source(self, name: str, type_name: str) -> SourceStatus:
        with self._lock:
            return self.sources.setdefault(name, SourceStatus(name, type_name))

    def sink(self, name: str, type_name: str) -> SinkStatus:
        with self._lock:
            return self.sinks.setdefault(name, SinkStatus(name, type_name))

    def healthy(self) -> bool:
        statuses: list[SourceStatus | SinkStatus] = [*self.sources.values(), *self.sinks.values()]
        return all(s.state != "failed" for s in statuses)

    def not_ready(self) -> dict[str, str]:
        """What keeps the daemon from being ready ({"source pg": "retrying: ..."}); empty when it is ready.
        Nothing registered yet is not ready either: the daemon has not started its sources and sinks."""
        with self._lock:
            sources, sinks = list(self.sources.values()), list(self.sinks.values())
        if not sources and not sinks:
            return {"daemon": "starting"}
        reasons = {f"source {s.name}": s.not_ready() for s in sources}
        reasons.update({f"sink {s.name}": s.not_ready() for s in sinks})
        return {what: why for what, why in reasons.items() if why is not None}

    def readiness(self) -> dict[str, Any]:
        """The /health/ready document."""
        waiting = self.not_ready()
        return {"app": self.app, "status": "not ready" if waiting else "ready", "not_ready": waiting}

    def liveness(self) -> dict[str, Any]:
        """The /health/live document."""
        age = self.heartbeat.age()
        return {
            "app": self.app,
            "status": "live" if self.heartbeat.live() else "wedged",
            "main_loop_seconds_ago": round(age, 3),
            "live_timeout": self.heartbeat.timeout,
        }

    def overall(self) -> str:
        """failed (503) once anything failed; degraded while a source or sink retries, is in backpressure or
        has a stalled position; ok otherwise."""
        if not self.healthy():
            return "failed"
        sources, sinks = list(self.sources.values()), list(self.sinks.values())
        if any(s.degraded() for s in sources) or any(s.state == "retrying" for s in sinks):
            return "degraded"
        return "ok"

    def health(self) -> dict[str, Any]:
        now = time.time()
        out: dict[str, Any] = {"app": self.app, "status": self.overall(), "ready": not self.not_ready(), "sources": {}}
        for status in list(self.sources.values()):
            out["sources"][status.name] = {
                "type": status.type,
                "state": status.shown_state(),
                "phase": status.phase,
                "error": status.error or status.backpressure,
                "events_published": status.events_published,
                "events_acked": status.events_acked,
                "in_flight": max(0, status.events_published - status.events_acked),
                "retries": status.retries,
                "seconds_behind_source": status.seconds_behind_source(now),
                "backlog_bytes": status.backlog_bytes,
                "position": status.position,
                "last_position_stored_at": status.last_stored_at,
                "position_unchanged_seconds": round(status.position_unchanged_seconds, 3),
                "position_stalled": status.position_stalled,
                "paused": status.paused,
                "rows_dead_lettered": status.rows_dead_lettered,
                "rows_skipped": sum(status.rows_skipped.values()),
            }
            if status.snapshot:
                out["sources"][status.name]["snapshot"] = status.snapshot
            if status.topic_moves:
                out["sources"][status.name]["topic_moves"] = [m.to_json() for m in list(status.topic_moves)]
        if self.sinks:
            out["sinks"] = {}
        for sink in list(self.sinks.values()):
            lag = None if sink.last_record_ms is None else max(0.0, now - sink.last_record_ms / 1000)
            out["sinks"][sink.name] = {
                "type": sink.type,
                "state": sink.state,
                "error": sink.error,
                "records_consumed": sink.records_consumed,
                "records_applied": sink.records_applied,
                "rows_changed": sink.rows_changed,
                "batches": sink.batches,
                "dead_lettered": sink.dead_lettered,
                "retries": sink.retries,
                "rebalances": sink.rebalances,
                "assigned": sink.assigned,
                "seconds_behind_topic": lag,
                "lag_records": sink.lag_records_total,
                "lag_records_by_partition": dict(sink.lag_records),
                "last_batch_at": sink.last_batch_at,
            }
        return out

    def prometheus(self) -> str:
        lines: list[str] = []

        def metric(name: str, kind: str, help_text: str, values: list[tuple[SourceStatus, float | None]]) -> None:
            lines.append(f"# HELP liberator_{name} {help_text}")
            lines.append(f"# TYPE liberator_{name} {kind}")
            for status, value in values:
                if value is not None:
                    labels = f'app="{self.app}",source="{status.name}",type="{status.type}"'
                    lines.append(f"liberator_{name}{{{labels}}} {value}")

        statuses = list(self.sources.values())
        metric(
            "events_published_total",
            "counter",
            "Events handed to the Kafka producer.",
            [(s, s.events_published) for s in statuses],
        )
        metric(
            "events_acked_total",
            "counter",
            "Events acknowledged by Kafka.",
            [(s, s.events_acked) for s in statuses],
        )
        metric(
            "bytes_published_total",
            "counter",
            "Serialised key and value bytes published.",
            [(s, s.bytes_published) for s in statuses],
        )
        metric(
            "source_retries_total",
            "counter",
            "Times the source was reopened after a passing fault.",
            [(s, s.retries) for s in statuses],
        )
        metric(
            "positions_stored_total",
            "counter",
            "Positions written to the offset store.",
            [(s, s.positions_stored) for s in statuses],
        )
        metric(
            "source_up",
            "gauge",
            "1 while the source runs or retries, 0 once it failed or stopped.",
            [(s, 1.0 if s.state in ("starting", "running", "retrying") else 0.0) for s in statuses],
        )
        metric(
            "source_standby",
            "gauge",
            "1 while another daemon holds the source's lease and this one stands by (docs/ha.md).",
            [(s, 1.0 if s.phase == "standby" else 0.0) for s in statuses],
        )
        metric(
            "last_event_timestamp_seconds",
            "gauge",
            "Event time of the newest published event.",
            [(s, None if s.last_event_ms is None else s.last_event_ms / 1000) for s in statuses],
        )
        now = time.time()
        metric(
            "seconds_behind_source",
            "gauge",
            "From the event time of the newest event waiting for Kafka to now; 0 when Kafka has them all.",
            [(s, s.seconds_behind_source(now)) for s in statuses],
        )
        metric(
            "source_backlog_bytes",
            "gauge",
            "Bytes of the database's log not covered by the stored position (WAL held by the slot, binlog after it).",
            [(s, s.backlog_bytes) for s in statuses],
        )
        metric(
            "source_backpressure",
            "gauge",
            "1 while events wait and Kafka has acknowledged none of them for a while.",
            [(s, 1.0 if s.backpressure is not None else 0.0) for s in statuses],
        )
        metric(
            "position_unchanged_seconds",
            "gauge",
            "Seconds since the source's stored position last moved.",
            [(s, round(s.position_unchanged_seconds, 3)) for s in statuses],
        )
        metric(
            "position_stalled",
            "gauge",
            "1 while the stored position has not moved for offsets.stall_warning although events were acknowledged.",
            [(s, 1.0 if s.position_stalled else 0.0) for s in statuses],
        )
        metric(
            "source_paused",
            "gauge",
            "1 while an operator has the source paused (it reads nothing until resumed).",
            [(s, 1.0 if s.paused else 0.0) for s in statuses],
        )
        metric(
            "source_dead_lettered_rows_total",
            "counter",
            "Rows that could not become events, sent to the source's dead-letter topic (on_error: dead_letter).",
            [(s, s.rows_dead_lettered) for s in statuses],
        )
        self._topic_moves(lines, statuses)
        self._skipped_rows(lines, statuses)
        self._snapshot_metrics(lines, statuses)
        self._sink_metrics(lines)
        return "\n".join(lines) + "\n"

    def _topic_moves(self, lines: list[str], statuses: list[SourceStatus]) -> None:
        name = "liberator_source_topic_moves_total"
        lines.append(
            f"# HELP {name} Tables moved to a new topic after the registry refused their new schema "
            "(on_incompatible: new_topic); consumers of old_topic must move to new_topic."
        )
        lines.append(f"# TYPE {name} counter")
        for status in statuses:
            for move in list(status.topic_moves):
                labels = (
                    f'app="{self.app}",source="{status.name}",type="{status.type}",table="{_label(move.table)}",'
                    f'old_topic="{_label(move.old_topic)}",new_topic="{_label(move.new_topic)}"'
                )
                lines.append(f"{name}{{{labels}}} 1")

    def _skipped_rows(self, lines: list[str], statuses: list[SourceStatus]) -> None:
        name = "liberator_source_skipped_rows_total"
        lines.append(f"# HELP {name} Rows that could not become events, counted and logged (on_error: skip).")
        lines.append(f"# TYPE {name} counter")
        for status in statuses:
            for (table, reason), count in list(status.rows_skipped.items()):
                labels = (
                    f'app="{self.app}",source="{status.name}",type="{status.type}",'
                    f'table="{_label(table)}",reason="{reason}"'
                )
                lines.append(f"{name}{{{labels}}} {count}")

    def _snapshot_metrics(self, lines: list[str], statuses: list[SourceStatus]) -> None:
        """Per table of a snapshot (the initial one or one on demand): rows read, the estimate, done."""
        gauges = (
            ("rows", "Rows read by the table's latest snapshot (initial or on demand).", lambda f: f["rows"]),
            ("rows_estimate", "Rows in the table by the database's statistics.", lambda f: f["estimate"]),
            ("done", "1 once the table's latest snapshot is read to its end.", lambda f: 1 if f["done"] else 0),
        )
        for suffix, help_text, value_of in gauges:
            name = f"liberator_snapshot_{suffix}"
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} gauge")
            for status in statuses:
                for table, figures in list(status.snapshot.items()):
                    value = value_of(figures)
                    if value is not None:
                        labels = f'app="{self.app}",source="{status.name}",type="{status.type}",table="{_label(table)}"'
                        lines.append(f"{name}{{{labels}}} {value}")

    def _sink_metrics(self, lines: list[str]) -> None:
        sinks = list(self.sinks.values())
        if not sinks:
            return

        def metric(name: str, kind: str, help_text: str, values: list[tuple[SinkStatus, float | None]]) -> None:
            lines.append(f"# HELP liberator_sink_{name} {help_text}")
            lines.append(f"# TYPE liberator_sink_{name} {kind}")
            for status, value in values:
                if value is not None:
                    labels = f'app="{self.app}",sink="{status.name}",type="{status.type}"'
                    lines.append(f"liberator_sink_{name}{{{labels}}} {value}")

        metric(
            "records_consumed_total", "counter", "Records read from Kafka.", [(s, s.records_consumed) for s in sinks]
        )
        metric(
            "records_applied_total",
            "counter",
            "Records whose batch committed in the target.",
            [(s, s.records_applied) for s in sinks],
        )
        metric(
            "rows_changed_total", "counter", "Rows inserted, updated or deleted.", [(s, s.rows_changed) for s in sinks]
        )
        metric("batches_total", "counter", "Batches committed in the target.", [(s, s.batches) for s in sinks])
        metric(
            "dead_lettered_total",
            "counter",
            "Bad records sent to the dead-letter topic.",
            [(s, s.dead_lettered) for s in sinks],
        )
        metric("retries_total", "counter", "Batches retried after a passing fault.", [(s, s.retries) for s in sinks])
        metric(
            "lag_records",
            "gauge",
            "Records on the broker not yet applied to the target, over the assigned partitions.",
            [(s, s.lag_records_total) for s in sinks],
        )
        metric(
            "up",
            "gauge",
            "1 while the sink runs or retries, 0 once it failed or stopped.",
            [(s, 1.0 if s.state in ("starting", "running", "retrying") else 0.0) for s in sinks],
        )
        metric(
            "last_record_timestamp_seconds",
            "gauge",
            "Kafka timestamp of the newest applied record.",
            [(s, None if s.last_record_ms is None else s.last_record_ms / 1000) for s in sinks],
        )


def _label(value: str) -> str:
    """A Prometheus label value: backslash, quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
