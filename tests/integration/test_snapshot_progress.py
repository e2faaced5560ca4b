"""Snapshot progress in the daemon: /health shows rows done of the database's estimate per table while the
snapshot runs, and a progress line per table is logged every `progress.interval`."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from liberator.embedded.ports import free_port
from liberator.progress import estimate_rows
from tests.integration.legacy_db import LegacyDb
from tests.support import DaemonThread, app_config, health, wait_for, with_http

ROWS = 30_000  # ANALYZE samples up to 30,000 rows: the estimate is exact


def orders_snapshot(port: int) -> dict[str, Any] | None:
    document = health(port)
    source = (document or {}).get("sources", {}).get("legacy", {})
    figures: dict[str, Any] | None = source.get("snapshot", {}).get("public.orders")
    return figures


def test_health_and_the_log_show_rows_of_the_estimate_during_the_snapshot(
    pg_url: str, tmp_path: Path, kafka_bootstrap: str, registry_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    legacy = LegacyDb(pg_url, "postgresql")
    legacy.create_orders()
    legacy.run(
        "INSERT INTO orders SELECT i, 'c' || i, 1.5, 1, now()::timestamp - interval '1 hour' "
        f"FROM generate_series(1, {ROWS}) i"
    )
    legacy.run("ANALYZE orders")
    source = (
        f'  - name: legacy\n    topic: "{legacy.prefix}.{{table}}"\n    type: query\n    url: {legacy.url}\n'
        "    tables: [orders]\n    cursor: [updated_at, id]\n    batch_size: 50\n    safety_delay: 0s\n"
    )
    config = app_config(tmp_path, kafka_bootstrap, registry_url, source)
    port = free_port()
    with_http(config, port)
    # Small pages that each wait for Kafka: a snapshot slow enough to be seen under way.
    text = config.read_text().replace("kafka:\n", "kafka:\n  max_in_flight: 50\n", 1)
    config.write_text(text + "progress:\n  interval: 300ms\n")
    caplog.set_level(logging.INFO, logger="liberator.source.legacy")
    with DaemonThread(config):
        during = wait_for(
            lambda: (f := orders_snapshot(port)) and f["estimate"] and 0 < f["rows"] < ROWS and f,
            timeout=60,
            what="the snapshot under way in /health",
        )
        assert during["estimate"] == ROWS and not during["done"] and during["rows_per_second"] > 0
        assert during["eta_seconds"] is not None and 0 < during["percent"] < 100
        wait_for(
            lambda: any("snapshot progress public.orders: " in r.getMessage() for r in caplog.records),
            timeout=60,
            what="a progress log line",
        )
        done = wait_for(lambda: (f := orders_snapshot(port)) and f["done"] and f, timeout=120, what="the snapshot done")
        assert done["rows"] == ROWS and done["percent"] == 100.0
    line = next(r.getMessage() for r in caplog.records if "snapshot progress public.orders" in r.getMessage())
    assert f" of ~{ROWS:,} rows (" in line and " rows/s" in line
    assert any(f"snapshot public.orders: done, {ROWS:,} rows in" in r.getMessage() for r in caplog.records)


def test_the_estimate_comes_from_mariadb_statistics(mysql_url: str) -> None:
    legacy = LegacyDb(mysql_url, "mariadb")
    legacy.create_orders()
    for i in range(1, 21):
        legacy.insert_order(i)
    legacy.run("ANALYZE TABLE orders")
    with sa.create_engine(mysql_url).connect() as conn:
        assert estimate_rows(conn, "", "orders") == 20
        assert estimate_rows(conn, legacy.schema, "orders") == 20
        assert estimate_rows(conn, legacy.schema, "nothing_here") is None
