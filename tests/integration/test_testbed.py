"""The test bed itself: the servers are real, configured as the sources need, and go away when stopped."""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from typing import Any

import pytest
import sqlalchemy as sa

import liberator_testbed as testbed
from liberator.embedded.ports import free_port, port_is_open, wait_for_port
from liberator.embedded.process import TestbedError, wait_for_exit
from liberator_testbed import BrokerInstance, MySQLInstance, PostgresInstance

native_only = pytest.mark.skipif(testbed.mode() != "native", reason="checks the native test bed's processes")


# --- PostgreSQL ------------------------------------------------------------------------------------


def test_postgres_is_ready_for_logical_decoding(postgres_server: PostgresInstance, pg_database: str) -> None:
    assert postgres_server.execute("SHOW wal_level") == [("logical",)]
    assert int(postgres_server.execute("SHOW max_replication_slots")[0][0]) >= 20
    db = pg_database
    postgres_server.execute("CREATE TABLE items (id int PRIMARY KEY, name text)", database=db)
    postgres_server.execute("CREATE PUBLICATION pub FOR TABLE items", database=db)
    slot = testbed.unique_name("slot")
    # A logical slot must be created in its own transaction, before any write in it.
    postgres_server.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,), database=db)
    postgres_server.execute("INSERT INTO items VALUES (1, 'one')", database=db)
    changes = postgres_server.execute(
        "SELECT data FROM pg_logical_slot_get_binary_changes(%s, NULL, NULL,"
        " 'proto_version', '1', 'publication_names', 'pub')",
        (slot,),
        database=db,
    )
    kinds = [bytes(row[0])[:1] for row in changes]
    assert b"I" in kinds, kinds  # pgoutput Insert message
    # pg_database's teardown drops the database even though the slot still exists.


def test_pg_url_is_a_fresh_sqlalchemy_database(pg_url: str) -> None:
    assert pg_url.startswith("postgresql+psycopg://")
    engine = sa.create_engine(pg_url)
    try:
        with engine.begin() as conn:
            assert sa.inspect(conn).get_table_names() == []
            conn.execute(sa.text("CREATE TABLE t (id int)"))
    finally:
        engine.dispose()


def test_postgres_wrong_password_is_refused(postgres_server: PostgresInstance) -> None:
    import psycopg

    user = testbed.unique_name("pguser")
    postgres_server.create_user(user, "right-pw", replication=True)
    assert postgres_server.execute("SELECT current_user", user=user, password="right-pw") == [(user,)]
    for bad in ("wrong-pw", ""):
        with pytest.raises(psycopg.OperationalError, match=r"password authentication failed|no password"):
            postgres_server.execute("SELECT 1", user=user, password=bad)
    # Replication connections check the password too.
    with postgres_server.connect(user=user, password="right-pw", replication="database") as conn:
        assert conn.execute("IDENTIFY_SYSTEM").fetchone() is not None
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        postgres_server.connect(user=user, password="wrong-pw", replication="database")


# --- MariaDB / MySQL -------------------------------------------------------------------------------


def test_mysql_binlog_is_row_based_with_full_metadata(mariadb_server: MySQLInstance) -> None:
    (row,) = mariadb_server.execute(
        "SELECT @@log_bin, @@binlog_format, @@binlog_row_image, @@binlog_row_metadata, @@server_id"
    )
    assert row == (1, "ROW", "FULL", "FULL", 1)
    if mariadb_server.is_mariadb:
        assert mariadb_server.execute("SELECT @@gtid_strict_mode, @@gtid_domain_id") == [(1, 0)]
    else:
        assert mariadb_server.execute("SELECT @@gtid_mode") == [("ON",)]


def test_mysql_url_is_a_fresh_sqlalchemy_database(mysql_url: str) -> None:
    assert mysql_url.startswith("mysql+pymysql://")
    engine = sa.create_engine(mysql_url)
    try:
        with engine.begin() as conn:
            assert sa.inspect(conn).get_table_names() == []
            conn.execute(sa.text("CREATE TABLE t (id int PRIMARY KEY, name varchar(20))"))
            conn.execute(sa.text("INSERT INTO t VALUES (1, 'ünïcødé ✓')"))
            assert conn.execute(sa.text("SELECT name FROM t")).scalar_one() == "ünïcødé ✓"
    finally:
        engine.dispose()


def test_mysql_wrong_password_is_refused(mariadb_server: MySQLInstance) -> None:
    import pymysql

    user = testbed.unique_name("myuser", max_len=32)
    mariadb_server.create_user(user, "right-pw", grants=("REPLICATION SLAVE", "REPLICATION CLIENT", "SELECT"))
    (current,) = mariadb_server.execute("SELECT current_user()", user=user, password="right-pw")[0]
    assert current.startswith(f"{user}@")
    for bad in ("wrong-pw", ""):
        with pytest.raises(pymysql.err.OperationalError) as err:
            mariadb_server.execute("SELECT 1", user=user, password=bad)
        assert err.value.args[0] == 1045  # access denied


# --- Kafka-protocol broker -------------------------------------------------------------------------


def test_broker_round_trips_a_keyed_record(kafka_broker: BrokerInstance, kafka_bootstrap: str) -> None:
    from confluent_kafka import Consumer, Producer

    topic = testbed.unique_name("testbed_topic")
    kafka_broker.create_topic(topic, partitions=1, config={"cleanup.policy": "compact"})
    delivered: list[Any] = []
    producer = Producer(
        {"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True, "acks": "all", "linger.ms": 5}
    )
    producer.produce(
        topic,
        key=b"order-1",
        value=b'{"id": 1}',
        headers=[("source", b"testbed")],
        on_delivery=lambda err, msg: delivered.append(err or msg),
    )
    assert producer.flush(30) == 0
    assert len(delivered) == 1 and not isinstance(delivered[0], Exception), delivered
    consumer = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": f"testbed-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
            "fetch.wait.max.ms": 10,
        }
    )
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 60
        msg = None
        while msg is None and time.monotonic() < deadline:
            m = consumer.poll(0.5)
            if m is not None and m.error() is None:
                msg = m
        assert msg is not None, "no record consumed within 60 s"
        assert (msg.key(), msg.value(), msg.headers()) == (b"order-1", b'{"id": 1}', [("source", b"testbed")])
    finally:
        consumer.close()


# --- schema registry -------------------------------------------------------------------------------


def test_registry_answers(request: pytest.FixtureRequest) -> None:
    pytest.importorskip("liberator.embedded.registry.server", reason="the embedded registry is not written yet")
    url: str = request.getfixturevalue("registry_url")
    with urllib.request.urlopen(f"{url}/subjects", timeout=5) as resp:
        assert resp.status == 200
        assert isinstance(json.loads(resp.read()), list)


# --- lifecycle -------------------------------------------------------------------------------------


@native_only
@pytest.mark.parametrize(
    "server_class",
    [testbed.PostgresServer, testbed.MariaDBServer, testbed.EmbeddedBroker, testbed.EmbeddedRegistry],
)
def test_stopped_servers_leave_nothing_behind(server_class: Any) -> None:
    server = server_class().start()
    port, pid, workdir = server.port, server.pid, server.workdir
    assert port_is_open("127.0.0.1", port)
    assert workdir is not None and workdir.is_dir()
    server.stop()
    assert not port_is_open("127.0.0.1", port)
    assert wait_for_exit(pid, timeout=5)
    assert not workdir.exists()
    server.stop()  # idempotent


@native_only
def test_startup_failure_reports_the_server_log() -> None:
    server = testbed.PostgresServer(settings={"wal_level": "bogus"})
    with pytest.raises(TestbedError, match="invalid value for parameter") as err:
        server.start()
    assert "exited with code" in str(err.value)
    assert server.workdir is None and not server.running


def test_wait_for_port_times_out_with_a_clear_error() -> None:
    port = free_port()
    assert port != free_port()
    with pytest.raises(TestbedError, match=rf"nothing on 127\.0\.0\.1:{port} was not ready after 0\.3s"):
        wait_for_port("127.0.0.1", port, what="nothing", timeout=0.3)
