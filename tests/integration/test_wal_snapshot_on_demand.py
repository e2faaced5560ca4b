"""Incremental (watermark) snapshots on demand on postgres_wal: a table re-read in chunks while a writer
updates and deletes the same keys; the topic folded by key equals the table, and no key's older version
follows a newer one. Also --where, a refusal, and a backfill resumed from its stored chunk after a restart."""

from __future__ import annotations

import json
import random
import threading
from collections import defaultdict
from pathlib import Path
from typing import Any

from liberator.embedded.ports import free_port
from tests.integration.postgres_wal_support import WalDb
from tests.support import (
    DaemonThread,
    app_config,
    cli,
    fold_by_key,
    health,
    metrics_text,
    read_topic,
    snapshot_cli,
    snapshots_idle,
    wait_for,
    with_http,
)

ROWS = 300


def _setup(pg_url: str, tmp_path: Path, kafka_bootstrap: str, registry_url: str) -> tuple[WalDb, Path, str]:
    db = WalDb(pg_url)
    db.run("CREATE TABLE items (id int PRIMARY KEY, version int NOT NULL, note text)")
    db.run(f"INSERT INTO items SELECT i, 1, 'n' || i FROM generate_series(1, {ROWS}) AS i")
    db.run("ANALYZE items")  # the statistics the progress estimate comes from
    wal = (
        f"  - name: wal\n    type: postgres_wal\n    url: {db.url}\n    tables: [items]\n"
        f'    slot: {db.tag}\n    publication: {db.tag}\n    topic: "{db.tag}.{{table}}"\n'
        "    snapshot_chunk: 25\n    envelope: change\n"
    )
    config = app_config(tmp_path, kafka_bootstrap, registry_url, wal)
    with_http(config, free_port())
    return db, config, f"{db.tag}.items"


def _port(config: Path) -> int:
    return int(config.read_text().split("listen: 127.0.0.1:")[1].split()[0])


def _progress(config: Path) -> dict[str, Any] | None:
    """The items table's snapshot progress in /health, or None before there is any."""
    document = health(_port(config))
    source = (document or {}).get("sources", {}).get("wal", {})
    progress: dict[str, Any] | None = source.get("snapshot", {}).get("public.items")
    return progress


def _snapshot(config: Path, *args: str) -> str:
    return snapshot_cli(config, "wal", *args)


def _idle(config: Path) -> bool:
    return snapshots_idle(config, "wal")


def _progress_done(config: Path, request_id: str) -> bool:
    progress = _progress(config) or {}
    return progress.get("run") == request_id and progress.get("done") is True


def _versions_in_order(records: list[dict[str, Any]]) -> dict[int, list[int]]:
    """Per key, the versions the topic carries, in topic order (deletes as -1)."""
    seen: dict[int, list[int]] = defaultdict(list)
    for record in records:
        value = record["value"]
        if value is None:
            continue
        after = value.get("after")
        seen[record["key"]["id"]].append(-1 if after is None else after["version"])
    return seen


def test_an_incremental_snapshot_under_a_writer_keeps_every_key_in_order(
    pg_url: str, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    db, config, topic = _setup(pg_url, tmp_path, kafka_bootstrap, registry_url)
    stop = threading.Event()

    def writer() -> None:
        # At most 200 writes/s, few of them deletes: enough commits inside every window, yet (on a slow day too)
        # most keys stay alive and untouched by some window, so the snapshot has reads to publish.
        rng = random.Random(7)
        while not stop.wait(0.005):
            key = rng.randint(1, ROWS)
            if rng.random() < 0.03:
                db.run("DELETE FROM items WHERE id = %s", (key,))
            else:
                db.run("UPDATE items SET version = version + 1 WHERE id = %s", (key,))

    with DaemonThread(config):
        wait_for(lambda: len(read_topic(kafka_bootstrap, registry_url, topic)) >= ROWS, what="the initial snapshot")
        thread = threading.Thread(target=writer, daemon=True)
        thread.start()
        try:
            # Each chunk's read sleeps a little per row (a condition true for every row), so the writer's commits
            # land after the read's snapshot and before the high watermark: the rows the window must drop.
            queued = _snapshot(config, "--table", "items", "--where", "pg_sleep(0.004 + 0 * id)::text = ''")
            assert "queued" in queued
            request_id = queued.split()[1]
            wait_for(lambda: _idle(config), timeout=120, what="the snapshot to finish")
            # Progress shows for the backfill as for an initial snapshot: its rows, the statistics' estimate, done.
            wait_for(lambda: _progress_done(config, request_id), what="the backfill's progress to say done")
            assert (_progress(config) or {})["estimate"] == ROWS
            metrics = metrics_text(_port(config))
            assert 'liberator_snapshot_done{app="test",source="wal",type="postgres_wal",table="public.items"} 1' in (
                metrics
            ), metrics
        finally:
            stop.set()
            thread.join()
        table = {row[0]: row[1] for row in db.rows("SELECT id, version FROM items")}

        def folded() -> dict[int, int]:
            rows = fold_by_key(read_topic(kafka_bootstrap, registry_url, topic))
            return {k: v["version"] for k, v in rows.items()}

        wait_for(lambda: folded() == table, timeout=60, what="the topic folded by key to equal the table")
        final = _progress(config) or {}
    records = read_topic(kafka_bootstrap, registry_url, topic)
    reads = [r for r in records[ROWS:] if r["value"] is not None and r["value"]["op"] == "r"]
    assert reads, "the snapshot published reads"
    assert final["rows"] == len(reads), final  # the rows the backfill published, not those the windows dropped
    assert all(r["value"]["source"]["snapshot"] for r in reads)
    for key, versions in _versions_in_order(records).items():
        live = [v for v in versions if v != -1]
        # A delete resets a key (its id may come back only by insert, which this writer never does).
        assert live == sorted(live), f"key {key}: an older version after a newer one: {versions}"


def test_where_refusal_and_resume_from_the_stored_chunk(
    pg_url: str, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    _db, config, topic = _setup(pg_url, tmp_path, kafka_bootstrap, registry_url)
    with DaemonThread(config) as daemon:
        wait_for(lambda: len(read_topic(kafka_bootstrap, registry_url, topic)) >= ROWS, what="the initial snapshot")
        _snapshot(config, "--table", "items", "--where", "id % 100 = 0")
        wait_for(lambda: len(read_topic(kafka_bootstrap, registry_url, topic)) == ROWS + 3, what="rows 100, 200, 300")
        assert [r["key"]["id"] for r in read_topic(kafka_bootstrap, registry_url, topic)[ROWS:]] == [100, 200, 300]
        refused = _snapshot(config, "--table", "nope").split()[1]
        wait_for(lambda: refused in _snapshot(config, "--status"), what="the refusal")
        assert "no captured table 'nope'" in _snapshot(config, "--status")
        wait_for(lambda: daemon.positions_settled("wal"), what="the position stored")
    # As if the daemon died after publishing the chunks up to id 250 and storing that position.
    shown = json.loads(cli("offsets", "show", str(config)).stdout)
    position = shown["wal"]["position"]
    position["backfills"] = [{"id": "resume1", "stream": "public.items", "where": None, "after": ["250"], "rows": 250}]
    done = cli("offsets", "set", str(config), "--source", "wal", json.dumps(position))
    assert done.returncode == 0, done.stderr
    with DaemonThread(config):
        wait_for(lambda: len(read_topic(kafka_bootstrap, registry_url, topic)) == ROWS + 3 + 50, what="the rest")
        wait_for(lambda: _idle(config), what="the backfill to finish")
    tail = read_topic(kafka_bootstrap, registry_url, topic)[ROWS + 3 :]
    assert [r["key"]["id"] for r in tail] == list(range(251, 301))


def test_a_row_inserted_into_the_signal_table_asks_for_a_snapshot(
    pg_url: str, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    db, config, topic = _setup(pg_url, tmp_path, kafka_bootstrap, registry_url)
    db.run("CREATE TABLE liberator_signal (id varchar(64) PRIMARY KEY, type varchar(32) NOT NULL, data text)")
    config.write_text(
        config.read_text().replace(
            "    snapshot_chunk: 25\n", "    snapshot_chunk: 25\n    signal_table: liberator_signal\n"
        )
    )
    with DaemonThread(config):
        wait_for(lambda: len(read_topic(kafka_bootstrap, registry_url, topic)) >= ROWS, what="the initial snapshot")
        data = {
            "data-collections": ["public.items"],
            "type": "incremental",
            "additional-conditions": [{"data-collection": "public.items", "filter": "id <= 30"}],
        }
        db.run("INSERT INTO liberator_signal VALUES ('ad-hoc-1', 'execute-snapshot', %s)", (json.dumps(data),))
        db.run("INSERT INTO liberator_signal VALUES ('ad-hoc-2', 'pause-snapshot', '{}')")  # logged, ignored
        wait_for(lambda: len(read_topic(kafka_bootstrap, registry_url, topic)) == ROWS + 30, what="30 rows again")
        wait_for(lambda: _idle(config), what="the snapshot to finish")
    again = read_topic(kafka_bootstrap, registry_url, topic)[ROWS:]
    assert [r["key"]["id"] for r in again] == list(range(1, 31))
    assert {r["value"]["op"] for r in again} == {"r"}
