"""The postgres_wal daemon as a process, killed with SIGKILL while the application writes: nothing is lost."""

from __future__ import annotations

import random
import signal
import threading
import time
from pathlib import Path

import psycopg

from tests.integration.postgres_wal_support import WalDb
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


class Writer(threading.Thread):
    """Transactions of one to five statements: new rows, and updates that bump a row's version."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.conn = psycopg.connect(url, autocommit=True)
        self.stop = threading.Event()
        self.next_id = 1
        self.rng = random.Random(5)

    def run(self) -> None:
        while not self.stop.is_set():
            with self.conn.transaction():
                for _ in range(self.rng.randint(1, 5)):
                    if self.next_id > 10 and self.rng.random() < 0.6:
                        key = self.rng.randint(1, self.next_id - 1)
                        self.conn.execute("UPDATE acc SET v = v + 1 WHERE id = %s", (key,))
                    else:
                        self.conn.execute("INSERT INTO acc VALUES (%s, 0)", (self.next_id,))
                        self.next_id += 1
            time.sleep(0.003)  # the application's pace, not a wait


def test_kill_9_while_streaming_loses_nothing(
    pg_url: str, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    db = WalDb(pg_url)
    db.run("CREATE TABLE acc (id int PRIMARY KEY, v int NOT NULL)")
    db.run("INSERT INTO acc SELECT g, 0 FROM generate_series(1, 300) g")
    source = (
        f"  - name: wal\n    type: postgres_wal\n    url: {db.url}\n    tables: [acc]\n    slot: {db.tag}\n"
        f'    publication: {db.tag}\n    topic: "{db.tag}.{{table}}"\n    snapshot_chunk: 50\n'
        "    status_interval: 200ms\n"
    )
    config = app_config(tmp_path, kafka_bootstrap, registry_url, source)
    log = tmp_path / "daemon.log"
    topic = f"{db.tag}.acc"
    writer = Writer(db.url)
    writer.next_id = 301
    rng = random.Random(13)
    try:
        for attempt in range(3):
            process = start_daemon_process(config, log)
            if attempt == 0:  # the application writes from the end of the snapshot on, through every kill
                wait_for(lambda: len(read_topic(kafka_bootstrap, registry_url, topic)) >= 300)
                writer.start()
            time.sleep(rng.uniform(1.5, 3.0))  # kill at a random moment: the timing is the test
            process.send_signal(signal.SIGKILL)
            process.wait(10)
    finally:
        writer.stop.set()
        writer.join()
    final = {row[0]: row[1] for row in db.rows("SELECT id, v FROM acc")}
    process = start_daemon_process(config, log)
    try:
        wait_for_latest_values(kafka_bootstrap, registry_url, topic, "v", final, timeout=90)
    finally:
        assert terminate(process) == 0, log.read_text()[-3000:]
    records = read_topic(kafka_bootstrap, registry_url, topic)
    seen = versions_by_key(records, "v")
    # Every version since a row was first published (its snapshot read, or its insert) is on the topic:
    # no transaction was lost across the kills. Rows inserted after the snapshot have all their versions.
    assert not version_gaps(final, seen)
    assert all(min(seen[k]) == 0 for k in final if k > 300)
    assert len(final) > 300 and sum(final.values()) > 50
