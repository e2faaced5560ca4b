"""Per-source counters and state, rendered as JSON for /health and Prometheus text for /metrics."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class SourceStatus:
    name: str
    type: str
    state: str = "starting"  # starting | running | retrying | failed | stopped | finished
    phase: str = ""  # what the source says it is doing: snapshot, streaming, polling...
    error: str | None = None
    events_published: int = 0
    events_acked: int = 0
    bytes_published: int = 0
    retries: int = 0
    last_event_ms: int | None = None  # the event time (commit/cursor time) of the newest published event
    positions_stored: int = 0
    last_stored_at: float | None = None
    position: dict[str, Any] | None = None
    started_at: float = field(default_factory=time.time)


class Metrics:
    def __init__(self, app: str) -> None:
        self.app = app
        self._lock = threading.Lock()
        self.sources: dict[str, SourceStatus] = {}

    def source(self, name: str, type_name: str) -> SourceStatus:
        with self._lock:
            return self.sources.setdefault(name, SourceStatus(name, type_name))

    def healthy(self) -> bool:
        return all(s.state not in ("failed",) for s in self.sources.values())

    def health(self) -> dict[str, Any]:
        now = time.time()
        out: dict[str, Any] = {"app": self.app, "status": "ok" if self.healthy() else "failed", "sources": {}}
        for status in list(self.sources.values()):
            lag = None if status.last_event_ms is None else max(0.0, now - status.last_event_ms / 1000)
            out["sources"][status.name] = {
                "type": status.type,
                "state": status.state,
                "phase": status.phase,
                "error": status.error,
                "events_published": status.events_published,
                "events_acked": status.events_acked,
                "in_flight": status.events_published - status.events_acked,
                "retries": status.retries,
                "seconds_behind_source": lag,
                "position": status.position,
                "last_position_stored_at": status.last_stored_at,
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
            "last_event_timestamp_seconds",
            "gauge",
            "Event time of the newest published event.",
            [(s, None if s.last_event_ms is None else s.last_event_ms / 1000) for s in statuses],
        )
        return "\n".join(lines) + "\n"
