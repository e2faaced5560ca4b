"""Incremental (read-only watermark) snapshots on demand on mysql_binlog: a table re-read in chunks while a
writer updates and deletes the same keys (the topic folded by key equals the table, no key's older version
follows a newer one), asked by the CLI and by a signal-table insert; --status/--cancel; a quiet database still
finishes; a table added to the config is backfilled at start."""

from __future__ import annotations

import json
import random
import threading
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from liberator.capture import ChangeBatch
from liberator.connectors.mysql_binlog import MySQLBinlogSource
from liberator.connectors.mysql_binlog.position import BinlogPosition
from liberator.embedded.ports import free_port
from liberator.events import Checkpoint
from liberator.snapshots import SnapshotRequest
from liberator_testbed import MySQLInstance
from tests.integration.test_mysql_binlog_helpers import make_source, numbers, source_yaml
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

ROWS = 300
SIGNAL_DDL = "CREATE TABLE `{db}`.liberator_signal (id VARCHAR(64) PRIMARY KEY, type VARCHAR(32) NOT NULL, data TEXT)"


def _setup(
    server: MySQLInstance,
    db: str,
    tmp_path: Path,
    kafka_bootstrap: str,
    registry_url: str,
    extra: str = "",
    envelope: str = "change",
) -> tuple[Path, str]:
    server.execute(f"CREATE TABLE `{db}`.items (id INT PRIMARY KEY, version INT NOT NULL, note VARCHAR(20))")
    server.execute(f"INSERT INTO `{db}`.items SELECT i, 1, CONCAT('n', i) FROM ({numbers(ROWS)}) AS s")
    yaml = source_yaml(server, f"[{db}.items]", db, f"    snapshot_chunk: 25\n    envelope: {envelope}\n{extra}")
    config = app_config(tmp_path, kafka_bootstrap, registry_url, yaml)
    with_http(config, free_port())
    return config, f"{db}.{db}.items"


def _snapshot(config: Path, *args: str) -> str:
    return snapshot_cli(config, "cdc", *args)


def _idle(config: Path) -> bool:
    return snapshots_idle(config, "cdc")


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


def _under_a_writer(
    server: MySQLInstance, db: str, config: Path, topic: str, kafka_bootstrap: str, registry_url: str, ask: Any
) -> None:
    """Ask for a snapshot (`ask()`) while a writer updates and deletes random keys; then check the topic."""
    stop = threading.Event()

    def writer() -> None:
        rng = random.Random(7)
        while not stop.is_set():
            key = rng.randint(1, ROWS)
            if rng.random() < 0.1:
                server.execute(f"DELETE FROM `{db}`.items WHERE id = %s", (key,))
            else:
                server.execute(f"UPDATE `{db}`.items SET version = version + 1 WHERE id = %s", (key,))

    with DaemonThread(config):
        wait_for(lambda: len(read_topic(kafka_bootstrap, registry_url, topic)) >= ROWS, what="the initial snapshot")
        thread = threading.Thread(target=writer, daemon=True)
        thread.start()
        try:
            ask()
            wait_for(lambda: len(read_topic(kafka_bootstrap, registry_url, topic)) > ROWS + 50, what="reads")
            wait_for(lambda: _idle(config), timeout=120, what="the snapshot to finish")
        finally:
            stop.set()
            thread.join()
        table = {int(row[0]): int(row[1]) for row in server.execute(f"SELECT id, version FROM `{db}`.items")}

        def folded() -> dict[int, int]:
            rows = fold_by_key(read_topic(kafka_bootstrap, registry_url, topic))
            return {k: v["version"] for k, v in rows.items()}

        wait_for(lambda: folded() == table, timeout=60, what="the topic folded by key to equal the table")
    records = read_topic(kafka_bootstrap, registry_url, topic)
    reads = [r for r in records[ROWS:] if r["value"] is not None and r["value"]["op"] == "r"]
    assert len(reads) > 50, "the snapshot published reads"
    assert all(r["value"]["source"]["snapshot"] for r in reads)
    for key, versions in _versions_in_order(records).items():
        live = [v for v in versions if v != -1]
        # A delete resets a key (its id may come back only by insert, which this writer never does).
        assert live == sorted(live), f"key {key}: an older version after a newer one: {versions}"


# Each chunk's read sleeps a little per row (a condition true for every row), so the writer's commits land
# after the read's point and before the high watermark: the rows the window must drop.
SLOW = "SLEEP(0.004) = 0"


def test_an_incremental_snapshot_by_cli_under_a_writer_keeps_every_key_in_order(
    mariadb_server: MySQLInstance, mysql_database: str, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    db = mysql_database
    config, topic = _setup(mariadb_server, db, tmp_path, kafka_bootstrap, registry_url)

    def ask() -> None:
        assert "queued" in _snapshot(config, "--table", f"{db}.items", "--where", SLOW)

    _under_a_writer(mariadb_server, db, config, topic, kafka_bootstrap, registry_url, ask)


def test_an_incremental_snapshot_by_signal_under_a_writer_keeps_every_key_in_order(
    mariadb_server: MySQLInstance, mysql_database: str, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    db = mysql_database
    mariadb_server.execute(SIGNAL_DDL.format(db=db))
    extra = f"    signal_table: {db}.liberator_signal\n"
    config, topic = _setup(mariadb_server, db, tmp_path, kafka_bootstrap, registry_url, extra)

    def ask() -> None:
        data = {
            "data-collections": [f"{db}.items"],
            "type": "incremental",
            "additional-conditions": [{"data-collection": f"{db}.items", "filter": SLOW}],
        }
        signal = f"INSERT INTO `{db}`.liberator_signal VALUES (%s, %s, %s)"
        mariadb_server.execute(signal, ("ad-hoc-0", "pause-snapshot", "{}"))  # logged, ignored
        mariadb_server.execute(signal, ("ad-hoc-1", "execute-snapshot", json.dumps(data)))

    _under_a_writer(mariadb_server, db, config, topic, kafka_bootstrap, registry_url, ask)


def test_a_quiet_database_finishes_its_snapshot_and_where_selects_rows(
    mariadb_server: MySQLInstance, mysql_database: str, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    db = mysql_database
    config, topic = _setup(mariadb_server, db, tmp_path, kafka_bootstrap, registry_url, envelope="debezium")
    with DaemonThread(config):
        wait_for(lambda: len(read_topic(kafka_bootstrap, registry_url, topic)) >= ROWS, what="the initial snapshot")
        # Nothing writes to the database from here on: each window closes without a write after it.
        _snapshot(config, "--table", f"{db}.items")
        wait_for(lambda: len(read_topic(kafka_bootstrap, registry_url, topic)) == 2 * ROWS, what="every row again")
        wait_for(lambda: _idle(config), what="the snapshot to finish")
        _snapshot(config, "--table", f"{db}.items", "--where", "id % 100 = 0")
        wait_for(lambda: len(read_topic(kafka_bootstrap, registry_url, topic)) == 2 * ROWS + 3, what="3 rows")
        refused = _snapshot(config, "--table", "nope").split()[1]
        wait_for(lambda: refused in _snapshot(config, "--status"), what="the refusal")
        assert "no captured table 'nope'" in _snapshot(config, "--status")
    records = read_topic(kafka_bootstrap, registry_url, topic)
    assert [r["key"]["id"] for r in records[ROWS : 2 * ROWS]] == list(range(1, ROWS + 1))
    assert [r["key"]["id"] for r in records[2 * ROWS :]] == [100, 200, 300]
    assert {r["value"]["op"] for r in records[ROWS:]} == {"r"}
    assert {r["value"]["source"]["snapshot"] for r in records[ROWS:]} == {"incremental"}  # envelope: debezium
    assert {r["value"]["source"]["snapshot"] for r in records[:ROWS]} <= {"true", "last"}


def test_status_shows_progress_and_cancel_stops_the_snapshot(
    mariadb_server: MySQLInstance, mysql_database: str, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    db = mysql_database
    config, topic = _setup(mariadb_server, db, tmp_path, kafka_bootstrap, registry_url)
    with DaemonThread(config):
        wait_for(lambda: len(read_topic(kafka_bootstrap, registry_url, topic)) >= ROWS, what="the initial snapshot")
        answer = _snapshot(config, "--table", f"{db}.items", "--where", "SLEEP(0.1) = 0")  # 2.5 s a chunk, 30 s in all
        request_id = answer.split()[1]
        wait_for(lambda: len(read_topic(kafka_bootstrap, registry_url, topic)) > ROWS, what="a first chunk")
        status = _snapshot(config, "--status")
        assert request_id in status and f"{db}.items" in status, status
        assert "cancelled" in _snapshot(config, "--cancel", request_id)
        wait_for(lambda: _idle(config), what="the snapshot to stop")
        count = len(read_topic(kafka_bootstrap, registry_url, topic))
        assert count < 2 * ROWS, "cancelled before the end"
        mariadb_server.execute(f"UPDATE `{db}`.items SET version = 2 WHERE id = 1")  # the stream goes on
        wait_for(lambda: len(read_topic(kafka_bootstrap, registry_url, topic)) == count + 1, what="the update")
        assert read_topic(kafka_bootstrap, registry_url, topic)[-1]["value"]["op"] == "u", "and no more reads"


@pytest.mark.parametrize("workers", [1, 2])
def test_a_table_added_to_the_config_is_backfilled_at_start(
    mariadb_server: MySQLInstance,
    mysql_database: str,
    tmp_path: Path,
    kafka_bootstrap: str,
    registry_url: str,
    workers: int,
) -> None:
    db = mysql_database
    server = mariadb_server
    server.execute(f"CREATE TABLE `{db}`.first (id INT PRIMARY KEY, v INT NOT NULL)")
    server.execute(f"CREATE TABLE `{db}`.second (id INT PRIMARY KEY, v INT NOT NULL)")
    server.execute(f"INSERT INTO `{db}`.first SELECT i, 1 FROM ({numbers(5)}) AS s")
    server.execute(f"INSERT INTO `{db}`.second SELECT i, 1 FROM ({numbers(10)}) AS s")
    first, second = f"{db}.{db}.first", f"{db}.{db}.second"
    extra = f"    snapshot_chunk: 4\n    snapshot_workers: {workers}\n    envelope: change\n"
    yaml = source_yaml(server, f"[{db}.first]", db, extra)
    config = app_config(tmp_path, kafka_bootstrap, registry_url, yaml)

    with DaemonThread(config) as daemon:
        wait_for(lambda: len(read_topic(kafka_bootstrap, registry_url, first)) == 5, what="first's snapshot")
        wait_for(lambda: daemon.positions_settled("cdc"), what="the position stored")
    server.execute(f"UPDATE `{db}`.second SET v = 2 WHERE id = 3")  # while stopped: the backfill reads it as it is

    config.write_text(config.read_text().replace(f"tables: [{db}.first]", f"tables: [{db}.first, {db}.second]"))
    with DaemonThread(config):
        wait_for(lambda: len(read_topic(kafka_bootstrap, registry_url, second)) >= 10, what="second's rows")
        server.execute(f"UPDATE `{db}`.second SET v = 3 WHERE id = 7")
        server.execute(f"INSERT INTO `{db}`.first VALUES (6, 1)")
        wait_for(
            lambda: (
                {k: v["v"] for k, v in fold_by_key(read_topic(kafka_bootstrap, registry_url, second)).items()}
                == {i: {3: 2, 7: 3}.get(i, 1) for i in range(1, 11)}
            ),
            what="second folded by key to equal the table",
        )
        wait_for(lambda: len(read_topic(kafka_bootstrap, registry_url, first)) == 6, what="first's new row")
    reads = [r for r in read_topic(kafka_bootstrap, registry_url, second) if r["value"]["op"] == "r"]
    assert sorted(r["key"]["id"] for r in reads) == list(range(1, 11)), "each existing row of second, once"
    assert [r["value"]["op"] for r in read_topic(kafka_bootstrap, registry_url, first)] == ["r"] * 5 + ["c"]


def test_every_position_stored_while_a_backfill_runs_carries_it(
    mariadb_server: MySQLInstance, mysql_database: str
) -> None:
    """A position noted before a request was taken (after another table's transaction, waiting for the next
    heartbeat) must not be stored after the request: a crash would then forget the request."""
    db = mysql_database
    server = mariadb_server
    server.execute(f"CREATE TABLE `{db}`.items (id INT PRIMARY KEY, v INT NOT NULL)")
    server.execute(f"CREATE TABLE `{db}`.other (id INT PRIMARY KEY)")
    server.execute(f"INSERT INTO `{db}`.items SELECT i, 1 FROM ({numbers(60)}) AS s")
    source, stop = make_source(server, [f"{db}.items"], snapshot_chunk=10, heartbeat=3.0)
    positions: list[BinlogPosition] = []

    def read() -> None:
        for item in source.read(None):
            position = getattr(item, "position", None)
            if isinstance(position, BinlogPosition):
                positions.append(position)
            if stop.is_set():
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        wait_for(lambda: positions and not positions[-1].snapshotting, what="the initial snapshot")
        server.execute(f"INSERT INTO `{db}`.items VALUES (61, 1)")  # published: the heartbeat clock restarts
        server.execute(f"INSERT INTO `{db}`.other VALUES (1)")  # not captured: its position waits (`pending`)
        # Seven chunks of 0.5 s: the backfill outlasts the heartbeat that stores the waiting position.
        source.context.snapshots.submit(SnapshotRequest((f"{db}.items",), "SLEEP(0.05) = 0"))
        wait_for(lambda: any(p.backfills for p in positions), what="the request taken")
        wait_for(lambda: not positions[-1].backfills, timeout=60, what="the backfill to finish")
    finally:
        stop.set()
        reader.join(30)
        source.close()
    carried = [bool(p.backfills) for p in positions]
    first = carried.index(True)
    last = len(carried) - 1 - carried[::-1].index(True)
    assert all(carried[first : last + 1]), f"a position without the running backfill was stored: {carried}"


def test_a_missing_signal_table_is_named_with_the_ddl_to_create_it(
    mariadb_server: MySQLInstance, mysql_database: str
) -> None:
    db = mysql_database
    mariadb_server.execute(f"CREATE TABLE `{db}`.items (id INT PRIMARY KEY)")
    source, _stop = make_source(mariadb_server, [f"{db}.items"], signal_table=f"{db}.liberator_signal")
    problems = source.check()
    assert any(f"the signal table {db}.liberator_signal does not exist" in p and "CREATE TABLE" in p for p in problems)


def test_a_request_queued_before_reading_again_is_stored_before_anything_is_streamed(
    mariadb_server: MySQLInstance, mysql_database: str
) -> None:
    """What a table moved to a new topic relies on (on_incompatible: new_topic): its re-read request, queued
    while the source was not reading, is in a durable checkpoint before the first change read again, and the
    table is not also backfilled as a new table (its topic holding no record)."""
    db = mysql_database
    mariadb_server.execute(f"CREATE TABLE `{db}`.items (id INT PRIMARY KEY, v INT NOT NULL)")
    first, stop = make_source(mariadb_server, [f"{db}.items"], snapshot="never")
    try:
        start = next(item for item in first.read(None) if isinstance(item, Checkpoint))
    finally:
        stop.set()
        first.close()
    assert isinstance(start.position, BinlogPosition) and not start.position.backfills
    mariadb_server.execute(f"INSERT INTO `{db}`.items VALUES (1, 1)")  # streamed after the stored position
    made, stop = make_source(mariadb_server, [f"{db}.items"], server_id=first.cfg.server_id)
    # Its topic looks empty, as a new table's would: the queued request reads it, not a new-table backfill too.
    again = MySQLBinlogSource(made.config, replace(made.context, with_records=lambda topics: []))
    again.context.snapshots.submit(SnapshotRequest((f"{db}.items",), None, "move-1"))
    try:
        item = next(i for i in again.read(start.position) if isinstance(i, Checkpoint | ChangeBatch))
    finally:
        stop.set()
        again.close()
    assert isinstance(item, Checkpoint) and item.durable, item
    assert isinstance(item.position, BinlogPosition)
    assert [(b.id, b.stream) for b in item.position.backfills] == [("move-1", f"{db}.items")]
