"""The probes through outages: /health/live stays 200 while the daemon's main loop ticks, whatever its servers
do, and answers 503 once the loop is wedged; /health/ready is 200 only while every source and sink is
connected and running: 503 before the broker first answers, while a database is gone (retrying), while Kafka
acknowledges nothing (backpressure) and while a sink has lost its consumer group, and 200 again after.

The outages are real servers frozen with SIGSTOP (the test bed's `freeze()`, thawed in a `finally`), private
to this module so that the session's shared servers never freeze.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import liberator_testbed as testbed
from liberator.embedded.ports import free_port
from liberator.runtime import Daemon
from liberator_testbed import EmbeddedBroker, PostgresServer
from tests.support import DaemonThread, app_config, wait_for, with_http

pytestmark = pytest.mark.skipif(
    testbed.mode() != "native", reason="freezing a server needs the test bed's own server processes"
)


def probe(port: int, path: str) -> tuple[int, dict[str, Any]]:
    """(HTTP status, JSON body) of a probe; (0, {}) while nothing answers yet."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, dict(json.load(response))
    except urllib.error.HTTPError as exc:
        return exc.code, dict(json.load(exc))
    except OSError:
        return 0, {}


class LiveWatch(threading.Thread):
    """Asks /health/live every 0.2s in the background and remembers every answer that was not 200."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.halt = threading.Event()
        self.failures: list[tuple[int, dict[str, Any]]] = []
        self.answers = 0

    def run(self) -> None:
        while not self.halt.wait(0.2):
            code, body = probe(self.port, "/health/live")
            if code == 0:
                continue  # not listening yet, or already gone
            self.answers += 1
            if code != 200:
                self.failures.append((code, body))

    def __enter__(self) -> LiveWatch:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.halt.set()
        self.join(10)


def ready(port: int) -> bool:
    return probe(port, "/health/ready")[0] == 200


def not_ready_because(port: int, part: str, state: str) -> bool:
    code, body = probe(port, "/health/ready")
    return code == 503 and body["not_ready"].get(part, "").startswith(state)


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    with PostgresServer() as server:
        yield server


def _insert(db: Path, first: int, last: int) -> None:
    with sqlite3.connect(db) as conn:
        conn.executemany(
            "INSERT INTO items (id, name, updated_at) VALUES (?, ?, strftime('%Y-%m-%d %H:%M:%f', 'now'))",
            [(i, f"item {i}") for i in range(first, last + 1)],
        )


def test_ready_turns_503_while_the_database_is_gone_and_live_stays_200(
    postgres: PostgresServer, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    name = testbed.unique_name("probes")
    postgres.create_database(name)
    postgres.execute("CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL)", database=name)
    postgres.execute("INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 5) g", database=name)
    source = (
        f"  - name: src\n    type: query\n    url: postgresql://postgres@127.0.0.1:{postgres.port}/{name}\n"
        f'    tables: [items]\n    cursor: [id]\n    poll_interval: 100ms\n    topic: "{name}.{{table}}"\n'
        "    connect_timeout: 1s\n    read_timeout: 2s\n"
    )
    port = free_port()
    config = app_config(tmp_path, kafka_bootstrap, registry_url, source)
    with_http(config, port)
    with DaemonThread(config) as daemon, LiveWatch(port) as live:
        wait_for(lambda: ready(port), what="/health/ready to answer 200")
        status = daemon.status("src")
        wait_for(lambda: status.events_acked == 5, what="the rows acknowledged")

        postgres.freeze()
        try:
            wait_for(
                lambda: not_ready_because(port, "source src", "retrying"),
                timeout=30,
                what="/health/ready to answer 503 with the source retrying",
            )
            code, body = probe(port, "/health")
            assert code == 200 and body["status"] == "degraded" and body["ready"] is False
        finally:
            postgres.freeze(False)
        wait_for(lambda: ready(port), timeout=60, what="/health/ready to answer 200 once the database is back")
    assert live.answers > 10 and live.failures == [], "the main loop ticked throughout: never 503"


def test_ready_waits_for_the_broker_then_turns_503_while_it_is_frozen_and_live_stays_200(
    tmp_path: Path, registry_url: str
) -> None:
    db = tmp_path / "legacy.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, updated_at DATETIME NOT NULL)")
    _insert(db, 1, 5)
    target = tmp_path / "target.db"
    topic = f"{testbed.unique_name('probes')}.items"
    source = (
        f"  - name: legacy\n    type: query\n    url: sqlite:///{db}\n    tables: [items]\n"
        f'    cursor: [updated_at, id]\n    poll_interval: 100ms\n    safety_delay: 0s\n    topic: "{topic}"\n'
        f"sinks:\n  - name: replica\n    type: sql\n    url: sqlite:///{target}\n    topics: [{topic}]\n"
        '    table: "copy_{table}"\n    create: true\n    batch: {size: 500, time: 200ms}\n'
        "    consumer: {settings: {session.timeout.ms: 6000, heartbeat.interval.ms: 500, fetch.wait.max.ms: 10}}\n"
    )
    port = free_port()
    broker = EmbeddedBroker().start()
    config = app_config(tmp_path, broker.bootstrap_servers, registry_url, source)
    with_http(config, port)
    try:
        broker.freeze()  # hung from the start: the daemon waits for it, not yet connected
        try:
            with DaemonThread(config) as daemon, LiveWatch(port) as live:
                wait_for(
                    lambda: not_ready_because(port, "source legacy", "retrying: cannot reach the Kafka broker"),
                    timeout=30,
                    what="/health/ready to answer 503 while the broker was never reached",
                )
                assert not_ready_because(port, "sink replica", "retrying")
                broker.freeze(False)
                wait_for(lambda: ready(port), timeout=60, what="/health/ready to answer 200 once connected")
                status = daemon.status("legacy")
                wait_for(lambda: status.events_acked >= 5, what="the first rows acknowledged")

                broker.freeze()
                _insert(db, 6, 30)  # events wait for Kafka: backpressure after 5s
                wait_for(
                    lambda: not_ready_because(port, "source legacy", "backpressure"),
                    timeout=30,
                    what="/health/ready to answer 503 with the source in backpressure",
                )
                # Not asserted: the sink out of its group. librdkafka reports a lost membership (on_lost: the
                # sink turns not ready) when its session times out, which it did not here while the test
                # bed's broker was frozen with SIGSTOP (its connections stay open).
                broker.freeze(False)
                wait_for(lambda: status.events_acked >= 30, timeout=90, what="the outage rows acknowledged")
                wait_for(lambda: ready(port), timeout=60, what="/health/ready to answer 200 after the freeze")
                sink = daemon.sink_status("replica")
                wait_for(lambda: sink.records_applied >= 30, timeout=60, what="the sink to apply the outage rows")
                assert daemon.stop() == 0
        finally:
            broker.freeze(False)
        assert live.answers > 10 and live.failures == [], "the main loop ticked throughout: never 503"
    finally:
        broker.stop()


def test_live_turns_503_once_the_main_loop_is_wedged(
    tmp_path: Path, kafka_bootstrap: str, registry_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "legacy.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, updated_at DATETIME NOT NULL)")
    _insert(db, 1, 3)
    source = (
        f"  - name: legacy\n    type: query\n    url: sqlite:///{db}\n    tables: [items]\n"
        f'    cursor: [updated_at, id]\n    poll_interval: 100ms\n    topic: "{testbed.unique_name("live")}.items"\n'
    )
    port = free_port()
    config = app_config(tmp_path, kafka_bootstrap, registry_url, source)
    config.write_text(
        config.read_text().replace(
            "sources:\n", f"http:\n  listen: 127.0.0.1:{port}\n  live_timeout: 2s\nsources:\n", 1
        )
    )
    # The offset store hangs (a file store on a hung network mount, say): storing positions never returns.
    wedged, release = threading.Event(), threading.Event()
    store_positions = Daemon._store_positions

    def hanging_store(self: Daemon, *args: Any, **kwargs: Any) -> None:
        if wedge.is_set():
            wedged.set()
            release.wait(60)
        store_positions(self, *args, **kwargs)

    wedge = threading.Event()
    monkeypatch.setattr(Daemon, "_store_positions", hanging_store)
    with DaemonThread(config):
        wait_for(lambda: probe(port, "/health/live")[0] == 200, what="/health/live to answer 200")
        wedge.set()
        try:
            wait_for(wedged.is_set, what="the main loop to hang in the offset store")
            wait_for(lambda: probe(port, "/health/live")[0] == 503, timeout=10, what="/health/live to answer 503")
            code, body = probe(port, "/health/live")
            assert code == 503
            assert body["status"] == "wedged" and body["main_loop_seconds_ago"] >= 2
        finally:
            wedge.clear()
            release.set()
        wait_for(lambda: probe(port, "/health/live")[0] == 200, what="/health/live to answer 200 again")
