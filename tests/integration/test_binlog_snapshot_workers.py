"""`snapshot_workers` on mysql_binlog: a window of 2 chunks read at once, each in its own consistent snapshot,
under a writer updating and deleting the same keys (single and composite primary keys): the topic folded by
key equals the table, no key's older version follows a newer one; a commit between two reads' snapshot
points (forced) is dropped from the window. The chunk SQL reads composite-key chunks as index ranges
(EXPLAIN), selecting the same rows as the row-value comparison it replaces. A DDL has the shape read again."""

from __future__ import annotations

import random
import threading
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from liberator.capture import datum_events
from liberator.connectors.mysql_binlog import source as binlog_source
from liberator.connectors.mysql_binlog.backfill import BinlogBackfill
from liberator.connectors.mysql_binlog.chunks import ChunkSql
from liberator.connectors.mysql_binlog.position import Coord
from liberator.connectors.mysql_binlog.tables import read_table_def
from liberator.embedded.ports import free_port
from liberator.events import ChangeEvent
from liberator.snapshots import SnapshotRequest
from liberator.watermarks import Span
from liberator_testbed import MySQLInstance
from tests.integration.test_mysql_binlog_helpers import collect, make_source, numbers, source_yaml
from tests.support import DaemonThread, app_config, read_topic, snapshot_cli, wait_for, with_http

ROWS = 300
CHUNK = 25
# Each chunk's read sleeps a little per row (a condition true for every row), so the writer's commits land
# after the reads' points and before the high watermark: the rows the window must drop.
SLOW = "SLEEP(0.01) = 0"

TABLES = {
    "items": ("id INT PRIMARY KEY", "i", ("id",)),
    "pairs": ("a INT NOT NULL, b INT NOT NULL, PRIMARY KEY (a, b)", "i DIV 10, i MOD 10", ("a", "b")),
}


def _create(server: MySQLInstance, db: str, table: str) -> tuple[str, ...]:
    columns, values, key = TABLES[table]
    server.execute(f"CREATE TABLE `{db}`.{table} ({columns}, version INT NOT NULL, note VARCHAR(20))")
    server.execute(f"INSERT INTO `{db}`.{table} SELECT {values}, 1, CONCAT('n', i) FROM ({numbers(ROWS)}) AS s")
    return key


def _snapshot(config: Path, *args: str) -> str:
    return snapshot_cli(config, "cdc", *args)


def _record_key(record: dict[str, Any], key: tuple[str, ...]) -> tuple[int, ...]:
    return tuple(int(record["key"][k]) for k in key)


@pytest.mark.parametrize("table", ["items", "pairs"])
def test_two_workers_under_a_writer_keep_every_key_in_order(
    mariadb_server: MySQLInstance,
    mysql_database: str,
    tmp_path: Path,
    kafka_bootstrap: str,
    registry_url: str,
    table: str,
) -> None:
    db, server = mysql_database, mariadb_server
    key = _create(server, db, table)
    extra = f"    snapshot_chunk: {CHUNK}\n    snapshot_workers: 2\n    envelope: change\n"
    config = app_config(tmp_path, kafka_bootstrap, registry_url, source_yaml(server, f"[{db}.{table}]", db, extra))
    with_http(config, free_port())
    topic = f"{db}.{db}.{table}"
    keys = [tuple(int(v) for v in row) for row in server.execute(f"SELECT {', '.join(key)} FROM `{db}`.{table}")]
    stop = threading.Event()

    def writer() -> None:
        rng = random.Random(7)
        condition = " AND ".join(f"{k} = %s" for k in key)
        while not stop.is_set():
            chosen = rng.choice(keys)
            if rng.random() < 0.1:
                server.execute(f"DELETE FROM `{db}`.{table} WHERE {condition}", chosen)
            else:
                server.execute(f"UPDATE `{db}`.{table} SET version = version + 1 WHERE {condition}", chosen)

    def records() -> list[dict[str, Any]]:
        return read_topic(kafka_bootstrap, registry_url, topic)

    with DaemonThread(config):
        wait_for(lambda: len(records()) >= ROWS, what="the initial snapshot")
        thread = threading.Thread(target=writer, daemon=True)
        thread.start()
        try:
            assert "queued" in _snapshot(config, "--table", f"{db}.{table}", "--where", SLOW)
            wait_for(lambda: len(records()) > ROWS + 50, what="reads")
            idle = "no snapshot queued or under way"
            wait_for(lambda: idle in _snapshot(config, "--status"), timeout=120, what="the snapshot to finish")
        finally:
            stop.set()
            thread.join()
        columns = ", ".join(key)
        live = {
            tuple(int(v) for v in row[:-1]): int(row[-1])
            for row in server.execute(f"SELECT {columns}, version FROM `{db}`.{table}")
        }

        def folded() -> dict[tuple[int, ...], int]:
            rows: dict[tuple[int, ...], int] = {}
            for record in records():
                after = record["value"] and record["value"]["after"]
                if after is None:
                    rows.pop(_record_key(record, key), None)
                else:
                    rows[_record_key(record, key)] = after["version"]
            return rows

        wait_for(lambda: folded() == live, timeout=60, what="the topic folded by key to equal the table")
    published = records()
    reads = [r for r in published[ROWS:] if r["value"] is not None and r["value"]["op"] == "r"]
    assert len(reads) > 50, "the snapshot published reads"
    # A window's reads go out together at its high watermark (one source position): more than one chunk's
    # worth in a window shows the window held two chunks.
    per_window: dict[str, int] = defaultdict(int)
    for read in reads:
        per_window[read["value"]["source"]["position"]] += 1
    assert max(per_window.values()) > CHUNK, per_window
    seen: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for record in published:
        if record["value"] is not None:
            after = record["value"]["after"]
            seen[_record_key(record, key)].append(-1 if after is None else after["version"])
    for row_key, versions in seen.items():
        kept = [v for v in versions if v != -1]
        # A delete resets a key (it may come back only by insert, which this writer never does).
        assert kept == sorted(kept), f"key {row_key}: an older version after a newer one: {versions}"


def _explain(server: MySQLInstance, query: str, args: Any) -> list[dict[str, Any]]:
    with server.connect() as conn, conn.cursor() as cur:
        cur.execute("EXPLAIN " + query, args)
        names = [d[0].lower() for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def _rows(server: MySQLInstance, query: str, args: Any) -> list[tuple[Any, ...]]:
    with server.connect() as conn, conn.cursor() as cur:
        cur.execute(query, args)
        return [tuple(row) for row in cur.fetchall()]


def test_composite_key_chunks_are_index_ranges_and_select_what_row_values_do(
    mariadb_server: MySQLInstance, mysql_database: str
) -> None:
    db, server = mysql_database, mariadb_server
    server.execute(f"CREATE TABLE `{db}`.pairs ({TABLES['pairs'][0]}, version INT NOT NULL, note VARCHAR(20))")
    server.execute(
        f"INSERT INTO `{db}`.pairs SELECT x.i, y.i, 1, 'n' FROM ({numbers(500)}) AS x CROSS JOIN ({numbers(10)}) AS y"
    )  # 5,000 rows: a 1..500, b 1..10
    server.execute(f"ANALYZE TABLE `{db}`.pairs")
    with server.connect() as conn:
        definition = read_table_def(conn, db, "pairs", mysql=False)
    assert definition is not None
    sql = ChunkSql(definition, ["a", "b", "version", "note"], None)
    for span in (Span((400, 3), None, 100), Span((200, 7), (210, 2), None)):
        query, args = sql.rows(span)
        plan = _explain(server, query, args)
        assert [(p["type"], p["key"]) for p in plan] == [("range", "PRIMARY")], (query, plan)
        row_values = f"SELECT a, b, version, note FROM `{db}`.pairs WHERE (a, b) > (%s, %s)"
        if span.upto is not None:
            row_values += " AND (a, b) <= (%s, %s)"
        row_values += " ORDER BY a, b" + ("" if span.limit is None else f" LIMIT {span.limit}")
        expected = _rows(server, row_values, [*(span.after or ()), *(span.upto or ())])
        assert expected and _rows(server, query, args) == expected
    query, args = sql.boundaries((100, 4), CHUNK, 3)
    plan = _explain(server, query, args)
    assert ("range", "PRIMARY") in [(p["type"], p["key"]) for p in plan], plan  # the key-only read of the next chunks
    assert _rows(server, query, args) == [(102, 9), (105, 4), (107, 9)]


def test_a_ddl_during_a_backfill_has_its_next_chunks_read_in_the_new_shape(
    mariadb_server: MySQLInstance, mysql_database: str, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    """The shape is read once per backfill, and again when the stream reaches a DDL of the table."""
    db, server = mysql_database, mariadb_server
    _create(server, db, "items")
    extra = f"    snapshot_chunk: {CHUNK}\n    envelope: change\n"
    config = app_config(tmp_path, kafka_bootstrap, registry_url, source_yaml(server, f"[{db}.items]", db, extra))
    with_http(config, free_port())
    topic = f"{db}.{db}.items"

    def reads() -> list[dict[str, Any]]:
        records = read_topic(kafka_bootstrap, registry_url, topic)[ROWS:]
        return [r for r in records if r["value"] is not None and r["value"]["op"] == "r"]

    with DaemonThread(config):
        wait_for(lambda: len(read_topic(kafka_bootstrap, registry_url, topic)) >= ROWS, what="the initial snapshot")
        _snapshot(config, "--table", f"{db}.items", "--where", "SLEEP(0.02) = 0")  # 0.5 s a chunk
        wait_for(lambda: reads(), what="a first chunk")
        server.execute(f"ALTER TABLE `{db}`.items ADD COLUMN extra INT DEFAULT 7")
        idle = "no snapshot queued or under way"
        wait_for(lambda: idle in _snapshot(config, "--status"), timeout=60, what="the snapshot to finish")
        seen: list[set[int]] = [set()]

        def every_read() -> list[dict[str, Any]] | None:
            records = reads()
            seen[0] = {x["key"]["id"] for x in records}
            return records if len(seen[0]) == ROWS else None

        try:
            done = wait_for(every_read, timeout=60, what="every read")
        except AssertionError as exc:  # say which keys the snapshot never read, and what the source last said
            never = sorted(set(range(1, ROWS + 1)) - seen[0])
            raise AssertionError(
                f"{exc}: {len(never)} keys never read, from {never[:10]}; status: {_snapshot(config, '--status')}"
            ) from None
    shapes = ["extra" in r["value"]["after"] for r in done]
    assert shapes[0] is False and shapes[-1] is True, "read in the old shape, then the new"
    assert shapes == sorted(shapes), "never the old shape again after the new one"
    assert {r["value"]["after"]["extra"] for r in done if "extra" in r["value"]["after"]} == {7}


def test_a_commit_between_two_reads_snapshot_points_is_dropped_from_the_window(
    mariadb_server: MySQLInstance, mysql_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The window opens at the earliest read's point: a transaction that ends after it and before a later
    read's point is missing from the earlier read, so it must drop its keys. Forced here: the second read to
    begin waits until the first has its snapshot, then an update of a key in each chunk commits."""
    db, server = mysql_database, mariadb_server
    server.execute(f"CREATE TABLE `{db}`.items (id INT PRIMARY KEY, version INT NOT NULL)")
    server.execute(f"INSERT INTO `{db}`.items SELECT i, 1 FROM ({numbers(10)}) AS s")
    first_began = threading.Event()
    lock = threading.Lock()
    begun: list[int] = []

    class Staggered(BinlogBackfill):
        def _begin(self, cur: Any) -> Coord:
            with lock:
                begun.append(len(begun))
                order = begun[-1]
            if order == 1:  # the first window's second read
                assert first_began.wait(10), "the first read began"
                server.execute(f"UPDATE `{db}`.items SET version = 2 WHERE id IN (1, 6)")
            point = super()._begin(cur)
            if order == 0:
                first_began.set()
            return point

    monkeypatch.setattr(binlog_source, "BinlogBackfill", Staggered)
    source, stop = make_source(server, [f"{db}.items"], snapshot_chunk=5, snapshot_workers=2)
    versions: dict[int, list[tuple[str, int]]] = defaultdict(list)
    requested = False

    def until(out: list[Any]) -> bool:
        nonlocal requested
        for event in out[-1:]:
            if isinstance(event, ChangeEvent) and isinstance(event.value, dict) and event.value["after"]:
                assert isinstance(event.key, dict)
                versions[event.key["id"]].append((event.value["op"], event.value["after"]["version"]))
        if not requested and len(versions) == 10:  # the initial snapshot is out
            source.context.snapshots.submit(SnapshotRequest((f"{db}.items",)))
            requested = True
        backfilled = {k for k, seen in versions.items() if [op for op, _v in seen].count("r") == 2}
        return backfilled >= {2, 3, 4, 5, 7, 8, 9, 10}

    try:
        collect(datum_events(source.read(None), source.config.envelope), stop, until, limit=5000)
    finally:
        source.close()
    assert len(begun) >= 2, "the window was read by two workers"
    for key in (1, 6):
        numbers_seen = [v for _op, v in versions[key]]
        assert numbers_seen == sorted(numbers_seen), f"key {key}: an older version after a newer one: {versions[key]}"
        assert versions[key][-1] == ("u", 2), versions[key]
