"""The single-writer lease (liberator.lease) on real servers: exclusion, who holds it, a killed session, and the
guarantee docs/ha.md states for a network partition: the cut-off leader stops first, the standby starts after
the server ended the silent session, within `takeover` and a retry."""

from __future__ import annotations

import logging
import re
import select
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from liberator.config import DatabaseTimeouts
from liberator.lease import Lease
from liberator_testbed import MySQLInstance
from tests.integration.postgres_wal_support import WalDb
from tests.integration.test_mysql_binlog_helpers import source_yaml
from tests.support import DaemonThread, TopicFold, app_config, wait_for

TIMEOUTS = DatabaseTimeouts(connect_timeout=5, read_timeout=10)


@pytest.fixture(params=["postgresql", "mariadb", "sqlite"])
def lease_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/app.db"
    return str(request.getfixturevalue("pg_url" if request.param == "postgresql" else "mysql_url"))


def test_one_holder_per_key_named_to_the_others_and_free_once_released(lease_url: str) -> None:
    key = f"liberator test/{uuid.uuid4().hex[:8]}"
    first, second = Lease(lease_url, TIMEOUTS, key, 15), Lease(lease_url, TIMEOUTS, key, 15)
    other = Lease(lease_url, TIMEOUTS, key + "-other", 15)
    try:
        assert first.try_acquire() and first.valid()
        assert not second.try_acquire() and not second.valid()
        if not lease_url.startswith("sqlite"):
            holder = second.holder()
            assert "liberator pid" in holder or "connection" in holder, holder
        assert other.try_acquire(), "two keys (two sources) must not exclude each other"
        first.release()
        assert not first.valid()
        assert second.try_acquire() and second.valid()
    finally:
        for lease in (first, second, other):
            lease.close()


@pytest.mark.parametrize("kind", ["postgresql", "mariadb"])
def test_a_session_the_server_ends_loses_the_lease_within_the_interval(
    kind: str, request: pytest.FixtureRequest
) -> None:
    url = str(request.getfixturevalue("pg_url" if kind == "postgresql" else "mysql_url"))
    lease = Lease(url, TIMEOUTS, f"liberator test/{uuid.uuid4().hex[:8]}", 3)
    engine = sa.create_engine(url)
    try:
        assert lease.try_acquire()
        with engine.connect() as conn:
            if kind == "postgresql":
                high, low = (lease.pg_key >> 32) & 0xFFFFFFFF, lease.pg_key & 0xFFFFFFFF
                pid = conn.execute(
                    sa.text("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND classid = :h AND objid = :l"),
                    {"h": high, "l": low},
                ).scalar_one()
                conn.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid})
            else:
                session = conn.execute(sa.text("SELECT IS_USED_LOCK(:n)"), {"n": lease.mysql_name}).scalar_one()
                conn.execute(sa.text(f"KILL {int(session)}"))
        killed = time.monotonic()
        wait_for(lambda: not lease.valid(), timeout=10, what="the lease to count as lost")
        assert time.monotonic() - killed <= lease.validity + 1
        assert lease.lost is not None and "session is gone" in lease.lost, lease.lost
        assert lease.try_acquire(), "nobody else holds it: the lease is taken again"
    finally:
        lease.close()
        engine.dispose()


class PartitionProxy(threading.Thread):
    """A TCP forwarder in front of a server; `partition()` stops forwarding both ways while every socket stays
    open, as a network cut does (no FIN, no RST: each side only hears silence)."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(daemon=True)
        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.cut = threading.Event()
        self.halt = threading.Event()
        self.sockets: list[socket.socket] = []

    def run(self) -> None:
        self.listener.settimeout(0.1)
        while not self.halt.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed
            server = socket.create_connection(self.target)
            self.sockets += [client, server]
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        peers = {a: b, b: a}
        try:
            while not self.halt.is_set():
                ready, _, _ = select.select([a, b], [], [], 0.1)
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if not self.cut.is_set():  # cut: read and drop, so nobody's send ever fails
                        peers[sock].sendall(data)
        except (OSError, ValueError):
            return  # closed by close()

    def partition(self) -> None:
        self.cut.set()

    def close(self) -> None:
        self.halt.set()
        for sock in self.sockets:
            sock.close()
        self.listener.close()


@pytest.fixture
def proxy_for(request: pytest.FixtureRequest) -> Iterator[dict[str, tuple[str, PartitionProxy]]]:
    made: dict[str, tuple[str, PartitionProxy]] = {}
    for kind in ("postgresql", "mariadb"):
        url = str(request.getfixturevalue("pg_url" if kind == "postgresql" else "mysql_url"))
        parsed = make_url(url)
        proxy = PartitionProxy(parsed.host or "127.0.0.1", parsed.port or (5432 if kind == "postgresql" else 3306))
        proxy.start()
        made[kind] = (url, proxy)
    yield made
    for _, proxy in made.values():
        proxy.close()


@pytest.mark.parametrize("kind", ["postgresql", "mariadb"])
def test_a_partitioned_leader_stops_before_the_standby_can_start(
    kind: str, proxy_for: dict[str, tuple[str, PartitionProxy]]
) -> None:
    url, proxy = proxy_for[kind]
    parsed = make_url(url)
    through_proxy = parsed.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    key = f"liberator test/{uuid.uuid4().hex[:8]}"
    takeover = 3.0
    leader, standby = Lease(through_proxy, TIMEOUTS, key, takeover), Lease(url, TIMEOUTS, key, takeover)
    try:
        assert leader.try_acquire()
        assert not standby.try_acquire()
        proxy.partition()
        cut = time.monotonic()
        stopped: list[float] = []
        while not standby.try_acquire():
            if not stopped and not leader.valid():
                stopped.append(time.monotonic() - cut)
            assert time.monotonic() - cut < 30, "the server never ended the partitioned leader's session"
            time.sleep(0.05)
        started = time.monotonic() - cut
        if not stopped and not leader.valid():
            stopped.append(started)
        print(f"\n{kind}: partition; leader stopped after {stopped[0]:.2f}s, standby took over after {started:.2f}s")
        assert stopped and stopped[0] < started, "the partitioned leader still counted as leading"
        assert stopped[0] <= leader.validity + 0.5
        assert started <= takeover + standby.interval + 2
    finally:
        leader.close()
        standby.close()


def test_a_daemon_that_loses_its_lease_stops_publishing_and_stands_by_again(
    pg_url: str, tmp_path: Path, kafka_bootstrap: str, registry_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    db = WalDb(pg_url)
    table = db.tag
    db.run(f"CREATE TABLE {table} (id int PRIMARY KEY, v int NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())")
    db.run(f"INSERT INTO {table} (id, v) SELECT g, 0 FROM generate_series(1, 50) g")
    source = (
        f'  - name: q\n    type: query\n    url: {db.url}\n    tables: [{table}]\n    topic: "{table}.{{table}}"\n'
        "    cursor: [updated_at, id]\n    poll_interval: 200ms\n    safety_delay: 200ms\n"
    )
    config = app_config(tmp_path, kafka_bootstrap, registry_url, source)
    config.write_text(config.read_text() + "ha:\n  takeover: 3s\n")
    caplog.set_level(logging.INFO, logger="liberator")
    with TopicFold(kafka_bootstrap, registry_url, f"{table}.{table}", "v") as fold, DaemonThread(config) as daemon:
        wait_for(lambda: len(fold.rows()) == 50, timeout=60, what="the snapshot")
        # The lease's own session, ended by the server (as an operator's pg_terminate_backend, or a failover).
        database = db.rows("SELECT current_database()")[0][0]
        db.run(
            "SELECT pg_terminate_backend(l.pid) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
            "WHERE l.locktype = 'advisory' AND l.granted AND d.datname = %s AND l.pid <> pg_backend_pid()",
            (database,),
        )
        wait_for(
            lambda: "stopped publishing; trying the lease again" in caplog.text,
            timeout=20,
            what="the leader to step down",
        )
        wait_for(lambda: caplog.text.count("holding the lease") >= 2, timeout=20, what="the lease to be taken again")
        db.run(f"UPDATE {table} SET v = v + 1, updated_at = clock_timestamp() WHERE id <= 10")
        expected = {int(k): int(v) for k, v in db.rows(f"SELECT id, v FROM {table}")}
        wait_for(lambda: fold.rows() == expected, timeout=60, what="the changes after the lease came back")
        assert daemon.status("q").state == "running"
    db.conn.close()


def test_under_the_lease_a_server_id_a_lost_leader_still_holds_is_waited_for_not_fatal(
    mariadb_server: MySQLInstance, mysql_database: str, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    """A partitioned old leader's binlog session can outlive its lease (the server drops a dead replica late):
    the new leader then waits for it instead of failing for good, as it would without the lease."""
    db = mysql_database
    mariadb_server.execute(f"CREATE TABLE `{db}`.acc (id INT PRIMARY KEY, v INT NOT NULL)")
    source = source_yaml(mariadb_server, f"[{db}.acc]", db)
    server_id = re.search(r"server_id: (\d+)", source)
    assert server_id is not None
    old_leader = mariadb_server.connect()
    with old_leader.cursor() as cur:
        cur.execute("SELECT GET_LOCK(%s, 0)", (f"liberator server_id {server_id.group(1)}",))
    config = app_config(tmp_path, kafka_bootstrap, registry_url, source)
    with DaemonThread(config) as daemon:
        status = daemon.status("cdc")
        wait_for(
            lambda: status.state == "retrying" and "holds the source's lease" in (status.error or ""),
            timeout=30,
            what="the new leader to wait for the old session",
        )
        old_leader.close()  # the server ends the old leader's session
        wait_for(lambda: status.state == "running" and status.phase == "streaming", timeout=60, what="streaming")
        assert status.error is None
