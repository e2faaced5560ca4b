"""`on_error: dead_letter` with the daemon killed with SIGKILL while poison rows stream: every poison row
reaches the dead-letter topic (at least once) and every good row its topic; none is lost between the two."""

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
    read_dead_letters,
    read_topic,
    start_daemon_process,
    terminate,
    wait_for,
)


class Writer(threading.Thread):
    """Inserts rows one transaction at a time; every seventh row holds NaN, which Avro's decimal cannot."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.conn = psycopg.connect(url, autocommit=True)
        self.stop = threading.Event()
        self.next_id = 1

    def run(self) -> None:
        while not self.stop.is_set():
            value = "NaN" if self.next_id % 7 == 0 else str(self.next_id)
            self.conn.execute("INSERT INTO acc VALUES (%s, %s::numeric)", (self.next_id, value))
            self.next_id += 1
            time.sleep(0.005)  # the application's pace, not a wait


def test_kill_9_while_dead_lettering_loses_no_row(
    pg_url: str, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    db = WalDb(pg_url)
    db.run("CREATE TABLE acc (id int PRIMARY KEY, v numeric(12,2) NOT NULL)")
    source = (
        f"  - name: wal\n    type: postgres_wal\n    url: {db.url}\n    tables: [acc]\n    slot: {db.tag}\n"
        f'    publication: {db.tag}\n    topic: "{db.tag}.{{table}}"\n    status_interval: 200ms\n'
        f'    on_error: dead_letter\n    dead_letter: {{topic: "{db.tag}.dlq"}}\n'
    )
    config = app_config(tmp_path, kafka_bootstrap, registry_url, source)
    log = tmp_path / "daemon.log"
    topic, dead_topic = f"{db.tag}.acc", f"{db.tag}.dlq"
    writer = Writer(db.url)
    rng = random.Random(7)
    try:
        for attempt in range(3):
            process = start_daemon_process(config, log)
            if attempt == 0:  # from the snapshot on, through every kill
                writer.start()
            time.sleep(rng.uniform(1.5, 3.0))  # kill at a random moment: the timing is the test
            process.send_signal(signal.SIGKILL)
            process.wait(10)
    finally:
        writer.stop.set()
        writer.join()
    last = writer.next_id - 1
    good = {i for i in range(1, last + 1) if i % 7}
    poison = {i for i in range(1, last + 1) if i % 7 == 0}
    process = start_daemon_process(config, log)
    try:

        def published() -> set[int]:
            return {r["key"]["id"] for r in read_topic(kafka_bootstrap, registry_url, topic)}

        def dead_lettered() -> set[int]:
            return {r["value"]["after"]["id"] for r in read_dead_letters(kafka_bootstrap, dead_topic)}

        wait_for(lambda: published() >= good, timeout=90, interval=1.0, what="every good row")
        wait_for(lambda: dead_lettered() >= poison, timeout=60, interval=1.0, what="every poison row")
    finally:
        assert terminate(process) == 0, log.read_text()[-3000:]
    assert published() == good, "a poison row reached the table's topic"
    assert dead_lettered() == poison
