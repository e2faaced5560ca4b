"""On a real Kafka, a sink killed with SIGKILL and restarted takes its partitions back at once: as a static
member (group.instance.id) it replaces its dead self without a rebalance, instead of waiting out the dead
member's session (45 s by default). Tansu completes every join in about half of session.timeout.ms, static
or not, so this runs only with LIBERATOR_TESTBED=testcontainers (a real Kafka in Docker)."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.integration.legacy_db import LegacyDb
from tests.integration.sql_sink_support import TopicWriter, sink_entry
from tests.support import app_config, start_daemon_process, terminate, wait_for

SESSION_TIMEOUT_S = 45  # librdkafka's default, what a dynamic member's restart waits out
NO_SOURCES = "  []\nsinks:\n"


@pytest.mark.real_kafka
def test_a_sink_restarted_after_kill_9_is_assigned_well_within_the_session_timeout(
    tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    legacy = LegacyDb(f"sqlite:///{tmp_path}/target.db", "sqlite")
    legacy.create_orders()
    writer = TopicWriter(kafka_bootstrap, registry_url, f"{legacy.prefix}.orders", legacy.url, "orders", "state", 2)
    entry = sink_entry(legacy, f"[{writer.topic}]").replace("session.timeout.ms: 6000", "session.timeout.ms: 45000")
    config = app_config(tmp_path, kafka_bootstrap, registry_url, NO_SOURCES + entry)
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    assigned = f"assigned {writer.topic}"
    first = start_daemon_process(config, first_log)
    try:
        wait_for(lambda: assigned in first_log.read_text(), timeout=90, what="the first sink's assignment")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        restarted_at = time.monotonic()
        second = start_daemon_process(config, second_log)
        try:
            wait_for(lambda: assigned in second_log.read_text(), timeout=90, what="the restarted assignment")
            took = time.monotonic() - restarted_at
            print(f"restarted sink assigned after {took:.1f}s (session timeout {SESSION_TIMEOUT_S}s)")
            # The process start is in it too; a dynamic member would wait for the dead one's session to end.
            assert took < SESSION_TIMEOUT_S / 2, second_log.read_text()[-2000:]
        finally:
            terminate(second)
    finally:
        if first.poll() is None:
            first.kill()
