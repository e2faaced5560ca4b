"""A database (or host) that accepts connections and never answers: `check` reports each one on one line
within a bound, a source retries once read_timeout passes, and SIGTERM stops the daemon within
shutdown_timeout, whatever the server is doing; after the thaw a restarted daemon has lost nothing.

The hung servers are real ones frozen with SIGSTOP (the test bed's `freeze()`, thawed in a `finally`),
private to this module so that the session's shared servers never freeze; a plain TCP listener that
accepts and never sends a byte stands for a host that hangs before the server's greeting.
"""

from __future__ import annotations

import json
import logging
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import liberator_testbed as testbed
from liberator.embedded.lifecycle import SpawnedProcess
from liberator.embedded.ports import free_port
from liberator_testbed import MariaDBServer, PostgresServer
from tests.integration.test_mysql_binlog_helpers import next_server_id
from tests.support import (
    DaemonThread,
    NotYet,
    app_config,
    fold_by_key,
    read_topic,
    start_daemon_process,
    terminate,
    wait_for,
)

pytestmark = pytest.mark.skipif(
    testbed.mode() != "native", reason="freezing a server needs the test bed's own server processes"
)

FAST = "    connect_timeout: 1s\n    read_timeout: 2s\n"  # hung servers are noticed quickly
PATIENT = "    connect_timeout: 2s\n    read_timeout: 120s\n"  # only shutdown_timeout can end a hung call
SHUTDOWN = 3.0


@pytest.fixture(scope="module")
def mariadb() -> Iterator[MariaDBServer]:
    with MariaDBServer() as server:
        yield server


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    with PostgresServer() as server:
        yield server


@contextmanager
def frozen(*servers: SpawnedProcess) -> Iterator[None]:
    for server in servers:
        server.freeze()
    try:
        yield
    finally:
        for server in servers:
            server.freeze(False)


@pytest.fixture
def black_hole() -> Iterator[int]:
    """A port that accepts every connection and never sends a byte."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    held: list[socket.socket] = []
    done = threading.Event()

    def accept() -> None:
        while not done.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        done.set()
        thread.join(5)
        for conn in held:
            conn.close()
        listener.close()


def _mysql_url(server: MariaDBServer, database: str = "") -> str:
    return f"mysql://root@127.0.0.1:{server.port}/{database}"


def _pg_url(server: PostgresServer, database: str) -> str:
    return f"postgresql://postgres@127.0.0.1:{server.port}/{database}"


def _source(kind: str, url: str, table: str, extra: str = FAST, name: str = "src") -> str:
    tag = testbed.unique_name("hang")
    entry = f"  - name: {name}\n    type: {kind}\n    url: {url}\n    tables: [{table}]\n"
    if kind == "mysql_binlog":
        entry += f"    server_id: {next_server_id()}\n    heartbeat: 200ms\n"
    elif kind == "postgres_wal":
        entry += f"    slot: {tag}\n    publication: {tag}\n    status_interval: 500ms\n"
    else:
        entry += "    cursor: [id]\n    poll_interval: 100ms\n"
    return entry + f'    topic: "{tag}.{{table}}"\n' + extra


def _topic(config: Path, name: str = "src") -> str:
    text = config.read_text()
    entry = text[text.index(f"  - name: {name}\n") :]
    return entry[entry.index('topic: "') + 8 : entry.index(".{table}")] + ".t"


def _health(port: int, kind: str, name: str) -> dict[str, Any]:
    found = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5)).get(kind, {})
    if name not in found:
        raise NotYet(f"{name} is not registered yet")
    return dict(found[name])


def _with(config: Path, text: str) -> Path:
    config.write_text(config.read_text() + text)
    return config


# -- check --------------------------------------------------------------------------------------------


def test_check_reports_each_hung_database_on_one_line_within_a_bound(
    mariadb: MariaDBServer,
    postgres: PostgresServer,
    black_hole: int,
    tmp_path: Path,
    kafka_bootstrap: str,
    registry_url: str,
) -> None:
    hole = f"127.0.0.1:{black_hole}"
    sources = (
        _source("mysql_binlog", f"mysql://root@{hole}/", "shop.t", name="binlog")
        + _source("postgres_wal", f"postgresql://postgres@{hole}/app", "t", name="wal")
        + _source("query", _mysql_url(mariadb, "shop"), "t", name="polled")
        + f"  - name: ob\n    type: outbox\n    url: {_pg_url(postgres, 'app')}\n{FAST}"
        + f"sinks:\n  - name: replica\n    type: sql\n    url: {_pg_url(postgres, 'app')}\n    topics: [x]\n{FAST}"
    )
    config = app_config(tmp_path, kafka_bootstrap, registry_url, sources)
    with frozen(mariadb, postgres):
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", "liberator", "check", str(config)], capture_output=True, text=True, timeout=120
        )
        elapsed = time.monotonic() - started
    assert result.returncode == 1, result.stdout + result.stderr
    problems = [line for line in result.stdout.splitlines() if line.startswith("problem:")]
    servers = {
        "source binlog": hole,
        "source wal": hole,
        "source polled": f"127.0.0.1:{mariadb.port}",
        "source ob": f"127.0.0.1:{postgres.port}",
        "sink replica": f"127.0.0.1:{postgres.port}",
    }
    for name, server in servers.items():
        mine = [line for line in problems if line.startswith(f"problem: {name}:")]
        assert len(mine) == 1, f"{name}: {problems}"
        assert server in mine[0] and "connect_timeout (1s)" in mine[0], mine[0]
    assert len(problems) == len(servers), problems
    # Five hung databases at about connect_timeout each (PostgreSQL counts at least 2 s), not 90 s+.
    assert elapsed < 40, f"check took {elapsed:.0f}s"


# -- read timeouts: a transient error, retried --------------------------------------------------------


def _prepare(server: MariaDBServer | PostgresServer) -> tuple[str, str, Any]:
    """(url, table entry, run(sql)) of a fresh database on `server` holding table t (id, v), rows 1..5."""
    database = testbed.unique_name("hang")
    if isinstance(server, MariaDBServer):
        mariadb = server
        mariadb.create_database(database)

        def run_mysql(sql: str) -> Any:
            return mariadb.execute(sql, database=database)

        run_mysql("CREATE TABLE t (id INT PRIMARY KEY, v INT NOT NULL)")
        run_mysql("INSERT INTO t VALUES (1, 0), (2, 0), (3, 0), (4, 0), (5, 0)")
        return _mysql_url(mariadb), f"{database}.t", run_mysql
    postgres = server
    postgres.create_database(database)

    def run_pg(sql: str) -> Any:
        return postgres.execute(sql, database=database)

    run_pg("CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL)")
    run_pg("INSERT INTO t SELECT g, 0 FROM generate_series(1, 5) g")
    return _pg_url(postgres, database), "t", run_pg


def _table(run: Any) -> dict[int, int]:
    return {int(row[0]): int(row[1]) for row in run("SELECT id, v FROM t")}


def _folded(bootstrap: str, registry: str, topic: str) -> dict[int, int]:
    return {k: row["v"] for k, row in fold_by_key(read_topic(bootstrap, registry, topic)).items()}


@pytest.mark.parametrize("kind", ["mysql_binlog", "postgres_wal", "query"])
def test_a_database_that_stops_answering_is_retried_after_read_timeout_and_nothing_is_lost(
    kind: str,
    mariadb: MariaDBServer,
    postgres: PostgresServer,
    tmp_path: Path,
    kafka_bootstrap: str,
    registry_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = mariadb if kind == "mysql_binlog" else postgres
    url, table, run = _prepare(server)
    config = app_config(tmp_path, kafka_bootstrap, registry_url, _source(kind, url, table))
    topic = _topic(config)
    caplog.set_level(logging.WARNING, logger="liberator")
    with DaemonThread(config) as daemon:
        wait_for(lambda: _folded(kafka_bootstrap, registry_url, topic) == _table(run), timeout=60, what="the rows")
        # Rows 1..5 may come from the snapshot, before the stream is open: a freeze then would hang its
        # connect (connect_timeout). A row written after them arrives through the stream (or the next poll;
        # the query source's cursor is the id, so this row and the later ones take ids above 5).
        run("INSERT INTO t VALUES (6, 0)")
        wait_for(lambda: _folded(kafka_bootstrap, registry_url, topic) == _table(run), timeout=60, what="row 6")
        with frozen(server):

            def timed_out() -> str | None:
                lines = [r.getMessage() for r in caplog.records if "read_timeout (2s)" in r.getMessage()]
                return lines[0] if lines else None

            line = wait_for(timed_out, timeout=30, what="the source to give up on the hung server")
        assert f"127.0.0.1:{server.port}" in line and "retrying" in line, line
        assert daemon.status("src").state in ("retrying", "running")
        run("INSERT INTO t VALUES (7, 0)")
        if kind != "query":  # its cursor is the id: the query source sees new rows only
            run("UPDATE t SET v = 1 WHERE id = 3")
            run("DELETE FROM t WHERE id = 4")
        wait_for(
            lambda: _folded(kafka_bootstrap, registry_url, topic) == _table(run), timeout=90, what="the later rows"
        )
        assert daemon.status("src").state == "running"
        assert daemon.stop() == 0


# -- SIGTERM while a server is frozen -----------------------------------------------------------------


def _stop_frozen(process: subprocess.Popen[bytes]) -> tuple[int, float]:
    started = time.monotonic()
    try:
        code = terminate(process, timeout=SHUTDOWN + 30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    return code, time.monotonic() - started


def test_sigterm_stops_the_daemon_within_shutdown_timeout_while_mariadb_is_frozen(
    mariadb: MariaDBServer, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    url, table, run = _prepare(mariadb)
    source = _source("mysql_binlog", url, table, PATIENT, name="cdc")
    config = _with(app_config(tmp_path, kafka_bootstrap, registry_url, source), f"shutdown_timeout: {SHUTDOWN:g}s\n")
    topic = _topic(config, "cdc")
    log = tmp_path / "daemon.log"
    process = start_daemon_process(config, log)
    try:
        wait_for(lambda: "by GTID" in log.read_text(), timeout=60, what="the stream to start")
        run("UPDATE t SET v = 1 WHERE id = 1")
        run("DELETE FROM t WHERE id = 2")
        wait_for(lambda: _folded(kafka_bootstrap, registry_url, topic) == _table(run), timeout=60, what="the rows")
        # Everything is published: the source waits between transactions, with select on the stream's
        # socket (yielding IDLE), not inside a read, so a frozen server does not hold its thread.
        with frozen(mariadb):
            code, elapsed = _stop_frozen(process)
    finally:
        if process.poll() is None:
            process.kill()
    text = log.read_text()
    assert code == 0, text[-3000:]
    assert elapsed < SHUTDOWN + 5, f"took {elapsed:.1f}s after SIGTERM"
    assert "did not stop within shutdown_timeout" not in text
    assert "Traceback" not in text
    # Thawed: more changes; a restarted daemon catches up with all of them.
    run("INSERT INTO t VALUES (6, 0)")
    run("UPDATE t SET v = 2 WHERE id = 3")
    run("DELETE FROM t WHERE id = 4")
    process = start_daemon_process(config, log)
    try:
        wait_for(lambda: _folded(kafka_bootstrap, registry_url, topic) == _table(run), timeout=90, what="catching up")
    finally:
        assert terminate(process) == 0, log.read_text()[-3000:]


def test_sigterm_stops_the_daemon_within_shutdown_timeout_while_a_sink_writes_to_frozen_postgres(
    postgres: PostgresServer, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    url, _entry, run = _prepare(postgres)
    legacy = tmp_path / "legacy.db"
    with sqlite3.connect(legacy) as conn:
        conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, v INTEGER NOT NULL)")
        conn.executemany("INSERT INTO items VALUES (?, 0)", [(i,) for i in range(1, 11)])
    port = free_port()
    group = testbed.unique_name("hang")
    sources = (
        _source("postgres_wal", url, "t", PATIENT, name="wal")
        + f"  - name: legacy\n    type: query\n    url: sqlite:///{legacy}\n    tables: [items]\n"
        f'    cursor: [id]\n    poll_interval: 100ms\n    topic: "{group}.{{table}}"\n'
        f"sinks:\n  - name: replica\n    type: sql\n    url: {url}\n    topics: [{group}.items]\n"
        f'    table: "copy_{{table}}"\n    create: true\n    batch: {{size: 500, time: 200ms}}\n'
        f"    consumer: {{group_id: {group}, settings: {{session.timeout.ms: 6000, fetch.wait.max.ms: 10}}}}\n"
        f"{PATIENT}"
    )
    config = _with(
        app_config(tmp_path, kafka_bootstrap, registry_url, sources),
        f"shutdown_timeout: {SHUTDOWN:g}s\nhttp:\n  listen: 127.0.0.1:{port}\n",
    )
    wal_topic = _topic(config, "wal")

    def legacy_rows() -> dict[int, int]:
        with sqlite3.connect(legacy) as conn:
            return {int(i): int(v) for i, v in conn.execute("SELECT id, v FROM items")}

    def copied() -> dict[int, int]:
        return {int(i): int(v) for i, v in run("SELECT id, v FROM copy_items")}

    log = tmp_path / "daemon.log"
    process = start_daemon_process(config, log)
    try:
        wait_for(lambda: copied() == legacy_rows(), timeout=60, what="the sink's copy")
        wait_for(lambda: "source.wal: snapshot done" in log.read_text(), timeout=60, what="the stream to start")
        run("UPDATE t SET v = 1 WHERE id = 1")
        wait_for(lambda: _folded(kafka_bootstrap, registry_url, wal_topic) == _table(run), timeout=60, what="wal")
        consumed = _health(port, "sinks", "replica")["records_consumed"]
        with frozen(postgres):
            with sqlite3.connect(legacy) as conn:
                conn.executemany("INSERT INTO items VALUES (?, 0)", [(i,) for i in range(11, 21)])
            # The sink has the new records: it waits inside its write to the frozen target.
            wait_for(
                lambda: _health(port, "sinks", "replica")["records_consumed"] >= consumed + 10,
                timeout=60,
                what="the sink to consume the new records",
            )
            code, elapsed = _stop_frozen(process)
    finally:
        if process.poll() is None:
            process.kill()
    text = log.read_text()
    assert code == 1, text[-3000:]
    assert elapsed < SHUTDOWN + 5, f"took {elapsed:.1f}s after SIGTERM"
    assert f"sink replica did not stop within shutdown_timeout ({SHUTDOWN:g}s)" in text
    assert "source wal did not stop" not in text and "source legacy did not stop" not in text
    # What Kafka acknowledged was stored, the frozen target notwithstanding.
    stored = json.loads((tmp_path / "offsets.json").read_text())["sources"]
    assert stored["legacy"]["position"]["streams"]["items"]["cursor"] == [20]
    # Thawed: more changes; a restarted daemon brings the copy and the WAL topic up to date.
    run("INSERT INTO t VALUES (6, 0)")
    run("DELETE FROM t WHERE id = 2")
    with sqlite3.connect(legacy) as conn:
        conn.execute("INSERT INTO items VALUES (21, 0)")
    process = start_daemon_process(config, log)
    try:
        wait_for(lambda: copied() == legacy_rows(), timeout=90, what="the sink's copy after the restart")
        wait_for(lambda: _folded(kafka_bootstrap, registry_url, wal_topic) == _table(run), timeout=60, what="wal")
    finally:
        assert terminate(process) == 0, log.read_text()[-3000:]
