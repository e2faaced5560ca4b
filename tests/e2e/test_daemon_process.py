"""The daemon as operators run it: a process, killed with SIGKILL at random moments, then restarted."""

from __future__ import annotations

import json
import random
import signal
import threading
import time
from pathlib import Path

import pytest

from tests.integration.legacy_db import LegacyDb
from tests.support import app_config, read_topic, start_daemon_process, terminate, wait_for


@pytest.fixture(params=["postgresql", "mariadb"])
def legacy(request: pytest.FixtureRequest) -> LegacyDb:
    url = request.getfixturevalue("pg_url" if request.param == "postgresql" else "mysql_url")
    return LegacyDb(url, request.param)


def source_yaml(legacy: LegacyDb) -> str:
    return (
        f'  - name: legacy\n    topic: "{legacy.prefix}.{{table}}"\n    type: query\n    url: {legacy.url}\n'
        "    tables: [orders]\n    cursor: [updated_at, id]\n    poll_interval: 100ms\n"
        "    safety_delay: 300ms\n    batch_size: 50\n"
    )


class Writer(threading.Thread):
    """The legacy application: inserts and updates rows the whole time the daemon is being killed."""

    def __init__(self, legacy: LegacyDb) -> None:
        super().__init__(daemon=True)
        self.legacy = legacy
        self.stop = threading.Event()
        self.next_id = 1
        self.rng = random.Random(3)

    def run(self) -> None:
        while not self.stop.is_set():
            if self.next_id > 20 and self.rng.random() < 0.3:
                self.legacy.run(
                    f"UPDATE orders SET qty = qty + 1, updated_at = {self.legacy.now} WHERE id = :id",
                    id=self.rng.randint(1, self.next_id - 1),
                )
            else:
                self.legacy.insert_order(self.next_id)
                self.next_id += 1
            time.sleep(0.005)  # the application's pace, not a wait


def test_kill_9_at_random_moments_loses_nothing(
    legacy: LegacyDb, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    legacy.create_orders()
    config = app_config(tmp_path, kafka_bootstrap, registry_url, source_yaml(legacy))
    log = tmp_path / "daemon.log"
    writer = Writer(legacy)
    writer.start()
    rng = random.Random(11)
    try:
        for _ in range(4):
            process = start_daemon_process(config, log)
            time.sleep(rng.uniform(1.0, 2.5))  # kill at a random moment: the timing is the test
            process.send_signal(signal.SIGKILL)
            process.wait(10)
    finally:
        writer.stop.set()
        writer.join()
    final = {row[0]: row[1] for row in legacy.rows("SELECT id, qty FROM orders")}
    topic = f"{legacy.prefix}.orders"
    process = start_daemon_process(config, log)
    try:

        def caught_up() -> bool:
            latest = {r["key"]["id"]: r["value"]["qty"] for r in read_topic(kafka_bootstrap, registry_url, topic)}
            return latest == final

        wait_for(caught_up, timeout=90, interval=1.0, what="the topic to hold every row's latest state")
    finally:
        assert terminate(process) == 0, log.read_text()[-3000:]
    records = read_topic(kafka_bootstrap, registry_url, topic)
    # Replays are allowed, but a replayed event is the same event: same key, value and timestamp.
    by_identity: dict[tuple[int, str], set[str]] = {}
    for record in records:
        identity = (record["key"]["id"], record["value"]["updated_at"])
        by_identity.setdefault(identity, set()).add(json.dumps([record["value"], record["timestamp"]]))
    assert all(len(versions) == 1 for versions in by_identity.values())
    assert {r["key"]["id"] for r in records} == set(final)


def test_sigterm_finishes_deliveries_stores_positions_and_exits_0(
    legacy: LegacyDb, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    legacy.create_orders()
    for i in range(1, 501):
        legacy.insert_order(i)
    config = app_config(tmp_path, kafka_bootstrap, registry_url, source_yaml(legacy))
    log = tmp_path / "daemon.log"
    process = start_daemon_process(config, log)
    wait_for(
        lambda: len(read_topic(kafka_bootstrap, registry_url, f"{legacy.prefix}.orders")) > 0,
        what="the first events",
    )
    assert terminate(process) == 0
    text = log.read_text()
    assert "SIGTERM received: stopping" in text and text.rstrip().endswith("stopped")
    stored = json.loads((tmp_path / "offsets.json").read_text())["sources"]["legacy"]
    last_id = stored["position"]["streams"]["orders"]["cursor"][1]
    published = read_topic(kafka_bootstrap, registry_url, f"{legacy.prefix}.orders")
    # The stored position covers exactly what Kafka has: restarting neither skips nor repeats.
    assert published[-1]["key"]["id"] == last_id
    process = start_daemon_process(config, log)
    try:
        wait_for(
            lambda: len(read_topic(kafka_bootstrap, registry_url, f"{legacy.prefix}.orders")) >= 500,
            what="the rest",
        )
        # A later row: once it is on the topic, a row read again after the restart would be before it.
        legacy.insert_order(501)
        read_topic(kafka_bootstrap, registry_url, f"{legacy.prefix}.orders", expect=501)
    finally:
        assert terminate(process) == 0
    ids = [r["key"]["id"] for r in read_topic(kafka_bootstrap, registry_url, f"{legacy.prefix}.orders")]
    assert ids == list(range(1, 502))


def _catches_sigterm(pid: int) -> bool:
    """Whether the process has a SIGTERM handler (SigCgt in /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
    return False


# A signal before the interpreter runs any code kills any Python program: the test waits until the
# entry point's first line caught SIGTERM, then sends it while the CLI is imported (0), while the config
# is read and the first connections are made (0.5), and about when the sources start (1.2).
@pytest.mark.parametrize("delay", [0.0, 0.5, 1.2])
def test_sigterm_during_start_up_stops_cleanly(
    pg_url: str, tmp_path: Path, kafka_bootstrap: str, registry_url: str, delay: float
) -> None:
    """A SIGTERM that comes before the daemon is up (while it imports, reads its config, connects) is a clean
    stop with exit 0, not a death by signal."""
    legacy = LegacyDb(pg_url, "postgresql")
    legacy.create_orders()
    config = app_config(tmp_path, kafka_bootstrap, registry_url, source_yaml(legacy))
    log = tmp_path / "daemon.log"
    process = start_daemon_process(config, log)
    wait_for(lambda: _catches_sigterm(process.pid), timeout=30, interval=0.002, what="the SIGTERM handler")
    time.sleep(delay)  # the moment of the signal is the test's parameter, not a wait for anything
    assert terminate(process) == 0, log.read_text()
    text = log.read_text()
    assert "Traceback" not in text
    assert "SIGTERM received: stopping" in text and "stopped" in text.rstrip().splitlines()[-1], text
