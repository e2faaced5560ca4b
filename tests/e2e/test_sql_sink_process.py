"""The SQL sink as operators run it: killed with SIGKILL mid-batch and restarted, and two processes in one
consumer group. Afterwards the target table equals the source table, row for row."""

from __future__ import annotations

import random
import signal
from pathlib import Path

import pytest

from liberator.envelope import Op
from tests.integration.legacy_db import LegacyDb
from tests.integration.sql_sink_support import TopicWriter, count, sink_entry, table_rows
from tests.support import app_config, start_daemon_process, terminate, wait_for

NO_SOURCES = "  []\nsinks:\n"
ROWS = 200


@pytest.fixture
def legacy(pg_url: str) -> LegacyDb:
    return LegacyDb(pg_url, "postgresql")


def _fill(legacy: LegacyDb, writer: TopicWriter, rounds: int) -> None:
    """ROWS inserts, then `rounds` updates of every row: ROWS * (rounds + 1) events, newest last per key."""
    for i in range(1, ROWS + 1):
        legacy.insert_order(i)
        writer.send(Op.create, i)
    for r in range(1, rounds + 1):
        legacy.run(f"UPDATE orders SET qty = {r}, total = total + 1")
        for i in range(1, ROWS + 1):
            writer.send(Op.update, i)
    writer.flush()


def applied(legacy: LegacyDb) -> int:
    """Events applied so far, by the offsets the sink stored (two partitions, offsets from 0)."""
    rows = (
        legacy.rows("SELECT kafka_offset FROM liberator_sink_offsets")
        if count(legacy.url, "liberator_sink_offsets") >= 0
        else []
    )
    return sum(r[0] + 1 for r in rows)


def test_kill_9_mid_batch_then_restart_leaves_target_equal_to_source(
    legacy: LegacyDb, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    legacy.create_orders()
    writer = TopicWriter(kafka_bootstrap, registry_url, f"{legacy.prefix}.orders", legacy.url, "orders", "state", 2)
    _fill(legacy, writer, rounds=15)  # 3200 events
    extra = "    create: true\n"
    entry = sink_entry(legacy, f"[{writer.topic}]", extra).replace("size: 500, time: 200ms", "size: 10, time: 20ms")
    config = app_config(tmp_path, kafka_bootstrap, registry_url, NO_SOURCES + entry)
    log = tmp_path / "sink.log"
    rng = random.Random(7)
    applied_at_kill = []
    for round_ in range(1, 3):
        process = start_daemon_process(config, log)
        try:
            # Kill at a random point while it is writing (the offsets it stored say how far it got).
            target = rng.randint(300, 1200) * round_
            # A restarted process starts, joins its group (half of session.timeout.ms on the test broker) and
            # writes batches of 10; on a loaded machine that took more than 40 s.
            wait_for(lambda t=target: applied(legacy) >= t, timeout=120, interval=0.02, what="the sink writing")
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait(10)
        applied_at_kill.append(applied(legacy))
    # Killed while writing: some but not all of the 3200 events were applied each time.
    assert 0 < applied_at_kill[0] <= applied_at_kill[1] < 3200, applied_at_kill
    process = start_daemon_process(config, log)
    try:
        wait_for(
            lambda: table_rows(legacy.url, "sink_orders") == table_rows(legacy.url, "orders"),
            timeout=120,
            what="the target equal to the source after restarts",
        )
        wait_for(lambda: log.read_text().count("assigned t") >= 3, what="the last process running")
    finally:
        assert terminate(process) == 0
    assert "Traceback" not in log.read_text()


def test_two_processes_in_one_group_split_partitions_and_survive_a_rebalance(
    legacy: LegacyDb, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    legacy.create_orders()
    writer = TopicWriter(kafka_bootstrap, registry_url, f"{legacy.prefix}.orders", legacy.url, "orders", "state", 4)
    # Dynamic members: the test broker (Tansu) never ends the session of a static member killed with -9, so
    # its partitions would stay with it for good; a real Kafka hands them over after session.timeout.ms,
    # static or not.
    entry = sink_entry(legacy, f"[{writer.topic}]", "    create: true\n    static_membership: false\n").replace(
        "size: 500, time: 200ms", "size: 20, time: 50ms"
    )
    config = app_config(tmp_path, kafka_bootstrap, registry_url, NO_SOURCES + entry)
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    first = start_daemon_process(config, logs[0])
    second = start_daemon_process(config, logs[1])
    try:
        for i in range(1, ROWS + 1):
            legacy.insert_order(i)
            writer.send(Op.create, i)
        writer.flush()
        wait_for(lambda: count(legacy.url, "sink_orders") == ROWS, timeout=60, what="all rows via two members")
        assert all("assigned" in log.read_text() for log in logs)
        # One member leaves mid-stream: the other takes its partitions over from the stored offsets.
        for r in range(1, 4):
            legacy.run(f"UPDATE orders SET qty = {r}, total = total + 1")
            for i in range(1, ROWS + 1):
                writer.send(Op.update, i)
                if r == 2 and i == ROWS // 2:
                    writer.flush()
                    second.send_signal(signal.SIGKILL)
            writer.flush()
        wait_for(
            lambda: table_rows(legacy.url, "sink_orders") == table_rows(legacy.url, "orders"),
            timeout=90,
            what="the target equal to the source after the rebalance",
        )
    finally:
        for process in (first, second):
            if process.poll() is None:
                terminate(process)
