"""The query source with `snapshot_workers: 2` as a daemon process, killed with SIGKILL in the middle of its
first run's bulk read: the restarted daemon resumes right after the last page whose position was stored, and
goes on exactly as one reader would (a page is a whole number of `batch_size` rows from the start)."""

from __future__ import annotations

import datetime as dt
import signal
from pathlib import Path

import pytest
import sqlalchemy as sa

from liberator.embedded.ports import free_port
from tests.integration.legacy_db import LegacyDb
from tests.support import app_config, health, read_topic, start_daemon_process, terminate, wait_for

ROWS = 60_000
PAGE = 500


@pytest.fixture(params=["postgresql", "mariadb"])
def legacy(request: pytest.FixtureRequest) -> LegacyDb:
    url = request.getfixturevalue("pg_url" if request.param == "postgresql" else "mysql_url")
    return LegacyDb(url, request.param)


def _fill(legacy: LegacyDb) -> None:
    """ROWS rows stamped long before now(), three to a timestamp: ties straddle page ends."""
    legacy.create_orders()
    start = dt.datetime(2024, 1, 1)
    with legacy.engine.begin() as conn:
        for first in range(1, ROWS + 1, 10_000):
            conn.execute(
                sa.text("INSERT INTO orders (id, customer, total, qty, updated_at) VALUES (:id, 'c', 1, 1, :at)"),
                [{"id": i, "at": start + dt.timedelta(seconds=i // 3)} for i in range(first, first + 10_000)],
            )


def test_kill_9_mid_snapshot_with_workers_resumes_after_the_last_stored_page(
    legacy: LegacyDb, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    _fill(legacy)
    port = free_port()
    offsets = f"offsets:\n  store: file\n  path: {tmp_path}/offsets.json\n  flush_interval: 200ms\n"
    source = (
        f'  - name: legacy\n    topic: "{legacy.prefix}.{{table}}"\n    type: query\n    url: {legacy.url}\n'
        f"    tables: [orders]\n    cursor: [updated_at, id]\n    poll_interval: 100ms\n"
        f"    safety_delay: 300ms\n    batch_size: {PAGE}\n    snapshot_workers: 2\n"
    )
    config = app_config(
        tmp_path, kafka_bootstrap, registry_url, source, offsets=offsets + f"http:\n  listen: 127.0.0.1:{port}\n"
    )
    topic = f"{legacy.prefix}.orders"
    log = tmp_path / "daemon.log"

    process = start_daemon_process(config, log)

    def stored_mid_snapshot() -> bool:
        assert process.poll() is None, f"the daemon exited by itself:\n{log.read_text()[-3000:]}"
        doc = (health(port) or {}).get("sources", {}).get("legacy")
        return doc is not None and doc["events_acked"] >= 5_000 and doc["last_position_stored_at"] is not None

    wait_for(stored_mid_snapshot, timeout=60, interval=0.01, what="a stored position inside the snapshot")
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    before = [r["key"]["id"] for r in read_topic(kafka_bootstrap, registry_url, topic)]
    assert len(before) < ROWS, "the snapshot ended before the kill: load more rows"
    assert before == list(range(1, len(before) + 1))

    process = start_daemon_process(config, log)
    try:
        records = wait_for(
            lambda: (r := read_topic(kafka_bootstrap, registry_url, topic))[-1]["key"]["id"] == ROWS and r,
            timeout=90,
            interval=0.5,
            what="the restarted daemon to publish the last row",
        )
    finally:
        assert terminate(process) == 0, log.read_text()[-3000:]
    after = [r["key"]["id"] for r in records[len(before) :]]
    resumed = after[0] - 1  # the last row of the stored position
    assert 0 < resumed <= len(before)
    assert resumed % PAGE == 0, f"resumed after row {resumed}: not the end of a page"
    assert after == list(range(resumed + 1, ROWS + 1))  # every row after it once, in cursor order
    assert "Traceback" not in log.read_text()
