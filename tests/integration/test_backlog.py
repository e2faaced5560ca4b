"""How much of its database's log a source has not had stored (liberator.backlog): the WAL a slot holds,
the binlog after the stored position; shown in /health and as liberator_source_backlog_bytes."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pymysql
import pytest

from liberator import backlog
from liberator.connectors.mysql_binlog.position import BinlogPosition, Coord
from liberator.connectors.mysql_binlog.source import binlog_after
from liberator.connectors.postgres_wal import PostgresWalSource
from liberator.source import SourceContext
from liberator_testbed import MySQLInstance
from tests.integration.postgres_wal_support import WalDb
from tests.integration.test_mysql_binlog_helpers import make_source
from tests.support import DaemonThread, app_config, wait_for


def test_binlog_after_counts_the_rest_of_the_file_and_every_later_one() -> None:
    logs = [("bin.000001", 500), ("bin.000002", 900), ("bin.000003", 300)]
    assert binlog_after(logs, Coord("bin.000002", 400)) == 500 + 300
    assert binlog_after(logs, Coord("bin.000003", 300)) == 0
    assert binlog_after(logs, Coord("bin.000000", 4)) is None, "a purged file: unknown, not zero"


def test_the_wal_a_slot_holds_grows_with_writes_and_falls_once_confirmed(pg_url: str) -> None:
    db = WalDb(pg_url)
    db.run("CREATE TABLE t (id int PRIMARY KEY, v text)")
    source = PostgresWalSource(db.config(["t"]), SourceContext("test", threading.Event(), logging.getLogger("t")))
    assert source.backlog_bytes(None) is None, "no slot yet: nothing held"
    db.run("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (db.tag,))
    try:
        before = source.backlog_bytes(None)
        db.run("INSERT INTO t SELECT g, repeat('x', 200) FROM generate_series(1, 2000) g")
        after = source.backlog_bytes(None)
        assert before is not None and after is not None and after - before > 2000 * 200
        db.run("SELECT pg_replication_slot_advance(%s, pg_current_wal_lsn())", (db.tag,))
        confirmed = source.backlog_bytes(None)
        assert confirmed is not None and confirmed < after - 2000 * 200
    finally:
        db.run("SELECT pg_drop_replication_slot(%s)", (db.tag,))


def test_the_binlog_after_the_stored_position_grows_with_writes(mariadb_server: MySQLInstance, mysql_url: str) -> None:
    database = mysql_url.rsplit("/", 1)[-1]
    conn = pymysql.connect(**mariadb_server.connection_settings(), database=database, autocommit=True)
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE t (id INT PRIMARY KEY, v TEXT)")
        cur.execute("SHOW MASTER STATUS")
        file, pos = cur.fetchone()[:2]
    source, _ = make_source(mariadb_server, [f"{database}.t"])
    at = BinlogPosition(Coord(str(file), int(pos)))
    assert source.backlog_bytes(None) is None, "nothing stored yet: no distance to tell"
    assert source.backlog_bytes(at) == 0
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO t VALUES (%s, REPEAT('x', 200))", [(i,) for i in range(500)])
    grown = source.backlog_bytes(at)
    assert grown is not None and grown > 500 * 200
    conn.close()


def test_the_daemon_shows_the_slot_backlog_in_health_and_metrics(
    pg_url: str, tmp_path: Path, kafka_bootstrap: str, registry_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backlog, "BACKLOG_INTERVAL", 0.2)
    db = WalDb(pg_url)
    db.run("CREATE TABLE t (id int PRIMARY KEY)")
    db.run("INSERT INTO t VALUES (1)")
    source = (
        f"  - name: wal\n    type: postgres_wal\n    url: {db.url}\n    tables: [t]\n"
        f"    slot: {db.tag}\n    publication: {db.tag}\n"
        f'    topic: "{db.tag}.{{schema}}.{{table}}"\n    status_interval: 500ms\n'
    )
    config = app_config(tmp_path, kafka_bootstrap, registry_url, source)
    with DaemonThread(config) as daemon:
        wait_for(lambda: daemon.status("wal").backlog_bytes is not None, timeout=60, what="a backlog figure")
        shown = daemon.daemon.metrics.health()["sources"]["wal"]["backlog_bytes"]
        assert isinstance(shown, int) and shown >= 0
        assert "liberator_source_backlog_bytes{" in daemon.daemon.metrics.prometheus()
