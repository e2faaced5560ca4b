"""A postgres_wal daemon process killed with SIGKILL in the middle of a blocking snapshot's read, while an
application updates the table: after the restart the blocking read is done again (in a new snapshot), the
stream resumes, the topic folded by key equals the table, and no key's older version follows a newer one."""

from __future__ import annotations

import random
import signal
import threading
from pathlib import Path

import psycopg

from liberator.embedded.ports import free_port
from tests.integration.postgres_wal_support import WalDb
from tests.support import (
    TopicFold,
    app_config,
    cli,
    fold_differences,
    read_topic,
    start_daemon_process,
    terminate,
    wait_for,
    with_http,
)

ROWS = 30_000


class Writer(threading.Thread):
    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.halt = threading.Event()

    def run(self) -> None:
        rng = random.Random(3)
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self.halt.is_set():
                conn.execute("UPDATE acc SET v = v + 1 WHERE id = %s", (rng.randint(1, ROWS),))


def _log_count(log: Path, text: str) -> int:
    return log.read_text().count(text) if log.exists() else 0


def test_kill_9_mid_blocking_read_reads_again_after_the_restart(
    pg_url: str, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    db = WalDb(pg_url)
    db.run("CREATE TABLE acc (id int PRIMARY KEY, v int NOT NULL, pad text NOT NULL)")
    db.run(f"INSERT INTO acc SELECT g, 0, repeat('x', 200) FROM generate_series(1, {ROWS}) g")
    source = (
        f"  - name: wal\n    type: postgres_wal\n    url: {db.url}\n    tables: [acc]\n    slot: {db.tag}\n"
        f'    publication: {db.tag}\n    topic: "{db.tag}.{{table}}"\n    snapshot_chunk: 500\n'
        "    status_interval: 200ms\n"
    )
    offsets = f"offsets:\n  store: file\n  path: {tmp_path}/offsets.json\n"
    config = app_config(tmp_path, kafka_bootstrap, registry_url, source, offsets=offsets)
    with_http(config, free_port())
    topic = f"{db.tag}.acc"
    log = tmp_path / "daemon.log"
    writer = Writer(db.url)
    process = start_daemon_process(config, log)
    try:
        wait_for(lambda: len(read_topic(kafka_bootstrap, registry_url, topic)) >= ROWS, timeout=120, what="snapshot")
        writer.start()
        asked = cli("snapshot", str(config), "--source", "wal", "--table", "acc", "--blocking")
        assert asked.returncode == 0, asked.stderr
        wait_for(lambda: _log_count(log, "stream paused at") == 1, timeout=60, interval=0.01, what="the pause")
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        assert _log_count(log, "stream resumed after") == 0, "the read ended before the kill: make the table bigger"

        process = start_daemon_process(config, log)
        wait_for(lambda: _log_count(log, "stream resumed after") == 1, timeout=120, what="the read done again")
        assert _log_count(log, "stream paused at") == 2
        writer.halt.set()
        writer.join(10)
        db.run("UPDATE acc SET v = -1 WHERE id = 1")  # streamed after the pause
        table = {row[0]: row[1] for row in db.rows("SELECT id, v FROM acc")}
        with TopicFold(kafka_bootstrap, registry_url, topic, "v") as fold:
            try:
                wait_for(lambda: fold.rows() == table, timeout=60, interval=0.5, what="the topic to fold to the table")
            except AssertionError:
                raise AssertionError(f"topic != table: {fold_differences(fold.rows(), table)}") from None
    finally:
        writer.halt.set()
        if process.poll() is None:
            assert terminate(process) == 0, log.read_text()[-3000:]
    records = read_topic(kafka_bootstrap, registry_url, topic)
    reads = [r for r in records[ROWS:] if r["value"]["op"] == "r"]
    assert len(reads) >= ROWS, "the whole table read again after the restart"
    versions: dict[int, list[int]] = {}
    for record in records:
        versions.setdefault(record["key"]["id"], []).append(record["value"]["after"]["v"])
    for key, seen in versions.items():
        rising = seen[:-1] if key == 1 else seen  # key 1's last version is the -1 written after the read
        assert rising == sorted(rising), f"key {key}: an older version after a newer one: {seen}"
    assert "Traceback" not in log.read_text()
