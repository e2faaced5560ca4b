"""A mysql_binlog daemon killed with SIGKILL in the middle of an incremental snapshot resumes it after the last
chunk it published, not from the table's start."""

from __future__ import annotations

import signal
from pathlib import Path

from liberator.embedded.ports import free_port
from liberator_testbed import MySQLInstance
from tests.integration.test_mysql_binlog_helpers import numbers, source_yaml
from tests.support import app_config, cli, health, read_topic, start_daemon_process, terminate, wait_for, with_http

ROWS = 400
CHUNK = 20


def _snapshot(config: Path, *args: str) -> str:
    """The CLI's answer; empty while the daemon's HTTP endpoint is not up yet (it starts with the daemon)."""
    done = cli("snapshot", str(config), "--source", "cdc", *args)
    return done.stdout if done.returncode == 0 else ""


def test_kill_9_mid_backfill_resumes_after_the_last_chunk(
    mariadb_server: MySQLInstance, mysql_database: str, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    db = mysql_database
    mariadb_server.execute(f"CREATE TABLE `{db}`.items (id INT PRIMARY KEY, v INT NOT NULL)")
    mariadb_server.execute(f"INSERT INTO `{db}`.items SELECT i, 1 FROM ({numbers(ROWS)}) AS s")
    extra = f"    snapshot_chunk: {CHUNK}\n    envelope: change\n"
    config = app_config(
        tmp_path, kafka_bootstrap, registry_url, source_yaml(mariadb_server, f"[{db}.items]", db, extra)
    )
    port = free_port()
    with_http(config, port)
    topic = f"{db}.{db}.items"
    log = tmp_path / "daemon.log"

    def published() -> int:
        return len(read_topic(kafka_bootstrap, registry_url, topic))

    def progress_stored() -> bool:
        """The offsets store holds the backfill past a chunk (stored a moment after Kafka acknowledged it)."""
        source = ((health(port) or {}).get("sources") or {}).get("cdc") or {}
        return any(b.get("after") for b in (source.get("position") or {}).get("backfills", []))

    process = start_daemon_process(config, log)
    try:
        wait_for(lambda: published() >= ROWS, timeout=60, what="the initial snapshot")
        # 0.2 s a chunk (a condition true for every row that sleeps): the kill lands between chunks.
        wait_for(lambda: "queued" in _snapshot(config, "--table", f"{db}.items", "--where", "SLEEP(0.01) = 0"))
        wait_for(lambda: published() >= ROWS + 6 * CHUNK, timeout=60, interval=0.05, what="six chunks published")
        wait_for(progress_stored, timeout=60, interval=0.05, what="a chunk's progress stored")
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    before = published() - ROWS
    assert before < ROWS, "killed before the end of the backfill"

    process = start_daemon_process(config, log)
    try:
        wait_for(lambda: "no snapshot queued or under way" in _snapshot(config, "--status"), timeout=90)
        wait_for(lambda: published() >= 2 * ROWS, timeout=30, what="every row read")
    finally:
        assert terminate(process) == 0, log.read_text()[-3000:]
    keys = [r["key"]["id"] for r in read_topic(kafka_bootstrap, registry_url, topic)[ROWS:]]
    assert set(keys) == set(range(1, ROWS + 1)), "every row read by the backfill"
    # Where the second run began: after the last chunk whose progress was stored; the chunks published after
    # it, before the kill, are read again (at least once), never the table from its start.
    restart = next((i for i in range(1, len(keys)) if keys[i] <= keys[i - 1]), len(keys))
    assert keys[:restart] == list(range(1, restart + 1)), "the first run read in key order"
    if restart < len(keys):
        resumed_at = keys[restart]
        assert resumed_at > 1 and (resumed_at - 1) % CHUNK == 0, f"resumed after a chunk, not from the start: {keys}"
        assert keys[restart:] == list(range(resumed_at, ROWS + 1)), "the second run read the rest in key order"
    assert len(keys) < ROWS + before, "not everything read before the kill was read again"
    assert "Traceback" not in log.read_text()
