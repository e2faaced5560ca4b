"""Both CDC sources as daemon processes killed with SIGKILL in the middle of a blocking snapshot's read, while an
application updates the table: after the restart the blocking read is done again (in a new snapshot), the
stream resumes, the topic folded by key equals the table, and no key's older version follows a newer one."""

from __future__ import annotations

import random
import signal
import threading
from pathlib import Path

from liberator.embedded.ports import free_port
from tests.e2e.cdc_targets import Target, _cdc_target  # noqa: F401 - _cdc_target: the fixture
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
PAD = "x" * 200  # wider rows: the read lasts long enough for the kill to land inside it


class Writer(threading.Thread):
    def __init__(self, target: Target) -> None:
        super().__init__(daemon=True)
        self.target = target
        self.halt = threading.Event()

    def run(self) -> None:
        rng = random.Random(3)
        while not self.halt.is_set():
            self.target.transaction([("UPDATE acc SET v = v + 1 WHERE id = %s", (rng.randint(1, ROWS),))])


def _log_count(log: Path, text: str) -> int:
    return log.read_text().count(text) if log.exists() else 0


def test_kill_9_mid_blocking_read_reads_again_after_the_restart(
    cdc_target: Target, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    target = cdc_target
    target.transaction([(f"ALTER TABLE acc ADD COLUMN pad VARCHAR(200) NOT NULL DEFAULT '{PAD}'", ())])
    target.fill(ROWS)
    offsets = f"offsets:\n  store: file\n  path: {tmp_path}/offsets.json\n"
    config = app_config(tmp_path, kafka_bootstrap, registry_url, target.source, offsets=offsets)
    with_http(config, free_port())
    topic = target.topic
    log = tmp_path / "daemon.log"
    writer = Writer(target)
    process = start_daemon_process(config, log)
    try:
        wait_for(lambda: len(read_topic(kafka_bootstrap, registry_url, topic)) >= ROWS, timeout=120, what="snapshot")
        writer.start()
        asked = cli("snapshot", str(config), "--source", "cdc", "--table", target.name, "--blocking")
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
        target.transaction([("UPDATE acc SET v = -1 WHERE id = 1", ())])  # streamed after the pause
        table = target.table()
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
