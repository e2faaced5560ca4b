"""`snapshot_mode: incremental` and `snapshot_workers` on postgres_wal: the initial snapshot read in chunks
between watermarks while streaming (no exported snapshot, no long transaction), and windows of several chunks
read at once on several connections; under a writer, the topic folded by key equals the table and no key's
older version follows a newer one."""

from __future__ import annotations

import json
import logging
import random
import threading
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from liberator.capture import RowChange
from liberator.connectors.postgres_wal.backfill import WalBackfill
from liberator.connectors.postgres_wal.connection import connect
from liberator.connectors.postgres_wal.tables import TableCatalog
from liberator.embedded.ports import free_port
from liberator.snapshots import Backfill, SnapshotDesk
from tests.integration.postgres_wal_support import WalDb
from tests.support import DaemonThread, app_config, cli, fold_by_key, read_topic, wait_for, with_http

ROWS = 2000
LOG = logging.getLogger("test.wal")


def _setup(pg_url: str, tmp_path: Path, kafka_bootstrap: str, registry_url: str, extra: str) -> tuple[WalDb, Path, str]:
    db = WalDb(pg_url)
    db.run("CREATE TABLE items (id int PRIMARY KEY, version int NOT NULL, note text)")
    db.run(f"INSERT INTO items SELECT i, 1, 'n' || i FROM generate_series(1, {ROWS}) AS i")
    wal = (
        f"  - name: wal\n    type: postgres_wal\n    url: {db.url}\n    tables: [items]\n"
        f'    slot: {db.tag}\n    publication: {db.tag}\n    topic: "{db.tag}.{{table}}"\n'
        f"    snapshot_chunk: 40\n    envelope: change\n{extra}"
    )
    config = app_config(tmp_path, kafka_bootstrap, registry_url, wal)
    with_http(config, free_port())
    return db, config, f"{db.tag}.items"


class Writer(threading.Thread):
    """Updates (version + 1) and deletes of random keys, as fast as one connection goes."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.halt = threading.Event()
        self.commits = 0

    def run(self) -> None:
        rng = random.Random(11)
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self.halt.is_set():
                key = rng.randint(1, ROWS)
                if rng.random() < 0.1:
                    conn.execute("DELETE FROM items WHERE id = %s", (key,))
                else:
                    conn.execute("UPDATE items SET version = version + 1 WHERE id = %s", (key,))
                self.commits += 1


@pytest.fixture
def writer(pg_url: str) -> Iterator[Writer]:
    thread = Writer(WalDb(pg_url).url)
    yield thread
    thread.halt.set()
    if thread.is_alive():
        thread.join(10)


def _status(config: Path) -> str:
    done = cli("snapshot", str(config), "--source", "wal", "--status")
    assert done.returncode == 0, done.stderr
    return done.stdout


def _idle(config: Path) -> bool:
    return "no snapshot queued or under way" in _status(config)


def _check_topic(db: WalDb, kafka_bootstrap: str, registry_url: str, topic: str) -> list[dict[str, Any]]:
    """The topic folded by key equals the table, and per key the versions only rise (deletes reset a key)."""
    table = {row[0]: row[1] for row in db.rows("SELECT id, version FROM items")}

    def folded() -> dict[int, int]:
        rows = fold_by_key(read_topic(kafka_bootstrap, registry_url, topic))
        return {k: v["version"] for k, v in rows.items()}

    wait_for(lambda: folded() == table, timeout=60, what="the topic folded by key to equal the table")
    records = [r for r in read_topic(kafka_bootstrap, registry_url, topic) if r["value"] is not None]  # no tombstones
    seen: dict[int, list[int]] = defaultdict(list)
    for record in records:
        after = record["value"]["after"]
        seen[record["key"]["id"]].append(-1 if after is None else after["version"])
    for key, versions in seen.items():
        live = [v for v in versions if v != -1]
        assert live == sorted(live), f"key {key}: an older version after a newer one: {versions}"
    return records


def _reads(records: list[dict[str, Any]]) -> list[int]:
    return [r["key"]["id"] for r in records if r["value"] is not None and r["value"]["op"] == "r"]


@pytest.mark.parametrize("workers", [1, 3])
def test_an_incremental_initial_snapshot_under_a_writer(
    pg_url: str, tmp_path: Path, kafka_bootstrap: str, registry_url: str, writer: Writer, workers: int
) -> None:
    extra = f"    snapshot_mode: incremental\n    snapshot_workers: {workers}\n"
    db, config, topic = _setup(pg_url, tmp_path, kafka_bootstrap, registry_url, extra)
    writer.start()
    with DaemonThread(config):
        wait_for(lambda: writer.commits > 50, what="the writer to start")
        wait_for(lambda: _reads(read_topic(kafka_bootstrap, registry_url, topic)), what="the first chunk")
        wait_for(lambda: _idle(config), timeout=120, what="the incremental snapshot to finish")
        writer.halt.set()
        writer.join(10)
        records = _check_topic(db, kafka_bootstrap, registry_url, topic)
    reads = _reads(records)
    assert reads == sorted(set(reads)), "each key read once, the table's chunks in key order"
    assert all(r["value"]["source"]["snapshot"] for r in records if r["value"]["op"] == "r")
    # The stream ran during the snapshot: changes of keys the snapshot had not reached yet came first.
    first_read = next(i for i, r in enumerate(records) if r["value"]["op"] == "r")
    last_read = max(i for i, r in enumerate(records) if r["value"]["op"] == "r")
    assert any(r["value"]["op"] != "r" for r in records[first_read:last_read]), "changes streamed meanwhile"
    # No exported snapshot: no temporary or second slot, the source's slot only.
    assert db.rows("SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE %s", (f"{db.tag}%",)) == [(1,)]


def test_parallel_chunks_keep_every_key_in_order_when_commits_land_inside_the_window(
    pg_url: str, tmp_path: Path, kafka_bootstrap: str, registry_url: str, writer: Writer
) -> None:
    """Snapshot on demand with 3 workers; each read is slowed so that the writer's commits land between the
    watermarks of a window of 3 chunks: the window must drop the keys the stream carries, in every chunk."""
    db, config, topic = _setup(pg_url, tmp_path, kafka_bootstrap, registry_url, "    snapshot_workers: 3\n")
    with DaemonThread(config):
        wait_for(lambda: len(read_topic(kafka_bootstrap, registry_url, topic)) >= ROWS, what="the initial snapshot")
        writer.start()
        wait_for(lambda: writer.commits > 50, what="the writer to start")
        done = cli(
            "snapshot", str(config), "--source", "wal", "--table", "items",
            "--where", "id <= 600 AND pg_sleep(0.002 + 0 * id)::text = ''",
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        wait_for(lambda: _idle(config), timeout=120, what="the snapshot to finish")
        writer.halt.set()
        writer.join(10)
        records = _check_topic(db, kafka_bootstrap, registry_url, topic)
    again = _reads(records[ROWS:])
    assert again, "the snapshot published reads"
    assert again == sorted(set(again)) and max(again) <= 600


@pytest.mark.parametrize("workers", [1, 3])
def test_a_window_reaches_the_stream_when_its_reads_end(pg_url: str, workers: int) -> None:
    """The walsender sends only flushed WAL, and a non-transactional message in a statement of its own is
    flushed by the WAL writer only (up to wal_writer_delay later): on a quiet database every window waited
    for it. The high watermark is committed, so it is decodable as soon as the window's reads are done.
    Also: a window of `workers` chunks holds their rows in key order and ends at the last chunk's end key."""
    db = WalDb(pg_url)
    db.run("CREATE TABLE items (id int PRIMARY KEY, version int NOT NULL, note text)")
    db.run("INSERT INTO items SELECT i, 1, 'n' || i FROM generate_series(1, 100) AS i")
    db.run(f"CREATE PUBLICATION {db.tag} FOR TABLE items")
    db.run("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (db.tag,))
    config = db.config(["items"], snapshot_chunk=10, snapshot_workers=workers)
    catalog = TableCatalog(connect(config.url, config, what="test"), config, "test", "test")
    backfill = WalBackfill(
        config, catalog, {"public.items"}, SnapshotDesk(), (Backfill("b1", "public.items"),), "test", LOG
    )
    try:
        backfill.next_chunk()
        window = backfill.window
        assert window is not None
        peeked = db.rows(
            "SELECT data FROM pg_logical_slot_peek_binary_changes(%s, NULL, NULL, 'proto_version', '1', "
            "'publication_names', %s, 'messages', 'true')",
            (db.tag, db.tag),
        )
        assert f"high {window.id}".encode() in b"".join(bytes(row[0]) for row in peeked), "not flushed yet"
        assert list(window.rows) == [(i,) for i in range(1, 10 * workers + 1)]
        assert (window.last, window.full) == ((str(10 * workers),), True)
    finally:
        backfill.close()
        catalog.conn.close()
        db.run("SELECT pg_drop_replication_slot(%s)", (db.tag,))


def test_a_column_dropped_mid_backfill_is_read_in_the_new_shape(pg_url: str) -> None:
    """The shape is read once per backfill; a column dropped before any change of the table was streamed (no
    Relation message yet) makes the next window read the shape again instead of stopping the source."""
    db = WalDb(pg_url)
    db.run("CREATE TABLE items (id int PRIMARY KEY, version int NOT NULL, note text)")
    db.run("INSERT INTO items SELECT i, 1, 'n' || i FROM generate_series(1, 30) AS i")
    config = db.config(["items"], snapshot_chunk=10)
    catalog = TableCatalog(connect(config.url, config, what="test"), config, "test", "test")
    backfill = WalBackfill(
        config, catalog, {"public.items"}, SnapshotDesk(), (Backfill("b1", "public.items"),), "test", LOG
    )
    try:
        backfill.next_chunk()
        for kind in ("low", "high"):
            assert backfill.window is not None
            out = backfill.watermark(f"{kind} {backfill.window.id}".encode(), 0)
        first = out[0]
        assert isinstance(first, RowChange) and first.after == [1, 1, "n1"]
        db.run("ALTER TABLE items DROP COLUMN note")
        backfill.next_chunk()  # finds the column gone: reads the shape again
        backfill.next_chunk()
        assert backfill.window is not None
        assert next(iter(backfill.window.rows.values())) == [11, 1]
    finally:
        backfill.close()
        catalog.conn.close()


def test_a_consistent_snapshot_cut_short_is_finished_in_chunks_after_switching_mode(
    pg_url: str, tmp_path: Path, kafka_bootstrap: str, registry_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A position a consistent snapshot stored mid-way (table a read, b not; the format main writes) loads, and
    with `snapshot_mode: incremental` the unread table is read in chunks while streaming, the read one not again."""
    db = WalDb(pg_url)
    for name in ("a", "b"):
        db.run(f"CREATE TABLE {name} (id int PRIMARY KEY, version int NOT NULL)")
        db.run(f"INSERT INTO {name} SELECT i, 1 FROM generate_series(1, 50) AS i")
    wal = (
        f"  - name: wal\n    type: postgres_wal\n    url: {db.url}\n    tables: [a, b]\n"
        f'    slot: {db.tag}\n    publication: {db.tag}\n    topic: "{db.tag}.{{table}}"\n    snapshot_chunk: 20\n'
    )
    config = app_config(tmp_path, kafka_bootstrap, registry_url, wal)
    with_http(config, free_port())
    topics = {name: f"{db.tag}.{name}" for name in ("a", "b")}
    with DaemonThread(config) as daemon:
        for topic in topics.values():
            wait_for(lambda t=topic: len(read_topic(kafka_bootstrap, registry_url, t)) == 50, what="the snapshot")
        wait_for(lambda: daemon.positions_settled("wal"), what="the position stored")
    position = json.loads(cli("offsets", "show", str(config)).stdout)["wal"]["position"]
    position["snapshot_done"] = False
    position["tables"] = {"public.a": position["lsn"]}
    done = cli("offsets", "set", str(config), "--source", "wal", json.dumps(position))
    assert done.returncode == 0, done.stderr
    config.write_text(
        config.read_text().replace("snapshot_chunk: 20\n", "snapshot_chunk: 20\n    snapshot_mode: incremental\n")
    )
    caplog.set_level(logging.INFO, logger="liberator")
    with DaemonThread(config):
        wait_for(lambda: len(read_topic(kafka_bootstrap, registry_url, topics["b"])) == 100, what="b read again")
        wait_for(lambda: _idle(config), what="the backfill to finish")
        db.run("UPDATE a SET version = 2 WHERE id = 1")
        wait_for(lambda: len(read_topic(kafka_bootstrap, registry_url, topics["a"])) == 51, what="a streamed")
    again = read_topic(kafka_bootstrap, registry_url, topics["b"])[50:]
    assert [r["key"]["id"] for r in again] == list(range(1, 51))
    assert all(r["value"]["source"]["snapshot"] for r in again)
    assert read_topic(kafka_bootstrap, registry_url, topics["a"])[50]["value"]["op"] == "u"
    assert "reading public.b in chunks while streaming" in caplog.text  # not a new consistent read of b
