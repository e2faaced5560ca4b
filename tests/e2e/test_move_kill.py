"""A table moved by on_incompatible: new_topic (postgres_wal, mysql_binlog), with the daemon process killed with
SIGKILL the moment the move shows in /health and again in the middle of the re-read, while an application
updates rows: after the last restart the new topic folded by key equals the table, and the old topic kept what
it had."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from liberator.embedded.ports import free_port
from liberator_testbed import MySQLInstance
from tests.integration.postgres_wal_support import WalDb
from tests.integration.test_mysql_binlog_helpers import source_yaml
from tests.support import (
    app_config,
    fold_by_key,
    health,
    read_records,
    read_topic,
    start_daemon_process,
    terminate,
    wait_for,
    with_http,
)

ROWS = 3000


class Writer(threading.Thread):
    """Updates of random rows (`update(key)`: the text column after the change), at the application's pace."""

    def __init__(self, update: Callable[[int], object]) -> None:
        super().__init__(daemon=True)
        self.update = update
        self.halt = threading.Event()

    def run(self) -> None:
        key = 0
        while not self.halt.wait(0.005):  # the application's pace, not a wait for anything
            key = key * 7919 % ROWS + 1
            self.update(key)


def _moved(port: int, process: Any, log: Path, source: str) -> bool:
    assert process.poll() is None, f"the daemon exited by itself:\n{log.read_text()[-3000:]}"
    doc = health(port)
    return bool(doc and doc["sources"].get(source, {}).get("topic_moves"))


def _kill_during_a_move(
    config: Path,
    source: str,
    old: str,
    alter: Callable[[], object],
    writer: Writer,
    table: Callable[[], dict[int, Any]],
    tmp_path: Path,
    kafka_bootstrap: str,
    registry_url: str,
) -> None:
    """The refused ALTER under the writer; SIGKILL at the move and in the middle of the re-read; then checks."""
    port = free_port()
    with_http(config, port)
    log = tmp_path / "daemon.log"
    v2 = f"{old}.v2"
    process = start_daemon_process(config, log)
    try:
        before = read_topic(kafka_bootstrap, registry_url, old, expect=ROWS, timeout=60)
        alter()
        writer.start()
        wait_for(lambda: _moved(port, process, log, source), timeout=60, what="the move")
        process.send_signal(signal.SIGKILL)  # the moment the move is visible
        process.wait(30)

        process = start_daemon_process(config, log)
        # In the middle of the re-read (chunks of 50 rows): some of the table is in the new topic.
        wait_for(lambda: len(read_records(kafka_bootstrap, v2, timeout=5)) >= ROWS // 3, timeout=120, what="v2")
        process.send_signal(signal.SIGKILL)
        process.wait(30)

        process = start_daemon_process(config, log)
        writer.halt.set()
        writer.join()
        rows = table()

        def complete() -> bool:
            folded = fold_by_key(read_topic(kafka_bootstrap, registry_url, v2, timeout=10))
            return {key: row["qty"] for key, row in folded.items()} == rows

        wait_for(complete, timeout=180, interval=1.0, what="v2 == table")
        assert terminate(process) == 0
    finally:
        writer.halt.set()
        if process.poll() is None:
            process.kill()
    assert read_topic(kafka_bootstrap, registry_url, old) == before, "the old topic keeps exactly what it had"


def test_kill_9_during_a_move_leaves_the_new_topic_complete(
    pg_url: str, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    db = WalDb(pg_url)
    db.run("CREATE TABLE items (id int PRIMARY KEY, qty int NOT NULL)")
    db.run(f"INSERT INTO items SELECT i, i FROM generate_series(1, {ROWS}) AS i")
    source = (
        f"  - name: wal\n    type: postgres_wal\n    url: {db.url}\n    tables: [items]\n    slot: {db.tag}\n"
        f'    publication: {db.tag}\n    topic: "{db.tag}.items"\n    snapshot_chunk: 50\n'
        "    status_interval: 200ms\n    on_incompatible: new_topic\n"
    )
    config = app_config(tmp_path, kafka_bootstrap, registry_url, source)
    conn = psycopg.connect(db.url, autocommit=True)
    writer = Writer(lambda key: conn.execute("UPDATE items SET qty = qty || '+' WHERE id = %s", (key,)))
    try:
        _kill_during_a_move(
            config,
            "wal",
            f"{db.tag}.items",
            lambda: db.run("ALTER TABLE items ALTER COLUMN qty TYPE text USING qty::text"),
            writer,
            lambda: {key: qty for key, qty in db.rows("SELECT id, qty FROM items")},
            tmp_path,
            kafka_bootstrap,
            registry_url,
        )
    finally:
        conn.close()


def test_kill_9_during_a_binlog_move_leaves_the_new_topic_complete(
    mariadb_server: MySQLInstance, mysql_database: str, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    db = mysql_database
    mariadb_server.execute(f"CREATE TABLE `{db}`.items (id INT PRIMARY KEY, qty INT NOT NULL)")
    mariadb_server.execute(f"INSERT INTO `{db}`.items SELECT seq, seq FROM seq_1_to_{ROWS}", database=db)
    source = source_yaml(
        mariadb_server, f"[{db}.items]", db, "    snapshot_chunk: 50\n    on_incompatible: new_topic\n"
    )
    config = app_config(tmp_path, kafka_bootstrap, registry_url, source)
    conn = mariadb_server.connect(database=db)

    def update(key: int) -> None:
        with conn.cursor() as cur:
            cur.execute("UPDATE items SET qty = CONCAT(qty, '+') WHERE id = %s", (key,))

    def table() -> dict[int, Any]:
        return {int(k): v for k, v in mariadb_server.execute(f"SELECT id, qty FROM `{db}`.items")}

    try:
        _kill_during_a_move(
            config,
            "cdc",
            f"{db}.{db}.items",
            lambda: mariadb_server.execute(f"ALTER TABLE `{db}`.items MODIFY qty VARCHAR(4000) NOT NULL"),
            Writer(update),
            table,
            tmp_path,
            kafka_bootstrap,
            registry_url,
        )
    finally:
        conn.close()
