"""Both CDC sources with `snapshot_mode: incremental` and two workers, as a daemon process killed with SIGKILL in
the middle of its initial snapshot while an application inserts, updates and deletes random keys: the
restarted daemon resumes after the last chunk it had stored (no key at or before it is read again), and the
topic folded by key equals the table."""

from __future__ import annotations

import json
import random
import signal
import threading
import time
from pathlib import Path
from typing import Any

from tests.e2e.cdc_targets import CHUNK, Statement, Target, _cdc_target  # noqa: F401 - _cdc_target: the fixture
from tests.support import (
    TopicFold,
    app_config,
    fold_differences,
    read_topic,
    start_daemon_process,
    terminate,
    wait_for,
)

ROWS = 40_000


class Writer(threading.Thread):
    """One to three statements per transaction on random keys: updates, deletes and upserts."""

    def __init__(self, target: Target) -> None:
        super().__init__(daemon=True)
        self.target = target
        self.halt = threading.Event()
        self.commits = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        rng = random.Random(5)
        try:
            while not self.halt.is_set():
                statements: list[Statement] = []
                for _ in range(rng.randint(1, 3)):
                    key, roll = rng.randint(1, ROWS), rng.random()
                    if roll < 0.4:
                        statements.append(("UPDATE acc SET v = v + 1 WHERE id = %s", (key,)))
                    elif roll < 0.6:
                        statements.append(("DELETE FROM acc WHERE id = %s", (key,)))
                    else:
                        statements.append((self.target.upsert, (key,)))
                self.target.transaction(statements)
                self.commits += 1
                time.sleep(0.002)
        except BaseException as exc:  # reported by the test
            self.error = exc


def _stored(offsets: Path) -> dict[str, Any] | None:
    """The position the daemon stored for the source, or None before the first store."""
    try:
        document = json.loads(offsets.read_text())
    except (OSError, ValueError):  # not written yet (it is replaced atomically, never half-written)
        return None
    source = document.get("sources", {}).get("cdc")
    return None if source is None else dict(source["position"])


def _stored_after(offsets: Path) -> int | None:
    """The last key the initial snapshot stored as published, or None (not started, or done)."""
    position = _stored(offsets)
    backfills = [] if position is None else position.get("backfills", [])
    if not backfills or backfills[0]["after"] is None:
        return None
    return int(backfills[0]["after"][0])


def _done(offsets: Path) -> bool:
    position = _stored(offsets)
    return position is not None and not position.get("backfills")


def _reads(records: list[dict[str, Any]]) -> list[int]:
    return [r["key"]["id"] for r in records if r["value"] is not None and r["value"]["op"] == "r"]


def test_kill_9_mid_initial_snapshot_resumes_after_the_last_stored_chunk(
    cdc_target: Target, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    target = cdc_target
    target.fill(ROWS)
    topic = target.topic
    source = target.source + "    snapshot_mode: incremental\n    snapshot_workers: 2\n"
    offsets = tmp_path / "offsets.json"
    config = app_config(
        tmp_path,
        kafka_bootstrap,
        registry_url,
        source,
        offsets=f"offsets:\n  store: file\n  path: {offsets}\n  flush_interval: 200ms\n",
    )
    log = tmp_path / "daemon.log"
    writer = Writer(target)
    writer.start()
    process = start_daemon_process(config, log)
    try:
        # Killed as soon as a chunk past the first few is stored: well inside the table.
        wait_for(
            lambda: process.poll() is None and (_stored_after(offsets) or 0) >= 4 * CHUNK,
            timeout=90,
            interval=0.01,
            what=f"a stored chunk past key {4 * CHUNK}",
        )
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        resumed_after = _stored_after(offsets)
        assert resumed_after is not None and resumed_after < ROWS, "killed in the middle of the snapshot"
        before_restart = len(read_topic(kafka_bootstrap, registry_url, topic))
        assert _reads(read_topic(kafka_bootstrap, registry_url, topic)), "the first run published chunks"

        process = start_daemon_process(config, log)
        wait_for(lambda: _done(offsets), timeout=120, what="the snapshot to finish and its end to be stored")
        writer.halt.set()
        writer.join(10)
        assert writer.error is None, writer.error
        assert writer.commits > 100
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
    second = _reads(records[before_restart:])
    assert second, "the restarted daemon read the rest of the table"
    assert min(second) > resumed_after, f"a key at or before {resumed_after} was read again: {min(second)}"
    assert second == sorted(set(second)), "the rest read once, in key order"
    assert "Traceback" not in log.read_text()
