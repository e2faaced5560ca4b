"""A broker that stops answering while the source keeps changing: the daemon waits, loses nothing, resumes.

The private Tansu broker is frozen with SIGSTOP (a hung broker or a network partition: connections stay
open, nothing answers) and thawed with SIGCONT. A restart cannot be shown with Tansu: its storage is in
memory, so a restarted broker has forgotten the idempotent producer, which librdkafka then retries
forever (a real Kafka keeps that state). Events read during the outage must arrive once it is back, and
no position past the last acknowledged event may be stored meanwhile.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from liberator.embedded.ports import free_port
from liberator_testbed import EmbeddedBroker
from tests.support import DaemonThread, app_config, health, read_topic, wait_for, with_http

pytestmark = pytest.mark.e2e


def _insert(db: Path, first: int, last: int) -> None:
    with sqlite3.connect(db) as conn:
        conn.executemany(
            "INSERT INTO items (id, name, updated_at) VALUES (?, ?, strftime('%Y-%m-%d %H:%M:%f', 'now'))",
            [(i, f"item {i}") for i in range(first, last + 1)],
        )


def _legacy(tmp_path: Path, rows: int, prefix: str) -> tuple[Path, str]:
    """A SQLite table with `rows` rows and the query source that reads it into `<prefix>.items`."""
    db = tmp_path / "legacy.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, updated_at DATETIME NOT NULL)")
    _insert(db, 1, rows)
    source = (
        f"  - name: legacy\n    type: query\n    url: sqlite:///{db}\n    tables: [items]\n"
        "    cursor: [updated_at, id]\n    poll_interval: 100ms\n    safety_delay: 0s\n"
        f'    topic: "{prefix}.{{table}}"\n'
    )
    return db, source


def test_broker_outage_becomes_backpressure_and_nothing_is_lost(tmp_path: Path, registry_url: str) -> None:
    db, source = _legacy(tmp_path, 20, "outage")
    broker = EmbeddedBroker().start()
    config = app_config(tmp_path, broker.bootstrap_servers, registry_url, source)
    offsets = tmp_path / "offsets.json"
    try:
        with DaemonThread(config) as daemon:
            wait_for(lambda: "legacy" in daemon.daemon.metrics.sources, what="the source to start")
            status = daemon.status("legacy")
            wait_for(lambda: status.events_acked >= 20, what="the first 20 rows acknowledged")
            wait_for(offsets.exists, what="a stored position")
            wait_for(lambda: daemon.positions_settled("legacy"), what="the acknowledged rows' position stored")
            broker.freeze()
            stored_before = offsets.read_text()

            _insert(db, 21, 60)
            wait_for(lambda: status.events_published >= 60, what="the outage rows read and handed to the producer")
            assert status.events_acked == 20
            assert status.state == "running"
            # Nothing acknowledged, so the stored position must not move past row 20.
            assert json.loads(offsets.read_text()) == json.loads(stored_before)

            time.sleep(2)  # an outage longer than a few producer retries
            assert status.events_acked == 20
            broker.freeze(False)
            wait_for(lambda: status.events_acked >= 60, timeout=90, what="the outage rows acknowledged")
            _insert(db, 61, 70)
            wait_for(lambda: status.events_acked >= 70, what="rows after the outage")
            assert daemon.stop() == 0
        records = read_topic(broker.bootstrap_servers, registry_url, "outage.items", expect=70)
        ids = [r["key"]["id"] for r in records]
        assert ids == list(range(1, 71))  # each row once, in order: idempotence held across the outage
    finally:
        broker.stop()


def _source_health(port: int) -> dict[str, Any]:
    answer = health(port)
    return {} if answer is None else {"status": answer["status"], **answer["sources"].get("legacy", {})}


def test_health_says_backpressure_with_its_reason_during_an_outage_and_running_after_it(
    tmp_path: Path, registry_url: str
) -> None:
    db, source = _legacy(tmp_path, 5, "health")
    broker = EmbeddedBroker().start()
    port = free_port()
    config = app_config(tmp_path, broker.bootstrap_servers, registry_url, source)
    with_http(config, port)
    try:
        with DaemonThread(config):
            wait_for(lambda: _source_health(port).get("events_acked") == 5, what="the first rows acknowledged")
            idle = _source_health(port)
            assert (idle["status"], idle["state"], idle["in_flight"]) == ("ok", "running", 0)
            assert idle["seconds_behind_source"] == 0, "caught up and idle is not behind"

            broker.freeze()
            _insert(db, 6, 20)
            wait_for(
                lambda: _source_health(port).get("state") == "backpressure",
                timeout=30,
                what="/health to say backpressure",
            )
            during = _source_health(port)
            assert during["status"] == "degraded"
            assert "Kafka acknowledged none of the" in during["error"] and during["in_flight"] > 0
            assert during["seconds_behind_source"] > 0, "events wait for Kafka: behind the source"

            broker.freeze(False)
            wait_for(
                lambda: _source_health(port).get("events_acked") == 20,
                timeout=90,
                what="the outage rows acknowledged",
            )
            wait_for(lambda: _source_health(port).get("state") == "running", what="/health to say running again")
            after = _source_health(port)
            assert after["status"] == "ok" and after["error"] is None, "no stale error after the outage"
            assert after["seconds_behind_source"] == 0
    finally:
        broker.stop()


def test_a_failed_delivery_stops_an_idle_source_at_once_and_loses_nothing(tmp_path: Path, registry_url: str) -> None:
    """With a finite message.timeout.ms an outage fails the delivery. The query source yields nothing
    while the table is quiet, so the runtime must notice the failure itself, not at the next event."""
    db, source = _legacy(tmp_path, 3, "timeout")
    broker = EmbeddedBroker().start()
    config = app_config(tmp_path, broker.bootstrap_servers, registry_url, source)
    patient = config.read_text()
    impatient = patient.replace("kafka:\n", "kafka:\n  settings:\n    message.timeout.ms: 1500\n", 1)
    try:
        config.write_text(impatient)
        with DaemonThread(config) as daemon:
            wait_for(lambda: "legacy" in daemon.daemon.metrics.sources, what="the source to start")
            status = daemon.status("legacy")
            wait_for(lambda: status.events_acked >= 3, what="the first rows acknowledged")
            wait_for(lambda: daemon.positions_settled("legacy"), what="their position stored")
            broker.freeze()
            _insert(db, 4, 4)  # the last change for a while: the source goes quiet after it
            wait_for(lambda: status.state == "failed", timeout=20, what="the source to fail on the delivery")
            assert daemon.wait(30) == 1, "the only source failed: the daemon must exit non-zero"
        assert "Kafka refused an event for topic timeout.items" in status.error
        assert "message.timeout.ms" in status.error and "restart" in status.error
        broker.freeze(False)
        config.write_text(patient)
        with DaemonThread(config) as daemon:
            records = read_topic(broker.bootstrap_servers, registry_url, "timeout.items", expect=4)
        assert [r["key"]["id"] for r in records][-1] == 4  # the failed row was not skipped
        assert sorted({r["key"]["id"] for r in records}) == [1, 2, 3, 4]
    finally:
        broker.freeze(False)
        broker.stop()
