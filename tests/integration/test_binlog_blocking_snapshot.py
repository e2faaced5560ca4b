"""Blocking snapshots on mysql_binlog: the stream pauses at a consistent snapshot's binlog point, the table is read
in that snapshot, the stream resumes. Under a writer updating and deleting the same keys, each read is exactly
the table as streamed up to the pause (no version newer or older than the stream's, no key missing or extra),
the topic folded by key equals the table, and no key's older version follows a newer one; a signal row of type
blocking reads two tables in one snapshot; --where is refused; --cancel works while the stream goes towards the
point and during the read; --status counts the read's rows."""

from __future__ import annotations

import json
import random
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import liberator.watermarks
from liberator.capture import ChangeBatch, Op, RowChange
from liberator.connectors.mysql_binlog.position import BinlogPosition
from liberator.embedded.ports import free_port
from liberator.events import Checkpoint, SourceItem
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
    server: MySQLInstance, db: str, tmp_path: Path, kafka_bootstrap: str, registry_url: str, extra: str = ""
) -> Path:
    for table in ("items", "other"):
        server.execute(f"CREATE TABLE `{db}`.{table} (id INT PRIMARY KEY, version INT NOT NULL, note VARCHAR(20))")
        server.execute(f"INSERT INTO `{db}`.{table} SELECT i, 1, CONCAT('n', i) FROM ({numbers(ROWS)}) AS s")
    options = f"    snapshot_chunk: 25\n    envelope: change\n{extra}"
    yaml = source_yaml(server, f"[{db}.items, {db}.other]", db, options)
    config = app_config(tmp_path, kafka_bootstrap, registry_url, yaml)
    with_http(config, free_port())
    return config


def _snapshot(config: Path, *args: str) -> str:
    return snapshot_cli(config, "cdc", *args)


def _idle(config: Path) -> bool:
    return snapshots_idle(config, "cdc")


def _version(record: dict[str, Any]) -> tuple[str, int | None]:
    value = record["value"]
    if value is None:
        return "tombstone", None
    after = value.get("after")
    return value["op"], None if after is None else after["version"]


def _reads_match_the_stream(records: list[dict[str, Any]], initial: int) -> int:
    """Replays the topic: each blocking read (a run of reads in key order after the initial snapshot) must hold
    exactly the rows the stream had carried up to it, at the versions it had carried. The number of reads."""
    state: dict[int, int] = {}
    reads: list[tuple[int, int]] = []

    def check() -> None:
        if reads:
            assert dict(reads) == state, f"a read of {len(reads)} rows is not the table as streamed before it"
            reads.clear()

    for index, record in enumerate(records):
        op, version = _version(record)
        key = record["key"]["id"]
        if op == "r" and index >= initial:
            if reads and key <= reads[-1][0]:
                check()  # the next read starts again from the first key
            reads.append((key, version))  # type: ignore[arg-type]
            continue
        check()
        if op == "d":
            state.pop(key, None)
        elif op != "tombstone":
            assert version is not None
            state[key] = version
    check()
    return sum(1 for r in records[initial:] if _version(r)[0] == "r")


def test_blocking_snapshots_under_a_writer_read_the_table_exactly_as_streamed_up_to_the_pause(
    mariadb_server: MySQLInstance, mysql_database: str, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    db = mysql_database
    server = mariadb_server
    config = _setup(server, db, tmp_path, kafka_bootstrap, registry_url)
    topic = f"{db}.{db}.items"
    stop = threading.Event()

    def writer() -> None:
        rng = random.Random(11)
        conn = server.connect(db)
        try:
            with conn.cursor() as cur:
                while not stop.is_set():
                    key = rng.randint(1, ROWS)
                    if rng.random() < 0.05:
                        cur.execute("DELETE FROM items WHERE id = %s", (key,))
                    else:
                        cur.execute("UPDATE items SET version = version + 1 WHERE id = %s", (key,))
                    conn.commit()
        finally:
            conn.close()

    with DaemonThread(config):
        wait_for(lambda: len(read_topic(kafka_bootstrap, registry_url, topic)) >= ROWS, what="the initial snapshot")
        thread = threading.Thread(target=writer, daemon=True)
        thread.start()
        try:
            for _ in range(3):  # each pause point lands amid the writer's commits
                assert "queued" in _snapshot(config, "--table", f"{db}.items", "--blocking")
                wait_for(lambda: _idle(config), timeout=120, what="the blocking snapshot to finish")
        finally:
            stop.set()
            thread.join()
        server.execute(f"INSERT INTO `{db}`.items VALUES (%s, 1, 'after')", (ROWS + 1,))  # streamed after the pauses
        table = {int(row[0]): int(row[1]) for row in server.execute(f"SELECT id, version FROM `{db}`.items")}

        def folded() -> dict[int, int]:
            return {k: v["version"] for k, v in fold_by_key(read_topic(kafka_bootstrap, registry_url, topic)).items()}

        wait_for(lambda: folded() == table, timeout=60, what="the topic folded by key to equal the table")
    records = read_topic(kafka_bootstrap, registry_url, topic)
    assert {_version(r)[0] for r in records[:ROWS]} == {"r"}, "the initial snapshot first"
    reads = _reads_match_the_stream(records, ROWS)
    assert reads >= 3 * (len(table) - 1), "three whole reads of the table (which only shrank meanwhile)"
    assert records[-1]["key"]["id"] == ROWS + 1
    other = read_topic(kafka_bootstrap, registry_url, f"{db}.{db}.other")
    assert len(other) == ROWS, "only the table asked for is read"


def test_a_blocking_signal_reads_its_tables_in_one_snapshot_and_where_is_refused(
    mariadb_server: MySQLInstance, mysql_database: str, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    db = mysql_database
    mariadb_server.execute(SIGNAL_DDL.format(db=db))
    config = _setup(
        mariadb_server, db, tmp_path, kafka_bootstrap, registry_url, f"    signal_table: {db}.liberator_signal\n"
    )
    items, other = f"{db}.{db}.items", f"{db}.{db}.other"
    with DaemonThread(config):
        wait_for(lambda: len(read_topic(kafka_bootstrap, registry_url, other)) >= ROWS, what="the initial snapshot")
        refused = _snapshot(config, "--table", f"{db}.items", "--blocking", "--where", "id < 5").split()[1]
        wait_for(lambda: refused in _snapshot(config, "--status"), what="the refusal")
        assert "a blocking snapshot reads whole tables" in _snapshot(config, "--status")
        data = {"data-collections": [f"{db}.items", f"{db}.other"], "type": "blocking"}
        signal = f"INSERT INTO `{db}`.liberator_signal VALUES (%s, %s, %s)"
        mariadb_server.execute(signal, ("block-1", "execute-snapshot", json.dumps(data)))
        for topic in (items, other):
            wait_for(lambda: len(read_topic(kafka_bootstrap, registry_url, topic)) == 2 * ROWS, what="reads")  # noqa: B023
        wait_for(lambda: "block-1" not in _snapshot(config, "--status"), what="the request done")
        mariadb_server.execute(f"UPDATE `{db}`.items SET version = 2 WHERE id = 1")  # the stream goes on
        wait_for(lambda: len(read_topic(kafka_bootstrap, registry_url, items)) == 2 * ROWS + 1, what="the update")
    for topic in (items, other):
        again = read_topic(kafka_bootstrap, registry_url, topic)[ROWS : 2 * ROWS]
        assert [r["key"]["id"] for r in again] == list(range(1, ROWS + 1))
        assert {r["value"]["op"] for r in again} == {"r"}
        assert all(r["value"]["source"]["snapshot"] for r in again)


# In-process: the test pulls the source's items itself, so it decides what the database holds at each step.


def _pull(items: Iterator[SourceItem], until: Any, what: str, limit: int = 10_000) -> list[SourceItem]:
    pulled: list[SourceItem] = []
    for item in items:
        pulled.append(item)
        if until(item):
            return pulled
        assert len(pulled) < limit, f"no {what} in {limit} items"
    raise AssertionError(f"the source ended before {what}")


def _changes(items: list[SourceItem]) -> list[RowChange]:
    return [c for i in items if isinstance(i, ChangeBatch) for c in i.items if isinstance(c, RowChange)]


def _reads(items: list[SourceItem]) -> list[RowChange]:
    return [c for c in _changes(items) if c.op is Op.read]


def _streamed(items: list[SourceItem]) -> list[RowChange]:
    return [c for c in _changes(items) if c.op is not Op.read]


def _stored_with(request: str) -> Any:
    return lambda i: (
        isinstance(i, Checkpoint)
        and i.durable
        and isinstance(i.position, BinlogPosition)
        and any(b.id == request and b.blocking for b in i.position.backfills)
    )


def _stored_without_backfills(i: SourceItem) -> bool:
    return isinstance(i, Checkpoint) and isinstance(i.position, BinlogPosition) and not i.position.backfills


def _snapshot_done(i: SourceItem) -> bool:
    return isinstance(i, Checkpoint) and isinstance(i.position, BinlogPosition) and not i.position.snapshotting


def _started(server: MySQLInstance, db: str, chunk: int) -> tuple[Any, Any, Iterator[SourceItem]]:
    server.execute(f"CREATE TABLE `{db}`.items (id INT PRIMARY KEY, version INT NOT NULL)")
    server.execute(f"INSERT INTO `{db}`.items SELECT i, 1 FROM ({numbers(ROWS)}) AS s")
    source, stop = make_source(server, [f"{db}.items"], snapshot_chunk=chunk)
    items = iter(source.read(None))
    _pull(items, _snapshot_done, "the snapshot's end")
    return source, stop, items


@pytest.fixture
def intake_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Requests and cancels taken at every look, not every half second: the test decides when they arrive."""
    monkeypatch.setattr(liberator.watermarks, "INTAKE_INTERVAL", 0.0)


@pytest.mark.usefixtures("intake_at_once")
def test_a_cancel_while_the_stream_goes_towards_the_point_reads_nothing(
    mariadb_server: MySQLInstance, mysql_database: str
) -> None:
    db = mysql_database
    source, stop, items = _started(mariadb_server, db, 25)
    try:
        source.context.snapshots.submit(SnapshotRequest((f"{db}.items",), None, "block-1", blocking=True))
        _pull(items, _stored_with("block-1"), "the request taken")
        # Written before the snapshot starts (at the next pull) and not streamed yet: the point lies after it.
        mariadb_server.execute(f"UPDATE `{db}`.items SET version = 5 WHERE id = 7")
        before = _pull(items, lambda i: isinstance(i, ChangeBatch) and bool(i.items), "the update streamed")
        assert not _reads(before), "paused before the update: the point was taken after it"
        assert source.context.snapshots.cancel("block-1")
        mariadb_server.execute(f"UPDATE `{db}`.items SET version = 6 WHERE id = 8")
        after = _pull(items, lambda i: bool(_streamed([i])), "the stream going on")
        assert not _reads(after), "nothing read for the cancelled request"
        assert any(_stored_without_backfills(i) for i in after), "the cancel stored"
        assert source.context.snapshots.status()["running"] == []
    finally:
        stop.set()
        source.close()


@pytest.mark.usefixtures("intake_at_once")
def test_status_counts_the_blocking_read_and_a_cancel_ends_it(
    mariadb_server: MySQLInstance, mysql_database: str
) -> None:
    db = mysql_database
    source, stop, items = _started(mariadb_server, db, 10)
    desk = source.context.snapshots
    try:
        desk.submit(SnapshotRequest((f"{db}.items",), None, "block-2", blocking=True))
        _pull(items, _stored_with("block-2"), "the request taken")
        read = _pull(items, lambda i: len(_reads([i])) > 0, "a first chunk read")
        assert len(_reads(read)) == 10
        read += _pull(items, lambda i: len(_reads([i])) > 0, "a second chunk read")
        running = desk.status()["running"]
        assert [(r["id"], r["rows"], r["blocking"]) for r in running] == [("block-2", 20, True)], running
        assert desk.cancel("block-2")
        mariadb_server.execute(f"UPDATE `{db}`.items SET version = 9 WHERE id = 1")
        after = _pull(items, lambda i: bool(_streamed([i])), "the stream going on")
        assert len(_reads(read + after)) < ROWS, "the read ended at the cancel"
        assert any(_stored_without_backfills(i) for i in after)
        assert [(c.op, (c.after or [])[1]) for c in _streamed(after)] == [(Op.update, 9)]
    finally:
        stop.set()
        source.close()


def test_a_blocking_snapshot_that_cannot_start_is_dropped_with_its_reason_and_the_stream_goes_on(
    mariadb_server: MySQLInstance, mysql_database: str
) -> None:
    """Its transaction needs a connection of its own: one refused (here: the password changed since the source
    connected; on MySQL: no RELOAD for the snapshot's lock) drops the request with the reason, not the stream."""
    db = mysql_database
    server = mariadb_server
    user = f"blk{uuid.uuid4().hex[:8]}"
    server.create_user(user, "pw", grants=("REPLICATION SLAVE", "BINLOG MONITOR", "SELECT"))
    server.execute(f"CREATE TABLE `{db}`.items (id INT PRIMARY KEY, version INT NOT NULL)")
    server.execute(f"INSERT INTO `{db}`.items SELECT i, 1 FROM ({numbers(ROWS)}) AS s")
    url = server.url(user=user, password="pw", driver=None)
    source, stop = make_source(server, [f"{db}.items"], url=url)
    desk = source.context.snapshots
    try:
        items = iter(source.read(None))
        _pull(items, _snapshot_done, "the snapshot's end")
        server.execute(f"UPDATE `{db}`.items SET version = 2 WHERE id = 2")  # the binlog library opens its own
        _pull(items, lambda i: bool(_streamed([i])), "a first change streamed")
        server.execute(f"ALTER USER '{user}'@'%' IDENTIFIED BY 'changed'")  # the connections open stay open
        desk.submit(SnapshotRequest((f"{db}.items",), None, "block-3", blocking=True))
        _pull(items, _stored_with("block-3"), "the request taken")
        server.execute(f"UPDATE `{db}`.items SET version = 4 WHERE id = 3")
        after = _pull(items, lambda i: bool(_streamed([i])), "the stream going on")
        assert not _reads(after)
        reason = desk.status()["refused"].get("block-3", "")
        assert "its consistent snapshot could not start" in reason and "Access denied" in reason, reason
        assert any(_stored_without_backfills(i) for i in after), "the drop stored"
        assert desk.status()["running"] == []
    finally:
        stop.set()
        source.close()
        server.execute(f"DROP USER '{user}'@'%'")
