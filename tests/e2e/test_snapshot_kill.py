"""Both CDC sources as daemon processes, killed with SIGKILL during and right after the initial snapshot while
an application inserts, updates and deletes random keys: after every restart the topic folded by key equals
the table. No ghost rows: a row the interrupted snapshot published and the application deleted is retracted."""

from __future__ import annotations

import random
import signal
import threading
import time
from pathlib import Path
from typing import Any

from liberator.embedded.ports import free_port
from tests.e2e.cdc_targets import Statement, Target, _cdc_target  # noqa: F401 - _cdc_target: the fixture
from tests.support import (
    TopicFold,
    app_config,
    fold_differences,
    health,
    start_daemon_process,
    terminate,
    wait_for,
)

ROWS = 20_000
# Each run is killed when the first condition holds: (events acknowledged in this run, seconds after the
# snapshot is done). Two kills inside the snapshot, one the moment it is done, one shortly after.
KILLS = [(2_000, None), (6_000, None), (None, 0.0), (None, 0.5)]


class Writer(threading.Thread):
    """Transactions of one to three statements on random keys: updates, deletes, inserts (re-inserts too) and
    primary-key changes (a delete of the old key plus an insert of the new one)."""

    def __init__(self, target: Target) -> None:
        super().__init__(daemon=True)
        self.target = target
        self.halt = threading.Event()
        self.rng = random.Random(7)
        self.deletes = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.halt.is_set():
                statements: list[Statement] = []
                for _ in range(self.rng.randint(1, 3)):
                    key, roll = self.rng.randint(1, ROWS), self.rng.random()
                    if roll < 0.35:
                        statements.append(("UPDATE acc SET v = v + 1 WHERE id = %s", (key,)))
                    elif roll < 0.6:
                        statements.append(("DELETE FROM acc WHERE id = %s", (key,)))
                        self.deletes += 1
                    elif roll < 0.65:
                        statements.append(self.target.move(key, self.rng.randint(1, ROWS)))
                    else:
                        statements.append((self.target.upsert, (key,)))
                self.target.transaction(statements)
                time.sleep(0.004)
        except BaseException as exc:  # reported by the test
            self.error = exc


def _kill_when(process: Any, port: int, acked: int | None, after_snapshot: float | None, log: Path) -> None:
    """SIGKILL the daemon once it acknowledged `acked` events in this run, or `after_snapshot` s past it."""
    streaming_since: float | None = None

    def due() -> bool:
        nonlocal streaming_since
        assert process.poll() is None, f"the daemon exited by itself:\n{log.read_text()[-3000:]}"
        doc = health(port)
        if doc is None or "cdc" not in doc["sources"]:
            return False
        source = doc["sources"]["cdc"]
        if acked is not None and source["events_acked"] >= acked:
            return True
        if source["phase"] == "streaming":
            streaming_since = streaming_since or time.monotonic()
            return after_snapshot is not None and time.monotonic() - streaming_since >= after_snapshot
        return False

    wait_for(due, timeout=60, interval=0.01, what="the moment to kill the daemon")
    process.send_signal(signal.SIGKILL)
    process.wait(10)


def test_kill_9_during_and_after_the_snapshot_leaves_no_ghost_rows(
    cdc_target: Target, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    target = cdc_target
    target.fill(ROWS)
    port = free_port()
    # The product's own flush interval (1s): a kill lands before the first flush as it would in production.
    offsets = f"offsets:\n  store: file\n  path: {tmp_path}/offsets.json\nhttp:\n  listen: 127.0.0.1:{port}\n"
    config = app_config(tmp_path, kafka_bootstrap, registry_url, target.source, offsets=offsets)
    log = tmp_path / "daemon.log"
    writer = Writer(target)
    writer.start()
    try:
        for acked, after_snapshot in KILLS:
            process = start_daemon_process(config, log)
            _kill_when(process, port, acked, after_snapshot, log)
        process = start_daemon_process(config, log)
        try:
            wait_for(lambda: (health(port) or {}).get("sources", {}).get("cdc", {}).get("phase") == "streaming")
            time.sleep(0.5)  # changes streamed by the last run too
        finally:
            writer.halt.set()
            writer.join(10)
        assert writer.error is None, writer.error
        table = target.table()
        with TopicFold(kafka_bootstrap, registry_url, target.topic, "v") as fold:
            try:
                wait_for(lambda: fold.rows() == table, timeout=45, interval=0.5, what="the topic to fold to the table")
            except AssertionError:
                raise AssertionError(f"topic != table: {fold_differences(fold.rows(), table)}") from None
    finally:
        writer.halt.set()
        if process.poll() is None:
            assert terminate(process) == 0, log.read_text()[-3000:]
    assert writer.deletes > 500
    assert "Traceback" not in log.read_text()
