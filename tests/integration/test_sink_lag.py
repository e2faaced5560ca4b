"""A sink's consumer lag in records: 0 once the target has everything, the number of unapplied records while
the target cannot take them, rising with a burst, and back to 0 when the target frees; in /health and
/metrics. Measured from the high watermark of fetch responses, so it is right on the test broker too."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from liberator.envelope import Op
from tests.integration.legacy_db import LegacyDb
from tests.integration.sql_sink_support import TopicWriter, count, sink_entry
from tests.support import DaemonThread, app_config, wait_for


def test_sink_lag_in_records_follows_what_the_target_lacks(
    tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    legacy = LegacyDb(f"sqlite:///{tmp_path / 'legacy.db'}", "sqlite")
    legacy.create_orders()
    path = tmp_path / "target.db"
    target_url = f"sqlite:///{path}"
    with sqlite3.connect(path) as target:
        target.execute(
            "CREATE TABLE sink_orders (id INTEGER PRIMARY KEY, customer VARCHAR(50) NOT NULL, "
            "total NUMERIC(10, 2), qty INTEGER NOT NULL, updated_at DATETIME NOT NULL)"
        )
    writer = TopicWriter(kafka_bootstrap, registry_url, f"{legacy.prefix}.orders", legacy.url, "orders", "state")

    def send(ids: range) -> None:
        for i in ids:
            legacy.insert_order(i)
            writer.send(Op.create, i)
        writer.flush()

    send(range(1, 3))
    config = app_config(
        tmp_path,
        kafka_bootstrap,
        registry_url,
        "  []\nsinks:\n" + sink_entry(legacy, f"[{writer.topic}]", "    read_timeout: 1s\n", url=target_url),
    )
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        with DaemonThread(config) as daemon:
            status = daemon.sink_status("replica")
            wait_for(lambda: count(target_url, "sink_orders") == 2, timeout=60, what="the first two rows applied")
            wait_for(lambda: status.lag_records_total == 0, what="the lag to be 0 once the target has them")

            holder.execute("BEGIN EXCLUSIVE")  # the target refuses every write until the rollback
            for burst, expected in ((range(3, 6), 3), (range(6, 10), 7)):
                send(burst)
                wait_for(lambda n=expected: status.lag_records_total == n, timeout=60, what=f"a lag of {expected}")  # type: ignore[misc]
            shown = daemon.daemon.metrics.health()["sinks"]["replica"]
            assert shown["lag_records"] == 7 and shown["lag_records_by_partition"] == {f"{writer.topic}[0]": 7}
            assert 'liberator_sink_lag_records{app="test",sink="replica",type="sql"} 7' in (
                daemon.daemon.metrics.prometheus()
            )

            holder.rollback()
            wait_for(lambda: count(target_url, "sink_orders") == 9, timeout=60, what="every row once the lock is gone")
            wait_for(lambda: status.lag_records_total == 0, what="the lag back to 0")
    finally:
        holder.close()
