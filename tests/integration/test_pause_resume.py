"""Pausing a source of a running daemon (POST /sources/NAME/pause, `liberator pause`): under a live writer it
publishes nothing, its replication slot and stored position stay put, /health says paused and
/health/ready stays 200; resumed, it goes on where it stopped and the topic folded by key equals the table."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from pathlib import Path

from liberator.embedded.ports import free_port
from tests.integration.postgres_wal_support import WalDb
from tests.integration.test_postgres_wal_daemon import source_yaml
from tests.support import DaemonThread, TopicFold, app_config, cli, health, wait_for, with_http


class LiveWriter(threading.Thread):
    """Inserts and updates rows of `orders` until halted; `written` counts its statements."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.db = WalDb(url)
        self.halt = threading.Event()
        self.written = 0

    def run(self) -> None:
        i = 0
        while not self.halt.is_set():
            i += 1
            self.db.run("INSERT INTO orders VALUES (%s, 0) ON CONFLICT (id) DO UPDATE SET n = orders.n + 1", (i % 300,))
            self.written += 1
            self.halt.wait(0.002)


def post(port: int, path: str) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method="POST", data=b"")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def ready(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_a_paused_source_publishes_nothing_holds_its_position_and_resumes_where_it_stopped(
    pg_url: str, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    db = WalDb(pg_url)
    db.run("CREATE TABLE orders (id int PRIMARY KEY, n int NOT NULL)")
    config = app_config(tmp_path, kafka_bootstrap, registry_url, source_yaml(db, "[orders]"))
    port = free_port()
    with_http(config, port)
    writer = LiveWriter(pg_url)
    topic = f"{db.tag}.public.orders"
    with DaemonThread(config) as daemon, TopicFold(kafka_bootstrap, registry_url, topic, "n") as fold:
        status = daemon.status("wal")
        writer.start()
        try:
            wait_for(lambda: fold.records > 100, timeout=60, what="the source streaming the writer's rows")
            paused = cli("pause", str(config), "--source", "wal")
            assert paused.returncode == 0 and "source wal paused" in paused.stdout, paused.stderr
            assert health(port)["sources"]["wal"]["state"] == "paused"  # type: ignore[index]
            assert ready(port) == 200
            # What was in flight is acknowledged and stored while paused; then nothing moves.
            wait_for(lambda: daemon.positions_settled("wal"), what="in-flight events acknowledged and stored")
            published, position, slot = status.events_published, status.position, db.slot()["confirmed_flush_lsn"]
            written = writer.written
            wait_for(lambda: writer.written >= written + 500, timeout=60, what="500 more writes while paused")
            wait_for(lambda: status.position_unchanged_seconds >= 2, what="two ticks of the daemon while paused")
            assert status.events_published == published
            assert status.position == position and db.slot()["confirmed_flush_lsn"] == slot
            assert not status.position_stalled and status.backpressure is None
            assert post(port, "/sources/wal/pause") == 409  # already paused
            assert post(port, "/sources/nope/pause") == 404
            again = cli("pause", str(config), "--source", "wal")
            assert again.returncode == 1 and "already paused" in again.stderr
            resumed = cli("resume", str(config), "--source", "wal")
            assert resumed.returncode == 0 and "source wal resumed" in resumed.stdout, resumed.stderr
            assert post(port, "/sources/wal/resume") == 409  # not paused
            wait_for(lambda: status.events_published > published, what="publishing again after the resume")
        finally:
            writer.halt.set()
            writer.join(10)
        table = dict(db.rows("SELECT id, n FROM orders"))
        wait_for(lambda: fold.rows() == table, timeout=60, what="the topic folded by key to equal the table")
        assert health(port)["sources"]["wal"]["state"] == "running"  # type: ignore[index]
