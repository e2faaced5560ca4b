"""Both CDC sources as daemon processes, killed with SIGKILL during and right after the initial snapshot while
an application inserts, updates and deletes random keys: after every restart the topic folded by key equals
the table. No ghost rows: a row the interrupted snapshot published and the application deleted is retracted."""

from __future__ import annotations

import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pymysql  # type: ignore[import-untyped]
import pytest

from liberator.testbed import MySQLInstance
from liberator.testbed.ports import free_port
from tests.integration.postgres_wal_support import WalDb
from tests.integration.test_mysql_binlog_helpers import source_yaml
from tests.support import (
    TopicFold,
    app_config,
    fold_differences,
    health,
    start_daemon_process,
    terminate,
    wait_for,
)

ROWS = 20_000
CHUNK = 500
# Each run is killed when the first condition holds: (events acknowledged in this run, seconds after the
# snapshot is done). Two kills inside the snapshot, one the moment it is done, one shortly after.
KILLS = [(2_000, None), (6_000, None), (None, 0.0), (None, 0.5)]

Statement = tuple[str, tuple[Any, ...]]


@dataclass
class Target:
    """A database with the table `acc (id, v)` and how the daemon captures it."""

    source: str  # the source's YAML entry
    topic: str
    transaction: Callable[[list[Statement]], None]  # runs statements in one transaction
    upsert: str  # insert a key, or bump it if it exists
    move: Callable[[int, int], Statement]  # change a row's primary key, unless the new one is taken
    table: Callable[[], dict[int, int]]


def _pg_target(pg_url: str) -> Iterator[Target]:
    db = WalDb(pg_url)
    db.run("CREATE TABLE acc (id int PRIMARY KEY, v int NOT NULL)")
    db.run("INSERT INTO acc SELECT g, 0 FROM generate_series(1, %s) g", (ROWS,))
    source = (
        f"  - name: cdc\n    type: postgres_wal\n    url: {db.url}\n    tables: [acc]\n    slot: {db.tag}\n"
        f'    publication: {db.tag}\n    topic: "{db.tag}.{{table}}"\n    snapshot_chunk: {CHUNK}\n'
        "    status_interval: 200ms\n"
    )
    writer = psycopg.connect(db.url, autocommit=True)

    def transaction(statements: list[Statement]) -> None:
        with writer.transaction():
            for sql, args in statements:
                writer.execute(sql, args)

    def table() -> dict[int, int]:
        return {int(k): int(v) for k, v in db.rows("SELECT id, v FROM acc")}

    upsert = "INSERT INTO acc VALUES (%s, 0) ON CONFLICT (id) DO UPDATE SET v = acc.v + 1"

    def move(old: int, new: int) -> Statement:
        taken = "EXISTS (SELECT 1 FROM acc WHERE id = %s)"
        return (f"UPDATE acc SET id = %s WHERE id = %s AND NOT {taken}", (new, old, new))

    yield Target(source, f"{db.tag}.acc", transaction, upsert, move, table)
    writer.close()


def _mariadb_target(server: MySQLInstance, db: str) -> Iterator[Target]:
    server.execute(f"CREATE TABLE `{db}`.acc (id INT PRIMARY KEY, v INT NOT NULL)")
    server.execute(f"INSERT INTO acc SELECT seq, 0 FROM seq_1_to_{ROWS}", database=db)
    writer = server.connect(database=db)

    def transaction(statements: list[Statement]) -> None:
        try:
            with writer.cursor() as cur:
                cur.execute("BEGIN")
                for sql, args in statements:
                    cur.execute(sql, args)
                cur.execute("COMMIT")
        except pymysql.MySQLError as exc:
            writer.rollback()
            if exc.args[0] not in (1213, 1205):  # deadlock / lock wait: rolled back, nothing committed
                raise

    def table() -> dict[int, int]:
        return {int(k): int(v) for k, v in server.execute(f"SELECT id, v FROM `{db}`.acc")}

    upsert = "INSERT INTO acc VALUES (%s, 0) ON DUPLICATE KEY UPDATE v = v + 1"

    def move(old: int, new: int) -> Statement:
        return ("UPDATE IGNORE acc SET id = %s WHERE id = %s", (new, old))  # IGNORE: no change if `new` is taken

    source = source_yaml(server, f"[{db}.acc]", db, f"    snapshot_chunk: {CHUNK}\n")
    yield Target(source, f"{db}.{db}.acc", transaction, upsert, move, table)
    writer.close()


@pytest.fixture(params=["postgresql", "mariadb"])
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    if request.param == "postgresql":
        yield from _pg_target(request.getfixturevalue("pg_url"))
    else:
        yield from _mariadb_target(request.getfixturevalue("mariadb_server"), request.getfixturevalue("mysql_database"))


class Writer(threading.Thread):
    """Transactions of one to three statements on random keys: updates, deletes, inserts (re-inserts too) and
    primary-key changes (a delete of the old key plus an insert of the new one)."""

    def __init__(self, target: Target) -> None:
        super().__init__(daemon=True)
        self.target = target
        self.halt = threading.Event()
        self.rng = random.Random(7)
        self.deletes = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.halt.is_set():
                statements: list[Statement] = []
                for _ in range(self.rng.randint(1, 3)):
                    key, roll = self.rng.randint(1, ROWS), self.rng.random()
                    if roll < 0.35:
                        statements.append(("UPDATE acc SET v = v + 1 WHERE id = %s", (key,)))
                    elif roll < 0.6:
                        statements.append(("DELETE FROM acc WHERE id = %s", (key,)))
                        self.deletes += 1
                    elif roll < 0.65:
                        statements.append(self.target.move(key, self.rng.randint(1, ROWS)))
                    else:
                        statements.append((self.target.upsert, (key,)))
                self.target.transaction(statements)
                time.sleep(0.004)
        except BaseException as exc:  # reported by the test
            self.error = exc


def _kill_when(process: Any, port: int, acked: int | None, after_snapshot: float | None, log: Path) -> None:
    """SIGKILL the daemon once it acknowledged `acked` events in this run, or `after_snapshot` s past it."""
    streaming_since: float | None = None

    def due() -> bool:
        nonlocal streaming_since
        assert process.poll() is None, f"the daemon exited by itself:\n{log.read_text()[-3000:]}"
        doc = health(port)
        if doc is None or "cdc" not in doc["sources"]:
            return False
        source = doc["sources"]["cdc"]
        if acked is not None and source["events_acked"] >= acked:
            return True
        if source["phase"] == "streaming":
            streaming_since = streaming_since or time.monotonic()
            return after_snapshot is not None and time.monotonic() - streaming_since >= after_snapshot
        return False

    wait_for(due, timeout=60, interval=0.01, what="the moment to kill the daemon")
    process.send_signal(signal.SIGKILL)
    process.wait(10)


def test_kill_9_during_and_after_the_snapshot_leaves_no_ghost_rows(
    target: Target, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    port = free_port()
    # The product's own flush interval (1s): a kill lands before the first flush as it would in production.
    offsets = f"offsets:\n  store: file\n  path: {tmp_path}/offsets.json\nhttp:\n  listen: 127.0.0.1:{port}\n"
    config = app_config(tmp_path, kafka_bootstrap, registry_url, target.source, offsets=offsets)
    log = tmp_path / "daemon.log"
    writer = Writer(target)
    writer.start()
    try:
        for acked, after_snapshot in KILLS:
            process = start_daemon_process(config, log)
            _kill_when(process, port, acked, after_snapshot, log)
        process = start_daemon_process(config, log)
        try:
            wait_for(lambda: (health(port) or {}).get("sources", {}).get("cdc", {}).get("phase") == "streaming")
            time.sleep(0.5)  # changes streamed by the last run too
        finally:
            writer.halt.set()
            writer.join(10)
        assert writer.error is None, writer.error
        table = target.table()
        with TopicFold(kafka_bootstrap, registry_url, target.topic, "v") as fold:
            try:
                wait_for(lambda: fold.rows() == table, timeout=45, interval=0.5, what="the topic to fold to the table")
            except AssertionError:
                raise AssertionError(f"topic != table: {fold_differences(fold.rows(), table)}") from None
    finally:
        writer.halt.set()
        if process.poll() is None:
            assert terminate(process) == 0, log.read_text()[-3000:]
    assert writer.deletes > 500
    assert "Traceback" not in log.read_text()
