"""A target that refuses for a while is retried, not given up: /health says retrying with the reason while it
lasts, and running with no error once the batch is written; nothing is lost or applied twice."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from liberator.envelope import Op
from tests.integration.legacy_db import LegacyDb
from tests.integration.sql_sink_support import TopicWriter, count, sink_entry, table_rows
from tests.support import DaemonThread, app_config, wait_for


def test_a_locked_target_is_retried_shown_in_health_and_cleared_once_the_batch_is_written(
    tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    path = tmp_path / "legacy.db"
    legacy = LegacyDb(f"sqlite:///{path}", "sqlite")
    legacy.create_orders()
    legacy.run(
        "CREATE TABLE sink_orders (id INTEGER PRIMARY KEY, customer VARCHAR(50) NOT NULL, "
        "total NUMERIC(10, 2), qty INTEGER NOT NULL, updated_at DATETIME NOT NULL)"
    )
    writer = TopicWriter(kafka_bootstrap, registry_url, f"{legacy.prefix}.orders", legacy.url, "orders", "state")
    for i in (1, 2, 3):
        legacy.insert_order(i)
        writer.send(Op.create, i)
    writer.flush()
    legacy.engine.dispose()

    # Another writer holds the database: every statement of the sink waits read_timeout, then retries.
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    extra = "    read_timeout: 1s\n"
    config = app_config(
        tmp_path, kafka_bootstrap, registry_url, "  []\nsinks:\n" + sink_entry(legacy, f"[{writer.topic}]", extra)
    )
    try:
        with DaemonThread(config) as daemon:
            status = daemon.sink_status("replica")
            wait_for(lambda: status.retries >= 2, timeout=60, what="the sink to retry the locked target twice")
            health = daemon.daemon.metrics.health()
            shown = health["sinks"]["replica"]
            assert health["status"] == "degraded"
            assert shown["state"] == "retrying" and "database is locked" in shown["error"], shown
            assert shown["records_applied"] == 0

            holder.rollback()
            wait_for(lambda: count(legacy.url, "sink_orders") == 3, timeout=60, what="the rows once the lock is gone")
            wait_for(lambda: status.state == "running", what="the sink to show running again")
            health = daemon.daemon.metrics.health()
            assert health["status"] == "ok"
            assert health["sinks"]["replica"]["error"] is None
            assert health["sinks"]["replica"]["records_applied"] == 3
    finally:
        holder.close()
    assert [r[0] for r in table_rows(legacy.url, "sink_orders")] == [1, 2, 3]
