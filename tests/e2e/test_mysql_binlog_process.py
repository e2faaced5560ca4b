"""The mysql_binlog daemon as a process, killed with SIGKILL inside large transactions while the application
writes: after a restart every row version since the snapshot is on the topic."""

from __future__ import annotations

import random
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pymysql  # type: ignore[import-untyped]

from liberator_testbed import MySQLInstance
from tests.integration.test_mysql_binlog_helpers import source_yaml
from tests.support import (
    app_config,
    read_topic,
    start_daemon_process,
    terminate,
    version_gaps,
    versions_by_key,
    wait_for,
    wait_for_latest_values,
)

ROWS = 2000
_DEADLOCK = (1213, 1205)  # deadlock / lock wait timeout: the transaction rolled back, nothing committed


def _transaction(conn: Any, statements: list[tuple[str, tuple[Any, ...]]]) -> bool:
    try:
        with conn.cursor() as cur:
            cur.execute("BEGIN")
            for sql, args in statements:
                cur.execute(sql, args)
            cur.execute("COMMIT")
        return True
    except pymysql.MySQLError as exc:
        conn.rollback()
        if exc.args[0] not in _DEADLOCK:
            raise
        return False


class Writer(threading.Thread):
    """Transactions of one to five statements: new rows, and updates that bump a row's version."""

    def __init__(self, server: MySQLInstance, db: str) -> None:
        super().__init__(daemon=True)
        self.conn = server.connect(database=db)
        self.stop = threading.Event()
        self.next_id = ROWS + 1
        self.rng = random.Random(5)
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                statements: list[tuple[str, tuple[Any, ...]]] = []
                new_id = self.next_id
                for _ in range(self.rng.randint(1, 5)):
                    if self.rng.random() < 0.6:
                        key = self.rng.randint(1, new_id - 1)
                        statements.append(("UPDATE acc SET v = v + 1 WHERE id = %s", (key,)))
                    else:
                        statements.append(("INSERT INTO acc VALUES (%s, 0)", (new_id,)))
                        new_id += 1
                if _transaction(self.conn, statements):
                    self.next_id = new_id
                time.sleep(0.003)  # the application's pace, not a wait
        except BaseException as exc:  # reported by the test
            self.error = exc


def test_kill_9_mid_transaction_under_concurrent_writes_loses_nothing(
    mariadb_server: MySQLInstance, mysql_database: str, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    db = mysql_database
    mariadb_server.execute(f"CREATE TABLE `{db}`.acc (id INT PRIMARY KEY, v INT NOT NULL)")
    mariadb_server.execute(f"INSERT INTO acc SELECT seq, 0 FROM seq_1_to_{ROWS}", database=db)
    extra = "    snapshot_chunk: 250\n"
    config = app_config(tmp_path, kafka_bootstrap, registry_url, source_yaml(mariadb_server, f"[{db}.acc]", db, extra))
    log = tmp_path / "daemon.log"
    topic = f"{db}.{db}.acc"
    writer = Writer(mariadb_server, db)
    bulk = mariadb_server.connect(database=db)
    rng = random.Random(13)
    try:
        for attempt in range(3):
            process = start_daemon_process(config, log)
            if attempt == 0:  # the application writes from the end of the snapshot on, through every kill
                wait_for(lambda: len(read_topic(kafka_bootstrap, registry_url, topic)) >= ROWS, timeout=60)
                writer.start()
            time.sleep(rng.uniform(1.0, 2.0))  # a random moment to act at: the timing is the test
            # One transaction touching every row: thousands of events with no position until its end. The
            # kill lands while the daemon publishes it, so the restart must redo it from the position before.
            while not _transaction(bulk, [(f"UPDATE acc SET v = v + 1 WHERE id <= {ROWS}", ())]):
                pass
            time.sleep(rng.uniform(0.02, 0.2))  # kill at a random moment inside the publishing
            process.send_signal(signal.SIGKILL)
            process.wait(10)
    finally:
        writer.stop.set()
        writer.join()
        bulk.close()
    assert writer.error is None, writer.error
    final = {int(k): int(v) for k, v in mariadb_server.execute(f"SELECT id, v FROM `{db}`.acc")}
    process = start_daemon_process(config, log)
    try:
        wait_for_latest_values(kafka_bootstrap, registry_url, topic, "v", final, timeout=120)
    finally:
        assert terminate(process) == 0, log.read_text()[-3000:]
    records = read_topic(kafka_bootstrap, registry_url, topic)
    seen = versions_by_key(records, "v")
    # Every version since a row was first published (its snapshot read, or its insert) is on the topic: no
    # transaction was lost across the kills, including the large ones the kills interrupted.
    assert not version_gaps(final, seen)
    assert all(min(seen[k]) == 0 for k in final)
    assert len(final) > ROWS and all(final[k] >= 3 for k in range(1, ROWS + 1))
    # Versions published twice: a kill came before a transaction's end was stored, and the restart redid it.
    assert len(records) > sum(len(versions) for versions in seen.values())
    assert "Traceback" not in log.read_text()
