"""MySQL/MariaDB TIME is a signed duration (-838:59:59 to 838:59:59, with fractions), not a time of day: every
legal value goes through each MySQL source (binlog snapshot and stream, query) and the SQL sink into an
identical TIME column of the same database."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from liberator.registry.client import RegistryClient
from liberator_testbed import MySQLInstance
from tests.integration.legacy_db import LegacyDb
from tests.integration.sql_sink_support import count, sink_entry
from tests.integration.test_mysql_binlog_helpers import source_yaml
from tests.support import DaemonThread, app_config, wait_for

# Extremes, zero, the smallest steps either side of it, fractions of every width, negative with fractions.
VALUES = [
    "-838:59:59",
    "838:59:59",
    "00:00:00",
    "-00:00:00.000001",
    "00:00:00.000001",
    "-00:00:00.5",
    "-12:34:56.789012",
    "23:59:59.999999",
    "24:00:00",
    "-24:00:00",
    "-01:00:00.25",
    "100:00:00.1",
    "-838:59:58.999999",
    "838:59:58.999999",
    "-00:59:59.9",
    "-00:00:01",
]
DDL = "(id INT PRIMARY KEY, t0 TIME, t1 TIME(1), t3 TIME(3), t6 TIME(6) NOT NULL)"


def _insert(server: MySQLInstance, db: str, first_id: int) -> None:
    for i, value in enumerate(VALUES):
        server.execute(f"INSERT INTO `{db}`.durations VALUES (%s, %s, %s, %s, %s)", (first_id + i, *[value] * 4))
    server.execute(f"INSERT INTO `{db}`.durations (id, t6) VALUES (%s, '-838:59:59')", (first_id + len(VALUES),))


def _rows(server: MySQLInstance, db: str, table: str) -> list[tuple[object, ...]]:
    # the server's own text of each value (SQLAlchemy's TIME reads a time of day and folds negatives)
    return server.execute(
        f"SELECT id, CAST(t0 AS CHAR), CAST(t1 AS CHAR), CAST(t3 AS CHAR), CAST(t6 AS CHAR) "
        f"FROM `{db}`.`{table}` ORDER BY id"
    )


def _assert_copied(server: MySQLInstance, db: str) -> None:
    source = _rows(server, db, "durations")
    assert _rows(server, db, "sink_durations") == source
    assert len(source) == 2 * (len(VALUES) + 1)
    assert {"-838:59:59.000000", "838:59:59.000000", "-00:00:00.000001"} <= {r[4] for r in source}
    column = server.execute(
        "SELECT COLUMN_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = "
        "'sink_durations' AND COLUMN_NAME = 't3'",
        (db,),
    )
    assert column == [("time(3)",)]


def _sink(url: str, topics: str, prefix: str) -> str:
    legacy = LegacyDb(url, "mariadb")
    legacy.prefix = prefix
    return "sinks:\n" + sink_entry(legacy, topics, "    create: true\n")


def test_binlog_snapshot_and_stream_carry_every_time_value_into_a_time_column(
    mariadb_server: MySQLInstance, mysql_database: str, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    db = mysql_database
    mariadb_server.execute(f"CREATE TABLE `{db}`.durations {DDL}")
    _insert(mariadb_server, db, 1)  # read by the snapshot
    topic = f"{db}.{db}.durations"
    url = mariadb_server.url(db)
    sources = source_yaml(mariadb_server, f"[{db}.durations]", db) + _sink(url, f"[{topic}]", db)
    config = app_config(tmp_path, kafka_bootstrap, registry_url, sources)
    with DaemonThread(config) as daemon:
        wait_for(lambda: count(url, "sink_durations") == len(VALUES) + 1, timeout=60, what="the snapshot's rows")
        _insert(mariadb_server, db, 101)  # read from the binlog
        wait_for(lambda: count(url, "sink_durations") == 2 * (len(VALUES) + 1), timeout=60, what="the streamed rows")
        assert daemon.status("cdc").state == "running"
    _assert_copied(mariadb_server, db)
    latest = RegistryClient(registry_url).latest(f"{topic}-value")
    assert latest is not None
    t6 = next(f for f in _fields(latest[2]) if f["name"] == "t6")
    assert t6["type"] == {"type": "long", "liberator.type": "duration-micros"}


def _fields(schema: Any) -> Iterator[dict[str, Any]]:
    """Every record field anywhere in a schema."""
    if isinstance(schema, list):
        for branch in schema:
            yield from _fields(branch)
    elif isinstance(schema, dict):
        for field in schema.get("fields", []):
            yield field
            yield from _fields(field["type"])


def test_query_source_carries_every_time_value_into_a_time_column(
    mariadb_server: MySQLInstance, mysql_database: str, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    db = mysql_database
    mariadb_server.execute(f"CREATE TABLE `{db}`.durations {DDL}")
    _insert(mariadb_server, db, 1)
    _insert(mariadb_server, db, 101)
    url = mariadb_server.url(db)
    source = (
        f'  - name: legacy\n    topic: "{db}.{{table}}"\n    type: query\n    url: {url}\n'
        "    tables: [durations]\n    cursor: [id]\n    poll_interval: 100ms\n"
    )
    config = app_config(tmp_path, kafka_bootstrap, registry_url, source + _sink(url, f"[{db}.durations]", db))
    with DaemonThread(config) as daemon:
        wait_for(lambda: count(url, "sink_durations") == 2 * (len(VALUES) + 1), timeout=60, what="every row")
        assert daemon.status("legacy").state == "running"
    _assert_copied(mariadb_server, db)


def test_outside_mysql_the_sink_keeps_the_microseconds_in_a_bigint(
    mariadb_server: MySQLInstance,
    mysql_database: str,
    pg_url: str,
    tmp_path: Path,
    kafka_bootstrap: str,
    registry_url: str,
) -> None:
    db = mysql_database
    mariadb_server.execute(f"CREATE TABLE `{db}`.durations {DDL}")
    _insert(mariadb_server, db, 1)
    url = mariadb_server.url(db)
    source = (
        f'  - name: legacy\n    topic: "{db}.{{table}}"\n    type: query\n    url: {url}\n'
        "    tables: [durations]\n    cursor: [id]\n    poll_interval: 100ms\n"
    )
    sink = "sinks:\n" + sink_entry(LegacyDb(url, "mariadb"), f"[{db}.durations]", "    create: true\n", url=pg_url)
    config = app_config(tmp_path, kafka_bootstrap, registry_url, source + sink)
    with DaemonThread(config) as daemon:
        wait_for(lambda: count(pg_url, "sink_durations") == len(VALUES) + 1, timeout=60, what="every row")
        assert daemon.sink_status("replica").state == "running"
    engine = sa.create_engine(pg_url)
    try:
        with engine.connect() as conn:
            kinds = {c["name"]: type(c["type"]) for c in sa.inspect(conn).get_columns("sink_durations")}
            got = dict(conn.execute(sa.text("SELECT id, t6 FROM sink_durations")).tuples().all())
    finally:
        engine.dispose()
    assert kinds["t6"] is sa.BIGINT
    spans = mariadb_server.execute(f"SELECT id, t6 FROM `{db}`.durations")  # pymysql: timedelta
    assert got == {row_id: span // timedelta(microseconds=1) for row_id, span in spans}
