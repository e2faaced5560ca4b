"""What /health and /metrics say about a source, from its status."""

from __future__ import annotations

import time

from liberator.metrics import Heartbeat, Metrics


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


def test_ready_only_when_every_source_and_sink_is_connected_and_running() -> None:
    metrics = Metrics("app")
    assert metrics.not_ready() == {"daemon": "starting"}, "nothing registered yet: not ready"
    source = metrics.source("pg", "postgres_wal")
    sink = metrics.sink("replica", "sql")
    assert metrics.not_ready() == {"source pg": "starting", "sink replica": "starting"}
    source.state = "running"  # the thread runs, the source has not said it reads yet
    assert metrics.not_ready()["source pg"] == "connecting"
    source.phase, sink.state = "streaming", "running"
    assert metrics.not_ready() == {} and metrics.readiness()["status"] == "ready"
    assert metrics.health()["ready"] is True

    source.backpressure = "Kafka acknowledged none of the 3 events waiting for 6s"
    assert metrics.not_ready() == {"source pg": f"backpressure: {source.backpressure}"}
    source.backpressure = None
    source.state, source.error = "retrying", "lost the connection to the database"
    assert metrics.not_ready() == {"source pg": "retrying: lost the connection to the database"}
    source.state, source.error = "running", None
    sink.state, sink.error = "retrying", "lost its consumer group membership"
    assert metrics.not_ready() == {"sink replica": "retrying: lost its consumer group membership"}
    sink.state = "failed"
    assert "sink replica" in metrics.not_ready()
    sink.state, sink.error = "running", None
    source.position_stalled = True  # degraded, a warning; the source still reads: ready
    assert metrics.not_ready() == {}
    source.state = "stopped"
    assert metrics.not_ready() == {"source pg": "stopped"}


def test_a_standing_by_or_finished_source_is_ready() -> None:
    metrics = Metrics("app")
    outbox = metrics.source("ob", "outbox")
    outbox.phase = "standby"  # another daemon holds the source's lease; this one waits to take over
    assert metrics.not_ready() == {}
    assert 'liberator_source_standby{app="app",source="ob",type="outbox"} 1.0' in metrics.prometheus()
    outbox.state, outbox.error = "retrying", "database gone"
    assert metrics.not_ready() == {"source ob": "retrying: database gone"}
    outbox.state, outbox.error, outbox.phase = "finished", None, "done"
    assert metrics.not_ready() == {}


def test_live_while_the_main_loop_beats_and_wedged_after_the_timeout() -> None:
    now = [100.0]
    heartbeat = Heartbeat(30.0, clock=lambda: now[0])
    assert heartbeat.live()
    now[0] += 29.9
    assert heartbeat.live()
    now[0] += 0.2
    assert not heartbeat.live() and heartbeat.age() > 30
    heartbeat.beat()
    assert heartbeat.live() and heartbeat.age() == 0
    metrics = Metrics("app")
    metrics.heartbeat = heartbeat
    now[0] += 31
    assert metrics.liveness()["status"] == "wedged"


def test_a_paused_source_shows_paused_is_ready_and_not_degraded() -> None:
    metrics = Metrics("app")
    status = metrics.source("pg", "postgres_wal")
    status.state, status.phase, status.paused = "running", "streaming", True
    health = metrics.health()
    assert health["sources"]["pg"]["state"] == "paused" and health["sources"]["pg"]["paused"] is True
    assert health["status"] == "ok" and metrics.readiness()["not_ready"] == {}
    assert 'liberator_source_paused{app="app",source="pg",type="postgres_wal"} 1.0' in metrics.prometheus()
    status.state = "retrying"  # paused while it waited to retry: it is not trying now
    assert metrics.health()["sources"]["pg"]["state"] == "paused"
    status.state = "failed"  # a failure still shows
    assert metrics.health()["sources"]["pg"]["state"] == "failed"
