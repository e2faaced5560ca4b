"""TRUNCATE end to end: the CDC sources publish op 't' events with a null key (`truncate: publish`), in the
transaction's order, through the daemon and Kafka; the SQL sink empties the target table at that point of the
batch (`truncate: true`) or skips it with one warning per table (the default)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

import liberator_testbed as testbed
from liberator.connectors.mysql_binlog.config import MySQLBinlogConfig
from liberator.connectors.postgres_wal.config import PostgresWalConfig
from liberator.envelope import Op, change_value
from liberator_testbed import MySQLInstance
from tests.integration.legacy_db import LegacyDb
from tests.integration.postgres_wal_support import WalDb
from tests.integration.sql_sink_support import TopicWriter, count, sink_entry, table_rows
from tests.integration.test_mysql_binlog_helpers import source_yaml as binlog_yaml
from tests.integration.test_postgres_wal_daemon import source_yaml as wal_yaml
from tests.support import DaemonThread, app_config, read_topic, wait_for

NO_SOURCES = "  []\nsinks:\n"


def _ops(records: list[dict[str, Any]]) -> list[tuple[str | None, Any]]:
    """(op, key id) per record; tombstones as (None, id); truncates carry no key."""
    out: list[tuple[str | None, Any]] = []
    for r in records:
        key = None if r["key"] is None else r["key"]["id"]
        out.append((None if r["value"] is None else r["value"]["op"], key))
    return out


def test_postgres_truncate_publish_emits_keyless_t_events_in_transaction_order(
    pg_url: str, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    db = WalDb(pg_url)
    db.run("CREATE TABLE a (id int PRIMARY KEY, v text)")
    db.run("CREATE TABLE b (id int PRIMARY KEY)")
    db.run("INSERT INTO a VALUES (1, 'x')")
    config = app_config(tmp_path, kafka_bootstrap, registry_url, wal_yaml(db, "[a, b]", "    truncate: publish\n"))
    topic_a, topic_b = f"{db.tag}.public.a", f"{db.tag}.public.b"
    with DaemonThread(config) as daemon:
        read_topic(kafka_bootstrap, registry_url, topic_a, expect=1)
        with db.conn.transaction():
            db.run("INSERT INTO a VALUES (2, 'y')")
            db.run("INSERT INTO b VALUES (7)")
            db.run("TRUNCATE a, b")
            db.run("INSERT INTO a VALUES (3, 'z')")
        a = read_topic(kafka_bootstrap, registry_url, topic_a, expect=4)
        b = read_topic(kafka_bootstrap, registry_url, topic_b, expect=2)
        wait_for(lambda: daemon.status("wal").positions_stored > 0, what="a stored position")
    assert _ops(a) == [("r", 1), ("c", 2), ("t", None), ("c", 3)]
    assert _ops(b) == [("c", 7), ("t", None)]
    truncate = a[2]["value"]
    assert truncate["before"] is None and truncate["after"] is None
    assert truncate["source"]["table"] == "a" and truncate["source"]["snapshot"] is False
    assert truncate["source"]["position"] and truncate["source"]["commit_ms"]
    # One transaction: the same id on every event, orders 1..4 in the order the statements ran.
    events = [a[1]["value"], b[0]["value"], truncate, b[1]["value"], a[3]["value"]]
    assert len({e["transaction"]["id"] for e in events}) == 1
    assert [e["transaction"]["order"] for e in events] == [1, 2, 3, 4, 5]


def test_mysql_truncate_publish_emits_a_keyless_t_event_between_the_rows(
    mariadb_server: MySQLInstance, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    server = mariadb_server
    db = testbed.unique_name("truncate_publish", max_len=40)
    server.create_database(db)
    try:
        server.execute(f"CREATE TABLE `{db}`.items (id INT PRIMARY KEY, name VARCHAR(20))")
        server.execute(f"CREATE TABLE `{db}`.other (id INT PRIMARY KEY)")
        server.execute(f"INSERT INTO `{db}`.items VALUES (1, 'one')")
        extra = "    truncate: publish\n"
        config = app_config(tmp_path, kafka_bootstrap, registry_url, binlog_yaml(server, f"[{db}.items]", db, extra))
        topic = f"{db}.{db}.items"
        with DaemonThread(config) as daemon:
            read_topic(kafka_bootstrap, registry_url, topic, expect=1)
            server.execute(f"INSERT INTO `{db}`.items VALUES (2, 'two')")
            server.execute(f"TRUNCATE TABLE `{db}`.items")
            server.execute("TRUNCATE other", database=db)  # not captured: nothing published
            server.execute("TRUNCATE items", database=db)  # unqualified, without TABLE
            server.execute(f"INSERT INTO `{db}`.items VALUES (3, 'three')")
            records = read_topic(kafka_bootstrap, registry_url, topic, expect=5)
            wait_for(lambda: daemon.positions_settled("cdc"), what="a position after the truncates")
        assert _ops(records) == [("r", 1), ("c", 2), ("t", None), ("t", None), ("c", 3)]
        truncate = records[2]["value"]
        assert truncate["before"] is None and truncate["after"] is None
        assert truncate["source"]["database"] == db and truncate["source"]["table"] == "items"
        assert truncate["source"]["position"] and truncate["transaction"]["order"] == 1
        assert records[2]["value"]["transaction"]["id"] != records[3]["value"]["transaction"]["id"]
        # The restart resumes after the truncates: nothing is published twice.
        with DaemonThread(config):
            server.execute(f"INSERT INTO `{db}`.items VALUES (4, 'four')")
            again = read_topic(kafka_bootstrap, registry_url, topic, expect=6)
        assert _ops(again)[5:] == [("c", 4)]
    finally:
        server.drop_database(db)


def test_state_envelope_refuses_truncate_publish_in_one_line() -> None:
    with pytest.raises(ValidationError) as caught:
        PostgresWalConfig(name="wal", url="postgresql://u@h/d", tables=["t"], envelope="state", truncate="publish")
    assert "truncate: publish needs envelope: change" in str(caught.value)
    with pytest.raises(ValidationError, match="set envelope: change or truncate: warn"):
        MySQLBinlogConfig(
            name="cdc", url="mysql://u@h/", tables=["d.t"], server_id=9, envelope="state", truncate="publish"
        )


@pytest.fixture(params=["sqlite", "postgresql"])
def legacy(request: pytest.FixtureRequest, tmp_path: Path) -> LegacyDb:
    if request.param == "sqlite":
        return LegacyDb(f"sqlite:///{tmp_path}/legacy.db", "sqlite")
    return LegacyDb(request.getfixturevalue("pg_url"), request.param)


def _send_truncate(writer: TopicWriter) -> None:
    writer.send_raw(None, writer.value_encoder.encode(change_value(Op.truncate, None, None, writer.info)))


def test_sink_applies_a_truncate_between_the_records_of_its_batch(
    legacy: LegacyDb, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    legacy.create_orders()
    topic = f"{legacy.prefix}.orders"
    writer = TopicWriter(kafka_bootstrap, registry_url, topic, legacy.url, "orders", "change")
    for i in range(1, 6):
        legacy.insert_order(i)
        writer.send(Op.create, i)
    legacy.run("DELETE FROM orders")
    _send_truncate(writer)
    for i in (2, 6, 7):  # after the truncate, in the same batch: kept (2 comes back)
        legacy.insert_order(i, total="99.00")
        writer.send(Op.create, i)
    writer.flush()
    sinks = sink_entry(legacy, f"[{topic}]", "    create: true\n    truncate: true\n")
    config = app_config(tmp_path, kafka_bootstrap, registry_url, NO_SOURCES + sinks)
    with DaemonThread(config):
        wait_for(
            lambda: table_rows(legacy.url, "sink_orders") == table_rows(legacy.url, "orders"),
            what="the sink table equal to the source after the truncate",
        )
        assert [r[0] for r in table_rows(legacy.url, "sink_orders")] == [2, 6, 7]
        _send_truncate(writer)  # a truncate alone in a later batch empties the table
        writer.flush()
        wait_for(lambda: count(legacy.url, "sink_orders") == 0, what="the table emptied")


def test_sink_skips_truncates_by_default_and_says_so_once_per_table(
    tmp_path: Path, kafka_bootstrap: str, registry_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    legacy = LegacyDb(f"sqlite:///{tmp_path}/legacy.db", "sqlite")
    legacy.create_orders()
    topic = f"{legacy.prefix}.orders"
    writer = TopicWriter(kafka_bootstrap, registry_url, topic, legacy.url, "orders", "change")
    for i in (1, 2):
        legacy.insert_order(i)
        writer.send(Op.create, i)
    _send_truncate(writer)
    _send_truncate(writer)
    legacy.insert_order(3)
    writer.send(Op.create, 3)
    writer.flush()
    config = app_config(
        tmp_path, kafka_bootstrap, registry_url, NO_SOURCES + sink_entry(legacy, f"[{topic}]", "    create: true\n")
    )
    with caplog.at_level(logging.WARNING), DaemonThread(config):
        wait_for(lambda: count(legacy.url, "sink_orders") == 3, what="every row kept")
    skipped = [r for r in caplog.records if "truncate of table sink_orders" in r.getMessage()]
    assert len(skipped) == 1, [r.getMessage() for r in skipped]
    assert "set `truncate: true`" in skipped[0].getMessage()
