"""Blocking snapshots on postgres_wal: the stream pauses at an exported snapshot's point, the table is read in
that snapshot, the stream resumes. Under writers updating and deleting the same keys, the topic folded by key
equals the table and no key's older version follows a newer one; later changes arrive; a signal row of type
blocking asks for one too, several tables read in one snapshot."""

from __future__ import annotations

import json
import random
import threading
from collections import defaultdict
from pathlib import Path
from typing import Any

import psycopg

from liberator.embedded.ports import free_port
from tests.integration.postgres_wal_support import WalDb
from tests.support import (
    DaemonThread,
    app_config,
    fold_by_key,
    read_topic,
    snapshot_cli,
    snapshots_idle,
    wait_for,
    with_http,
)

ROWS = 2000


def _setup(pg_url: str, tmp_path: Path, kafka_bootstrap: str, registry_url: str, extra: str = "") -> tuple[WalDb, Path]:
    db = WalDb(pg_url)
    for table in ("items", "other"):
        db.run(f"CREATE TABLE {table} (id int PRIMARY KEY, version int NOT NULL, note text)")
        db.run(f"INSERT INTO {table} SELECT i, 1, 'n' || i FROM generate_series(1, {ROWS}) AS i")
    wal = (
        f"  - name: wal\n    type: postgres_wal\n    url: {db.url}\n    tables: [items, other]\n"
        f'    slot: {db.tag}\n    publication: {db.tag}\n    topic: "{db.tag}.{{table}}"\n'
        f"    snapshot_chunk: 50\n    envelope: change\n{extra}"
    )
    config = app_config(tmp_path, kafka_bootstrap, registry_url, wal)
    with_http(config, free_port())
    return db, config


def _snapshot(config: Path, *args: str) -> str:
    return snapshot_cli(config, "wal", *args)


def _idle(config: Path) -> bool:
    return snapshots_idle(config, "wal")


class Writers:
    """Threads updating and deleting random keys of `items` as fast as they can, each on its own connection."""

    def __init__(self, url: str, count: int = 2) -> None:
        self.url = url
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._write, args=(seed,), daemon=True) for seed in range(count)]

    def _write(self, seed: int) -> None:
        rng = random.Random(seed)
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self.stop.is_set():
                key = rng.randint(1, ROWS)
                if rng.random() < 0.05:
                    conn.execute("DELETE FROM items WHERE id = %s", (key,))
                else:
                    conn.execute("UPDATE items SET version = version + 1 WHERE id = %s", (key,))

    def __enter__(self) -> Writers:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()


def _versions_in_order(records: list[dict[str, Any]]) -> dict[int, list[tuple[str, int]]]:
    """Per key, (op, version) in topic order; a delete as version -1."""
    seen: dict[int, list[tuple[str, int]]] = defaultdict(list)
    for record in records:
        value = record["value"]
        if value is not None:
            after = value.get("after")
            seen[record["key"]["id"]].append((value["op"], -1 if after is None else after["version"]))
    return seen


def _folded(kafka_bootstrap: str, registry_url: str, topic: str) -> dict[int, int]:
    return {k: v["version"] for k, v in fold_by_key(read_topic(kafka_bootstrap, registry_url, topic)).items()}


def test_a_blocking_snapshot_under_writers_keeps_every_key_in_order_and_the_stream_resumes(
    pg_url: str, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    db, config = _setup(pg_url, tmp_path, kafka_bootstrap, registry_url)
    topic = f"{db.tag}.items"
    with DaemonThread(config):
        wait_for(lambda: len(read_topic(kafka_bootstrap, registry_url, topic)) >= ROWS, what="the initial snapshot")
        with Writers(db.url):
            for _ in range(3):  # each pause point lands amid the writers' commits
                assert "queued" in _snapshot(config, "--table", "items", "--blocking")
                wait_for(lambda: _idle(config), timeout=120, what="the blocking snapshot to finish")
        db.run("INSERT INTO items VALUES (%s, 1, 'after')", (ROWS + 1,))  # the stream goes on after the pauses
        table = {row[0]: row[1] for row in db.rows("SELECT id, version FROM items")}
        wait_for(
            lambda: _folded(kafka_bootstrap, registry_url, topic) == table,
            timeout=60,
            what="the topic folded by key to equal the table",
        )
    records = read_topic(kafka_bootstrap, registry_url, topic)
    reads = [r for r in records[ROWS:] if r["value"] is not None and r["value"]["op"] == "r"]
    assert len(reads) >= 3 * (len(table) - 1), "three whole reads of the table (which only shrank meanwhile)"
    assert all(r["value"]["source"]["snapshot"] for r in reads)
    assert [r["key"]["id"] for r in records[-1:]] == [ROWS + 1]
    for key, versions in _versions_in_order(records).items():
        live = [v for _op, v in versions if v != -1]
        # A delete resets a key (the writers never insert it again); a read repeats the version streamed last.
        assert live == sorted(live), f"key {key}: an older version after a newer one: {versions}"


def test_a_blocking_signal_reads_its_tables_in_one_snapshot_and_where_is_refused(
    pg_url: str, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    db, config = _setup(pg_url, tmp_path, kafka_bootstrap, registry_url, "    signal_table: liberator_signal\n")
    db.run("CREATE TABLE liberator_signal (id varchar(64) PRIMARY KEY, type varchar(32) NOT NULL, data text)")
    items, other = f"{db.tag}.items", f"{db.tag}.other"
    with DaemonThread(config):
        wait_for(lambda: len(read_topic(kafka_bootstrap, registry_url, other)) >= ROWS, what="the initial snapshot")
        refused = _snapshot(config, "--table", "items", "--blocking", "--where", "id < 5").split()[1]
        wait_for(lambda: refused in _snapshot(config, "--status"), what="the refusal")
        assert "a blocking snapshot reads whole tables" in _snapshot(config, "--status")
        data = {"data-collections": ["public.items", "public.other"], "type": "blocking"}
        db.run("INSERT INTO liberator_signal VALUES ('block-1', 'execute-snapshot', %s)", (json.dumps(data),))
        for topic in (items, other):
            wait_for(lambda t=topic: len(read_topic(kafka_bootstrap, registry_url, t)) == 2 * ROWS, what="reads")
    for topic in (items, other):
        again = read_topic(kafka_bootstrap, registry_url, topic)[ROWS:]
        assert [r["key"]["id"] for r in again] == list(range(1, ROWS + 1))
        assert {r["value"]["op"] for r in again} == {"r"}


def test_a_blocking_request_waiting_for_an_open_transaction_can_be_cancelled(
    pg_url: str, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    db, config = _setup(pg_url, tmp_path, kafka_bootstrap, registry_url)
    topic = f"{db.tag}.items"
    with DaemonThread(config), psycopg.connect(db.url) as holder:
        wait_for(lambda: len(read_topic(kafka_bootstrap, registry_url, topic)) >= ROWS, what="the initial snapshot")
        # A transaction with an xid, left open: creating the temporary slot waits for it to end.
        holder.execute("UPDATE other SET version = 2 WHERE id = 1")
        request = _snapshot(config, "--table", "items", "--blocking").split()[1]
        wait_for(lambda: f"{request}  running  public.items" in _snapshot(config, "--status"), what="it is taken")
        assert "(blocking)" in _snapshot(config, "--status")
        db.run("UPDATE items SET version = 5 WHERE id = 7")  # after the slot was asked for: waits for its point
        assert "cancelled" in _snapshot(config, "--cancel", request)
        wait_for(lambda: _idle(config), what="the request dropped while its slot waits")
        wait_for(
            lambda: any(r["key"]["id"] == 7 for r in read_topic(kafka_bootstrap, registry_url, topic)[ROWS:]),
            what="the stream going on after the cancel",
        )
        holder.rollback()
        assert "queued" in _snapshot(config, "--table", "items", "--blocking")
        wait_for(lambda: len(read_topic(kafka_bootstrap, registry_url, topic)) == 2 * ROWS + 1, what="one read")
    records = read_topic(kafka_bootstrap, registry_url, topic)
    assert [r["value"]["op"] for r in records[ROWS:]] == ["u"] + ["r"] * ROWS, "nothing read for the cancelled one"
    assert not db.rows("SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE %s", (f"{db.tag}_block%",))
