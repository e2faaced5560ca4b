"""A `tables:` entry that matches no table is a configuration error at start and in `check`, naming the entry,
on both CDC sources alike; mysql_binlog's `future_tables:` allows tables created later, explicitly."""

from __future__ import annotations

from pathlib import Path

import pytest

from liberator.checks import check_all
from liberator.config import load_config
from liberator_testbed import MySQLInstance
from tests.integration.postgres_wal_support import WalDb
from tests.integration.test_mysql_binlog_helpers import source_yaml
from tests.support import DaemonThread, app_config, read_topic, wait_for


def _source(request: pytest.FixtureRequest, tables: str) -> str:
    """A CDC source of the parametrised kind over `tables` (a YAML list with {db} for the database)."""
    if request.param == "postgresql":
        db = WalDb(request.getfixturevalue("pg_url"))
        db.run("CREATE TABLE t (id int PRIMARY KEY)")
        return (
            f"  - name: cdc\n    type: postgres_wal\n    url: {db.url}\n    tables: {tables.format(db='public')}\n"
            f"    slot: {db.tag}\n    publication: {db.tag}\n"
        )
    server: MySQLInstance = request.getfixturevalue("mariadb_server")
    name: str = request.getfixturevalue("mysql_database")
    server.execute(f"CREATE TABLE `{name}`.t (id INT PRIMARY KEY)")
    return source_yaml(server, tables.format(db=name), name)


@pytest.fixture(params=["postgresql", "mariadb"])
def unmatched(request: pytest.FixtureRequest) -> str:
    return _source(request, "[{db}.t, {db}.nothing_*]")


def test_an_entry_matching_no_table_stops_run_and_check_naming_it(
    unmatched: str, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    config = app_config(tmp_path, kafka_bootstrap, registry_url, unmatched)
    problems = check_all(load_config(config), report=lambda _line: None)
    assert any("no table matches" in p and ".nothing_*'" in p for p in problems), problems
    with DaemonThread(config) as daemon:
        assert daemon.wait(60) == 1
        error = daemon.status("cdc").error
    assert "no table matches" in error and ".nothing_*'" in error and "check `tables:`" in error


def test_future_tables_may_match_nothing_and_capture_tables_created_later(
    mariadb_server: MySQLInstance, mysql_database: str, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    db = mysql_database
    mariadb_server.execute(f"CREATE TABLE `{db}`.t (id INT PRIMARY KEY)")
    source = source_yaml(mariadb_server, f"[{db}.t]", db, f"    future_tables: [{db}.later_*]\n")
    config = app_config(tmp_path, kafka_bootstrap, registry_url, source)
    assert check_all(load_config(config), report=lambda _line: None) == []
    with DaemonThread(config) as daemon:
        sources = daemon.daemon.metrics.sources  # filled in once the daemon built its sources

        def snapshot_stored() -> bool:
            position = sources["cdc"].position if "cdc" in sources else None
            return position is not None and (position["snapshot"] is None or position["snapshot"]["done"])

        wait_for(snapshot_stored, what="the end of the snapshot to be stored")
        mariadb_server.execute(f"CREATE TABLE `{db}`.later_x (id INT PRIMARY KEY, note VARCHAR(10))")
        mariadb_server.execute(f"INSERT INTO `{db}`.later_x VALUES (1, 'new')")
        records = read_topic(kafka_bootstrap, registry_url, f"{db}.{db}.later_x", expect=1)
    assert [r["value"]["after"] for r in records] == [{"id": 1, "note": "new"}]
