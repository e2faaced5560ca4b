"""`snapshot_mode: incremental` on mysql_binlog: the initial snapshot read in chunks between watermarks while
streaming (no snapshot transaction over the tables), two chunks at once; under a writer, the topic folded by key
equals the table and no key's older version follows a newer one. A consistent snapshot cut short is finished
in chunks after the mode is switched."""

from __future__ import annotations

import json
import logging
import random
import threading
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from liberator.embedded.ports import free_port
from liberator_testbed import MySQLInstance
from tests.integration.test_mysql_binlog_helpers import numbers, source_yaml
from tests.support import DaemonThread, app_config, cli, fold_by_key, health, read_topic, wait_for, with_http

ROWS = 2000


class Writer(threading.Thread):
    """Updates (version + 1) and deletes of random keys, on a connection of its own, as fast as it goes."""

    def __init__(self, server: MySQLInstance, db: str) -> None:
        super().__init__(daemon=True)
        self.server, self.db = server, db
        self.halt = threading.Event()
        self.commits = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        rng = random.Random(11)
        try:
            conn = self.server.connect(database=self.db)
            try:
                while not self.halt.is_set():
                    key = rng.randint(1, ROWS)
                    with conn.cursor() as cur:
                        if rng.random() < 0.1:
                            cur.execute("DELETE FROM items WHERE id = %s", (key,))
                        else:
                            cur.execute("UPDATE items SET version = version + 1 WHERE id = %s", (key,))
                    self.commits += 1
            finally:
                conn.close()
        except BaseException as exc:  # reported by the test
            self.error = exc


@pytest.fixture
def writer(mariadb_server: MySQLInstance, mysql_database: str) -> Iterator[Writer]:
    thread = Writer(mariadb_server, mysql_database)
    yield thread
    thread.halt.set()
    if thread.is_alive():
        thread.join(10)


def _idle(config: Path) -> bool:
    done = cli("snapshot", str(config), "--source", "cdc", "--status")
    assert done.returncode == 0, done.stderr
    return "no snapshot queued or under way" in done.stdout


def _reads(records: list[dict[str, Any]]) -> list[int]:
    return [r["key"]["id"] for r in records if r["value"] is not None and r["value"]["op"] == "r"]


def test_an_incremental_initial_snapshot_with_two_workers_under_a_writer(
    mariadb_server: MySQLInstance,
    mysql_database: str,
    tmp_path: Path,
    kafka_bootstrap: str,
    registry_url: str,
    writer: Writer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    db = mysql_database
    mariadb_server.execute(f"CREATE TABLE `{db}`.items (id INT PRIMARY KEY, version INT NOT NULL, note VARCHAR(20))")
    # seq_1_to_N: MariaDB's sequence engine (a recursive CTE stops at 1000 rows there)
    mariadb_server.execute(
        f"INSERT INTO `{db}`.items SELECT seq, 1, CONCAT('n', seq) FROM seq_1_to_{ROWS}", database=db
    )
    extra = "    snapshot_chunk: 40\n    snapshot_mode: incremental\n    snapshot_workers: 2\n"
    config = app_config(
        tmp_path, kafka_bootstrap, registry_url, source_yaml(mariadb_server, f"[{db}.items]", db, extra)
    )
    port = free_port()
    with_http(config, port)
    topic = f"{db}.{db}.items"
    caplog.set_level(logging.INFO, logger="liberator")
    writer.start()
    with DaemonThread(config):
        wait_for(lambda: writer.commits > 50, what="the writer to start")
        wait_for(lambda: _reads(read_topic(kafka_bootstrap, registry_url, topic)), what="the first chunk")
        source = wait_for(lambda: ((health(port) or {}).get("sources") or {}).get("cdc"), what="/health")
        assert source["phase"] == "streaming", source  # the stream runs from the start: no snapshot phase
        wait_for(lambda: _idle(config), timeout=120, what="the incremental snapshot to finish")
        writer.halt.set()
        writer.join(10)
        assert writer.error is None, writer.error
        table = {int(k): int(v) for k, v in mariadb_server.execute(f"SELECT id, version FROM `{db}`.items")}

        def folded() -> dict[int, int]:
            rows = fold_by_key(read_topic(kafka_bootstrap, registry_url, topic))
            return {k: v["version"] for k, v in rows.items()}

        wait_for(lambda: folded() == table, timeout=60, what="the topic folded by key to equal the table")
    records = [r for r in read_topic(kafka_bootstrap, registry_url, topic) if r["value"] is not None]
    seen: dict[int, list[int]] = defaultdict(list)
    for record in records:
        after = record["value"]["after"]
        seen[record["key"]["id"]].append(-1 if after is None else after["version"])
    for key, versions in seen.items():
        live = [v for v in versions if v != -1]  # a delete resets a key (this writer never inserts)
        assert live == sorted(live), f"key {key}: an older version after a newer one: {versions}"
    reads = _reads(records)
    assert reads == sorted(set(reads)) and len(reads) > ROWS // 2, "each key read once, the chunks in key order"
    assert all(r["value"]["source"]["snapshot"] for r in records if r["value"]["op"] == "r")
    first_read = next(i for i, r in enumerate(records) if r["value"]["op"] == "r")
    last_read = max(i for i, r in enumerate(records) if r["value"]["op"] == "r")
    assert any(r["value"]["op"] != "r" for r in records[first_read:last_read]), "changes streamed meanwhile"
    assert "in chunks while streaming" in caplog.text
    assert "snapshot of 1 tables" not in caplog.text  # the consistent read did not run


def test_a_consistent_snapshot_cut_short_is_finished_in_chunks_after_switching_mode(
    mariadb_server: MySQLInstance, mysql_database: str, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    """A position a consistent snapshot stored mid-way: table a read; b read by two runs, the first from its start
    at C0, the second after key 10 at C1, up to key 20. Switched to incremental, the stream from C0 still skips
    what the second run's read holds (an update of key 15 between C0 and C1), keeps the rest (key 5), and b is
    read on after key 20 in chunks; a is not read again."""
    db = mysql_database
    for name in ("a", "b"):
        mariadb_server.execute(f"CREATE TABLE `{db}`.{name} (id INT PRIMARY KEY, version INT NOT NULL)")
        mariadb_server.execute(f"INSERT INTO `{db}`.{name} SELECT i, 1 FROM ({numbers(50)}) AS s")
    yaml = source_yaml(mariadb_server, f"[{db}.a, {db}.b]", db, "    snapshot_chunk: 20\n")
    config = app_config(tmp_path, kafka_bootstrap, registry_url, yaml)
    with_http(config, free_port())
    topics = {name: f"{db}.{db}.{name}" for name in ("a", "b")}
    with DaemonThread(config) as daemon:
        for topic in topics.values():
            wait_for(lambda t=topic: len(read_topic(kafka_bootstrap, registry_url, t)) == 50, what="the snapshot")
        wait_for(lambda: daemon.positions_settled("cdc"), what="the position stored")
    position = json.loads(cli("offsets", "show", str(config)).stdout)["cdc"]["position"]
    c0 = [position["file"], position["pos"]]
    mariadb_server.execute(f"UPDATE `{db}`.b SET version = 2 WHERE id IN (5, 15)")
    c1 = [str(v) for v in mariadb_server.execute("SHOW MASTER STATUS")[0][:2]]
    mariadb_server.execute(f"UPDATE `{db}`.b SET version = 3 WHERE id = 30")
    runs = [{"table": 0, "after": None, "at": c0}, {"table": 1, "after": [10], "at": [c1[0], int(c1[1])]}]
    tables = [f"{db}.a", f"{db}.b"]
    position["snapshot"] = {"tables": tables, "runs": runs, "table": 1, "after": [20], "done": False}
    done = cli("offsets", "set", str(config), "--source", "cdc", json.dumps(position))
    assert done.returncode == 0, done.stderr
    config.write_text(
        config.read_text().replace("snapshot_chunk: 20\n", "snapshot_chunk: 20\n    snapshot_mode: incremental\n")
    )
    with DaemonThread(config):
        wait_for(lambda: len(_reads(read_topic(kafka_bootstrap, registry_url, topics["b"]))) == 80, what="b read on")
        wait_for(lambda: _idle(config), what="the backfill to finish")
        mariadb_server.execute(f"UPDATE `{db}`.a SET version = 2 WHERE id = 1")
        wait_for(lambda: len(read_topic(kafka_bootstrap, registry_url, topics["a"])) == 51, what="a streamed")
    again = read_topic(kafka_bootstrap, registry_url, topics["b"])[50:]
    assert _reads(again) == list(range(21, 51)), "b read on after the last key stored, in key order"
    assert all(r["value"]["source"]["snapshot"] for r in again if r["value"]["op"] == "r")
    updates = {r["key"]["id"]: r["value"]["after"]["version"] for r in again if r["value"]["op"] == "u"}
    assert updates == {5: 2, 30: 3}, "key 15's update is in the second run's read: not streamed again"
    assert read_topic(kafka_bootstrap, registry_url, topics["a"])[50]["value"]["op"] == "u"
