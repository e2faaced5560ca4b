"""What /health and /metrics say about a source, from its status."""

from __future__ import annotations

import time

from liberator.metrics import Metrics


def test_backpressure_shows_as_state_with_its_reason_and_degrades_the_status() -> None:
    metrics = Metrics("app")
    status = metrics.source("pg", "postgres_wal")
    status.state = "running"
    assert metrics.health()["status"] == "ok"
    status.backpressure = "Kafka acknowledged none of the 12 events waiting for 6s"
    health = metrics.health()
    assert health["status"] == "degraded" and metrics.healthy(), "degraded still answers 200"
    assert health["sources"]["pg"]["state"] == "backpressure"
    assert health["sources"]["pg"]["error"] == status.backpressure
    assert 'liberator_source_backpressure{app="app",source="pg",type="postgres_wal"} 1.0' in metrics.prometheus()
    status.backpressure = None
    health = metrics.health()
    assert health["status"] == "ok" and health["sources"]["pg"]["state"] == "running"
    assert health["sources"]["pg"]["error"] is None


def test_retrying_and_stalled_degrade_and_failed_fails() -> None:
    metrics = Metrics("app")
    source = metrics.source("pg", "postgres_wal")
    sink = metrics.sink("replica", "sql")
    source.state = sink.state = "running"
    sink.state = "retrying"
    assert metrics.overall() == "degraded"
    sink.state = "running"
    source.position_stalled = True
    assert metrics.overall() == "degraded"
    assert 'liberator_position_stalled{app="app",source="pg",type="postgres_wal"} 1.0' in metrics.prometheus()
    source.position_stalled = False
    source.state = "retrying"
    source.backpressure = "ignored while retrying"
    assert metrics.health()["sources"]["pg"]["state"] == "retrying"
    sink.state = "failed"
    assert metrics.overall() == "failed" and not metrics.healthy()


def test_seconds_behind_source_counts_from_the_newest_waiting_event_and_is_zero_when_caught_up() -> None:
    metrics = Metrics("app")
    status = metrics.source("q", "query")
    assert metrics.health()["sources"]["q"]["seconds_behind_source"] == 0
    status.last_event_ms = int((time.time() - 90) * 1000)  # an event committed 90s ago...
    status.events_published, status.events_acked = 10, 10
    assert metrics.health()["sources"]["q"]["seconds_behind_source"] == 0, "...that Kafka has: caught up, idle"
    status.events_published = 11  # ...still waiting for Kafka
    lag = metrics.health()["sources"]["q"]["seconds_behind_source"]
    assert 89 < lag < 100
    assert 'liberator_seconds_behind_source{app="app",source="q",type="query"} 9' in metrics.prometheus()
