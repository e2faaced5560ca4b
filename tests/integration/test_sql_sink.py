"""The SQL sink against real PostgreSQL, MariaDB and SQLite: topics written by the query source go back
into tables of the same kind of database and read back equal."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.legacy_db import LegacyDb
from tests.integration.sql_sink_support import count, sink_yaml, source_yaml, table_rows
from tests.support import DaemonThread, app_config, wait_for


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def legacy(request: pytest.FixtureRequest, tmp_path: Path) -> LegacyDb:
    if request.param == "sqlite":
        return LegacyDb(f"sqlite:///{tmp_path}/legacy.db", "sqlite")
    url = request.getfixturevalue("pg_url" if request.param == "postgresql" else "mysql_url")
    return LegacyDb(url, request.param)


def test_upserts_updates_and_creates_the_table(
    legacy: LegacyDb, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    legacy.create_orders()
    for i in range(1, 31):
        legacy.insert_order(i, total=f"{i}.25")
    config = app_config(
        tmp_path,
        kafka_bootstrap,
        registry_url,
        source_yaml(legacy, "[orders]") + sink_yaml(legacy, f"[{legacy.prefix}.orders]", "    create: true\n"),
    )
    with DaemonThread(config) as daemon:
        wait_for(lambda: count(legacy.url, "sink_orders") == 30, what="30 rows in the sink table")
        legacy.run(f"UPDATE orders SET qty = 9, total = NULL, updated_at = {legacy.now} WHERE id <= 5")
        wait_for(
            lambda: table_rows(legacy.url, "sink_orders") == table_rows(legacy.url, "orders"),
            what="the sink table equal to the source",
        )
        status = daemon.sink_status("replica")
        assert status.state == "running" and status.records_applied >= 35
