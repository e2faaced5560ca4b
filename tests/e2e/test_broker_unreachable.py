"""A broker that is not there when the daemon starts, or goes away while a topic must be created: the
daemon waits and retries like for any other outage, says so in /health, stops promptly on SIGTERM
meanwhile, and proceeds with nothing lost once the broker answers.

"Not yet started" is a free port nothing listens on (connections refused); "frozen" is a Tansu process
stopped with SIGSTOP (connections accepted, nothing answers).
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from liberator.embedded.ports import free_port
from liberator_testbed import EmbeddedBroker
from tests.support import (
    DaemonThread,
    app_config,
    health,
    read_topic,
    start_daemon_process,
    terminate,
    wait_for,
    with_http,
)

pytestmark = pytest.mark.e2e


def _insert(db: Path, table: str, first: int, last: int) -> None:
    with sqlite3.connect(db) as conn:
        conn.executemany(
            f"INSERT INTO {table} (id, name, updated_at) VALUES (?, ?, strftime('%Y-%m-%d %H:%M:%f', 'now'))",
            [(i, f"{table} {i}") for i in range(first, last + 1)],
        )


def _legacy(tmp_path: Path, prefix: str, tables: tuple[str, ...] = ("items",)) -> tuple[Path, str]:
    db = tmp_path / "legacy.db"
    with sqlite3.connect(db) as conn:
        for table in tables:
            conn.execute(
                f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, name TEXT NOT NULL, updated_at DATETIME NOT NULL)"
            )
    source = (
        f"  - name: legacy\n    type: query\n    url: sqlite:///{db}\n    tables: [{', '.join(tables)}]\n"
        "    cursor: [updated_at, id]\n    poll_interval: 100ms\n    safety_delay: 0s\n"
        f'    topic: "{prefix}.{{table}}"\n'
    )
    return db, source


def _source_health(port: int) -> dict[str, Any]:
    answer = health(port)
    if answer is None or "legacy" not in answer["sources"]:
        return {}
    return {"status": answer["status"], **answer["sources"]["legacy"]}


def _retrying_for_the_broker(port: int) -> bool:
    shown = _source_health(port)
    return shown.get("state") == "retrying" and "Kafka broker" in (shown.get("error") or "")


def _kafka_offsets(prefix: str) -> str:
    return f"offsets:\n  store: kafka\n  topic: {prefix}-offsets\n  flush_interval: 200ms\n"


@pytest.mark.parametrize("store", ["file", "kafka"])
def test_a_daemon_started_before_its_broker_waits_for_it_then_publishes(
    tmp_path: Path, registry_url: str, store: str
) -> None:
    prefix = f"late-{store}-{free_port()}"
    db, source = _legacy(tmp_path, prefix)
    _insert(db, "items", 1, 5)
    broker = EmbeddedBroker(port=free_port())  # nothing listens there yet
    offsets = _kafka_offsets(prefix) if store == "kafka" else None
    config = app_config(tmp_path, broker.bootstrap_servers, registry_url, source, offsets=offsets)
    port = free_port()
    with_http(config, port)
    try:
        with DaemonThread(config) as daemon:
            wait_for(lambda: _retrying_for_the_broker(port), timeout=30, what="/health to say retrying")
            assert _source_health(port)["status"] == "degraded"
            broker.start()
            wait_for(lambda: _source_health(port).get("events_acked") == 5, timeout=60, what="the rows published")
            wait_for(lambda: daemon.positions_settled("legacy"), what="their position stored")
            shown = _source_health(port)
            assert (shown["status"], shown["state"], shown["error"]) == ("ok", "running", None)
            assert daemon.stop() == 0
        records = read_topic(broker.bootstrap_servers, registry_url, f"{prefix}.items", expect=5)
        assert [r["key"]["id"] for r in records] == [1, 2, 3, 4, 5]
    finally:
        broker.stop()


def test_a_daemon_started_while_its_broker_hangs_waits_with_the_kafka_offset_store(
    tmp_path: Path, registry_url: str
) -> None:
    prefix = f"hung-{free_port()}"
    db, source = _legacy(tmp_path, prefix)
    _insert(db, "items", 1, 3)
    broker = EmbeddedBroker().start()
    config = app_config(tmp_path, broker.bootstrap_servers, registry_url, source, offsets=_kafka_offsets(prefix))
    port = free_port()
    with_http(config, port)
    try:
        broker.freeze()
        with DaemonThread(config) as daemon:
            wait_for(lambda: _retrying_for_the_broker(port), timeout=60, what="/health to say retrying")
            broker.freeze(False)
            wait_for(lambda: daemon.positions_settled("legacy"), timeout=90, what="the rows' position stored")
            assert daemon.status("legacy").events_acked == 3
            assert daemon.stop() == 0
        records = read_topic(broker.bootstrap_servers, registry_url, f"{prefix}.items", expect=3)
        assert [r["key"]["id"] for r in records] == [1, 2, 3]
    finally:
        broker.stop()


def test_sigterm_while_waiting_for_the_broker_stops_promptly(tmp_path: Path, registry_url: str) -> None:
    prefix = f"gone-{free_port()}"
    db, source = _legacy(tmp_path, prefix)
    _insert(db, "items", 1, 1)
    config = app_config(tmp_path, f"127.0.0.1:{free_port()}", registry_url, source, offsets=_kafka_offsets(prefix))
    port = free_port()
    with_http(config, port)
    log = tmp_path / "daemon.log"
    process = start_daemon_process(config, log)
    try:
        wait_for(lambda: _retrying_for_the_broker(port), timeout=60, what="/health to say retrying")
        began = time.monotonic()
        assert terminate(process, timeout=30) == 0
        assert time.monotonic() - began < 5, "SIGTERM during the wait must stop the daemon promptly"
    finally:
        if process.poll() is None:
            process.kill()
    text = log.read_text()
    assert "Traceback" not in text and "this is a bug" not in text, text


def test_a_topic_created_during_an_outage_waits_for_the_broker(tmp_path: Path, registry_url: str) -> None:
    prefix = f"newtopic-{free_port()}"
    db, source = _legacy(tmp_path, prefix, tables=("items", "others"))
    _insert(db, "items", 1, 3)
    broker = EmbeddedBroker().start()
    config = app_config(tmp_path, broker.bootstrap_servers, registry_url, source)
    port = free_port()
    with_http(config, port)
    try:
        with DaemonThread(config) as daemon:
            wait_for(lambda: daemon.positions_settled("legacy"), what="the first table's position stored")
            broker.freeze()
            _insert(db, "others", 1, 2)  # the first rows of a table whose topic does not exist yet
            wait_for(lambda: _retrying_for_the_broker(port), timeout=60, what="/health to say retrying")
            broker.freeze(False)
            _insert(db, "items", 4, 4)
            wait_for(lambda: daemon.status("legacy").events_acked >= 6, timeout=90, what="every row published")
            wait_for(lambda: daemon.positions_settled("legacy"), what="the position stored again")
            assert _source_health(port)["state"] == "running"
            assert daemon.stop() == 0
        others = read_topic(broker.bootstrap_servers, registry_url, f"{prefix}.others", expect=2)
        assert sorted({r["key"]["id"] for r in others}) == [1, 2]
        items = read_topic(broker.bootstrap_servers, registry_url, f"{prefix}.items", expect=4)
        assert sorted({r["key"]["id"] for r in items}) == [1, 2, 3, 4]
    finally:
        broker.stop()
