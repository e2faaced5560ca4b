"""The postgres_wal source against a real PostgreSQL 15: snapshot, streaming, positions, restarts."""

from __future__ import annotations

import datetime
import random
import threading

import psycopg
import pytest

from liberator.connectors.postgres_wal.position import WalPosition
from liberator.errors import FatalSourceError
from liberator.events import Checkpoint
from tests.integration.postgres_wal_support import Run, WalDb, env, values
from tests.support import NotYet, wait_for


@pytest.fixture
def db(pg_url: str) -> WalDb:
    return WalDb(pg_url)


def test_snapshot_then_streams_inserts_updates_deletes(db: WalDb) -> None:
    db.run("CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, qty int)")
    db.run("INSERT INTO items SELECT g, 'n' || g, g FROM generate_series(1, 25) g")
    with Run(db.config(["items"], snapshot_chunk=10)) as run:
        run.wait_events(25)
        db.run("INSERT INTO items VALUES (100, 'new', NULL)")
        db.run("UPDATE items SET qty = 7 WHERE id = 3")
        db.run("DELETE FROM items WHERE id = 4")
        events = run.wait_events(29)
    snapshot = values(events[:25])
    assert snapshot[0] == ("r", {"id": 1}, {"id": 1, "name": "n1", "qty": 1})
    assert [k["id"] for _op, k, _v in snapshot] == list(range(1, 26))
    assert values(events[25:]) == [
        ("c", {"id": 100}, {"id": 100, "name": "new", "qty": None}),
        ("u", {"id": 3}, {"id": 3, "name": "n3", "qty": 7}),
        ("d", {"id": 4}, None),
        ("-", {"id": 4}, None),
    ]
    update = events[26].value
    assert isinstance(update, dict)
    assert update["transaction"]["order"] == 1
    assert update["source"]["table"] == "items" and update["source"]["position"]
    assert all(e.position is None for e in events)
    checkpoints = [i for i in run.items if isinstance(i, Checkpoint)]
    assert checkpoints, "commits yield checkpoints"


def _apply(events: list, state: dict | None = None) -> dict:  # type: ignore[type-arg]
    """The table a consumer would hold after applying change events in order."""
    state = {} if state is None else state
    for e in events:
        if e.value is None:
            continue
        key = tuple(e.key.values())
        if env(e)["op"] in ("r", "c", "u"):
            state[key] = env(e)["after"]
        elif env(e)["op"] == "d":
            state.pop(key, None)
    return state


def _versions_increase_per_key(events: list) -> None:  # type: ignore[type-arg]
    seen: dict[tuple[object, ...], int] = {}
    for e in events:
        if e.value is None or env(e)["after"] is None:
            continue
        key = tuple(e.key.values())
        v = env(e)["after"]["v"]
        assert v > seen.get(key, -1), f"key {key}: version {v} after {seen.get(key)} (reordered or replayed)"
        seen[key] = v


class Writer:
    """Concurrent application writes: each transaction bumps one row's version, inserts or deletes a row."""

    def __init__(self, db: WalDb, tables: list[str], first_new_id: int) -> None:
        self.conn = psycopg.connect(db.url, autocommit=True)
        self.tables = tables
        self.next_id = first_new_id
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.count = 0

    def _run(self) -> None:
        rng = random.Random(7)
        while not self.stop.is_set():
            table = rng.choice(self.tables)
            roll = rng.random()
            if roll < 0.7:
                self.conn.execute(f"UPDATE {table} SET v = v + 1 WHERE id = %s", (rng.randint(1, self.next_id),))
            elif roll < 0.9:
                self.conn.execute(f"INSERT INTO {table} VALUES (%s, 0)", (self.next_id,))
                self.next_id += 1
            else:
                self.conn.execute(f"DELETE FROM {table} WHERE id = %s", (rng.randint(1, self.next_id),))
            self.count += 1

    def __enter__(self) -> Writer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)
        self.conn.close()


def _db_state(db: WalDb, table: str) -> dict:  # type: ignore[type-arg]
    return {(r[0],): {"id": r[0], "v": r[1]} for r in db.rows(f"SELECT id, v FROM {table}")}


def test_snapshot_with_concurrent_writes_loses_nothing_and_keeps_per_key_order(db: WalDb) -> None:
    db.run("CREATE TABLE acc (id int PRIMARY KEY, v int NOT NULL)")
    db.run("INSERT INTO acc SELECT g, 0 FROM generate_series(1, 4000) g")
    with Writer(db, ["acc"], 4001) as writer, Run(db.config(["acc"], snapshot_chunk=200)) as run:
        run.wait(lambda: run.source.phase == "streaming" and writer.count > 300, what="streaming under writes")
        writer.stop.set()
        writer.thread.join(10)
        expected = _db_state(db, "acc")
        run.wait(lambda: _apply(run.events) == expected, what="the database's state")
    _versions_increase_per_key(run.events)
    assert writer.count > 300


def _one_table_read(item: object) -> bool:
    return isinstance(item, Checkpoint) and isinstance(item.position, WalPosition) and len(item.position.tables) == 1


def test_snapshot_resumed_after_a_crash_reads_the_rest_at_a_new_point(db: WalDb) -> None:
    db.run("CREATE TABLE a (id int PRIMARY KEY, v int NOT NULL)")
    db.run("CREATE TABLE b (id int PRIMARY KEY, v int NOT NULL)")
    db.run("INSERT INTO a SELECT g, 0 FROM generate_series(1, 2000) g")
    db.run("INSERT INTO b SELECT g, 0 FROM generate_series(1, 2000) g")
    config = db.config(["a", "b"], snapshot_chunk=100)
    with Writer(db, ["a", "b"], 2001) as writer:
        with Run(config, ack=False) as first:  # a crash: nothing it read later was acknowledged
            first.wait(lambda: any(_one_table_read(i) for i in first.items), what="table a read")
        # The crash: only what came before table a's checkpoint was published and stored.
        cut = next(n for n, i in enumerate(first.items) if _one_table_read(i))
        survived = first.items[: cut + 1]
        start = survived[-1].position
        assert isinstance(start, WalPosition) and not start.snapshot_done
        written = writer.count
        wait_for(lambda: writer.count >= written + 20, what="more writes between the crash and the restart")
        with Run(config, start=start) as second:
            second.wait(lambda: second.source.phase == "streaming" and writer.count > 400, what="streaming again")
            writer.stop.set()
            writer.thread.join(10)
            expected_a, expected_b = _db_state(db, "a"), _db_state(db, "b")
            events = [i for i in survived if not isinstance(i, Checkpoint)]

            def caught_up() -> bool:
                combined = events + second.events
                a = _apply([e for e in combined if e.stream.origin == "public.a"])
                b = _apply([e for e in combined if e.stream.origin == "public.b"])
                return a == expected_a and b == expected_b

            second.wait(caught_up, what="both tables' state")
    combined = events + second.events
    _versions_increase_per_key([e for e in combined if e.stream.origin == "public.a"])
    _versions_increase_per_key([e for e in combined if e.stream.origin == "public.b"])
    tables = dict(second.position.tables) if second.position else {}
    assert "public.a" not in tables or tables["public.a"] <= start.lsn  # a is not read again


def test_restart_resumes_from_the_stored_lsn_without_loss_or_repeats(db: WalDb) -> None:
    db.run("CREATE TABLE t (id int PRIMARY KEY, note text)")
    config = db.config(["t"])
    with Run(config) as first:
        first.wait(lambda: first.source.phase == "streaming", what="streaming")
        for i in range(1, 6):
            db.run("INSERT INTO t VALUES (%s, 'first')", (i,))
        first.wait_events(5)
        first.wait(lambda: first.position is not None and first.position.lsn > 0, what="a checkpoint")
    start = first.position
    assert start is not None
    with db.conn.transaction():
        db.run("INSERT INTO t VALUES (6, 'while stopped')")
        db.run("UPDATE t SET note = 'changed' WHERE id = 1")
    db.run("DELETE FROM t WHERE id = 2")
    with Run(config, start=start) as second:
        events = second.wait_events(4)
        # A later row: once it arrives, anything streamed again from before the stored LSN would be before it.
        db.run("INSERT INTO t VALUES (7, 'later')")
        second.wait_events(5)
    assert values(second.events) == [
        ("c", {"id": 6}, {"id": 6, "note": "while stopped"}),
        ("u", {"id": 1}, {"id": 1, "note": "changed"}),
        ("d", {"id": 2}, None),
        ("-", {"id": 2}, None),
        ("c", {"id": 7}, {"id": 7, "note": "later"}),
    ]
    first_tx = events[0].value
    assert isinstance(first_tx, dict) and env(events[1])["transaction"]["id"] == first_tx["transaction"]["id"]
    assert [env(e)["transaction"]["order"] for e in events[:2]] == [1, 2]


def test_truncate_warns_by_default_and_stops_when_asked(db: WalDb, caplog: pytest.LogCaptureFixture) -> None:
    db.run("CREATE TABLE t (id int PRIMARY KEY)")
    db.run("INSERT INTO t VALUES (1)")
    with Run(db.config(["t"])) as run:
        run.wait_events(1)
        db.run("TRUNCATE t")
        db.run("INSERT INTO t VALUES (2)")
        run.wait_events(2)
    assert "TRUNCATE of public.t" in caplog.text
    db2 = WalDb(db.url)
    db2.run("INSERT INTO t VALUES (3)")
    with Run(db2.config(["t"], truncate="fail", snapshot="never")) as run:
        run.wait(lambda: run.source.phase == "streaming", what="streaming")
        db.run("TRUNCATE t")
        with pytest.raises(FatalSourceError, match=r"TRUNCATE of public\.t.*truncate: warn"):
            run.wait(lambda: False, timeout=10)


def test_unchanged_toast_values_are_placeholders_or_the_old_value(db: WalDb) -> None:
    rng = random.Random(1)
    big = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(20_000))  # incompressible
    db.run("CREATE TABLE docs (id int PRIMARY KEY, body text NOT NULL, n int)")
    db.run("CREATE TABLE full_docs (id int PRIMARY KEY, body text NOT NULL, n int)")
    db.run("ALTER TABLE full_docs REPLICA IDENTITY FULL")
    with Run(db.config(["docs", "full_docs"], snapshot="never")) as run:
        run.wait(lambda: run.source.phase == "streaming", what="streaming")
        db.run("INSERT INTO docs VALUES (1, %s, 0)", (big,))
        db.run("INSERT INTO full_docs VALUES (1, %s, 0)", (big,))
        db.run("UPDATE docs SET n = 1")
        db.run("UPDATE full_docs SET n = 1")
        events = run.wait_events(4)
    placeholder, known = events[2], events[3]
    assert env(placeholder)["after"] == {"id": 1, "body": "__liberator_unchanged_toast__", "n": 1}
    assert placeholder.headers == (("liberator.unchanged_toast", b"body"),)
    assert env(placeholder)["before"] is None
    assert env(known)["after"] == {"id": 1, "body": big, "n": 1}
    assert env(known)["before"] == {"id": 1, "body": big, "n": 0}
    assert known.headers == ()


def test_slot_advances_while_captured_tables_idle_and_others_busy(db: WalDb) -> None:
    db.run("CREATE TABLE captured (id int PRIMARY KEY)")
    db.run("CREATE TABLE busy (id serial PRIMARY KEY, x int)")
    with Run(db.config(["captured"], snapshot="never")) as run:
        run.wait(lambda: run.source.phase == "streaming", what="streaming")
        before = db.slot()

        def busy_and_advanced() -> bool:
            db.run("INSERT INTO busy (x) SELECT g FROM generate_series(1, 200) g")
            db.run("CHECKPOINT")  # logs the running transactions the slot's restart_lsn moves to
            now = db.slot()
            return bool(
                now["restart_lsn"] > before["restart_lsn"]
                and now["confirmed_flush_lsn"] > before["confirmed_flush_lsn"]
            )

        # Fails if the slot holds WAL (restart_lsn) or the acknowledged LSN while captured tables are idle.
        wait_for(busy_and_advanced, interval=0.3, what="the slot to advance while only other tables change")
        assert run.events == []


def test_heartbeat_advances_the_slot_of_an_idle_database(db: WalDb) -> None:
    db.run("CREATE TABLE quiet (id int PRIMARY KEY)")
    with Run(db.config(["quiet"], snapshot="never", heartbeat=0.3)) as run:
        run.wait(lambda: run.source.phase == "streaming", what="streaming")
        before = db.slot()["confirmed_flush_lsn"]
        run.wait(lambda: db.slot()["confirmed_flush_lsn"] > before, timeout=20, what="the slot to advance")


def test_unacknowledged_changes_are_not_confirmed_to_the_server(db: WalDb) -> None:
    db.run("CREATE TABLE t (id int PRIMARY KEY)")
    with Run(db.config(["t"], snapshot="never"), ack=False) as run:
        run.wait(lambda: run.source.phase == "streaming", what="streaming")
        confirmed = db.slot()["confirmed_flush_lsn"]
        for i in range(20):
            db.run("INSERT INTO t VALUES (%s)", (i,))
        run.wait_events(20)
        # Status updates after the events (every status_interval, 1 s) carry the acknowledged LSN only.
        heard = db.rows("SELECT now()")[0][0]
        wait_for(lambda: _reply_time(db) > heard, what="a status update after the events")
        assert db.slot()["confirmed_flush_lsn"] == confirmed
        run.source.acknowledged(run.position)  # type: ignore[arg-type]
        run.wait(lambda: db.slot()["confirmed_flush_lsn"] > confirmed, what="the acknowledged LSN to be confirmed")


def _reply_time(db: WalDb) -> datetime.datetime:
    """When the server last heard a standby status update on the test's slot."""
    rows = db.rows(
        "SELECT r.reply_time FROM pg_stat_replication r JOIN pg_replication_slots s ON s.active_pid = r.pid "
        "WHERE s.slot_name = %s",
        (db.tag,),
    )
    if not rows or rows[0][0] is None:
        raise NotYet("no walsender for the slot yet")
    return rows[0][0]


def test_initial_only_reads_once_and_finishes(db: WalDb) -> None:
    db.run("CREATE TABLE t (id int PRIMARY KEY)")
    db.run("INSERT INTO t SELECT g FROM generate_series(1, 30) g")
    with Run(db.config(["t"], snapshot="initial_only", snapshot_chunk=7)) as run:
        run.wait(lambda: not run.thread.is_alive(), what="the source to finish")
    assert [e.key["id"] for e in run.events] == list(range(1, 31))
    assert run.position is not None and run.position.snapshot_done
    assert db.rows("SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s", (db.tag,)) == [(0,)]


def test_a_dropped_slot_stops_the_source_instead_of_skipping_changes(db: WalDb) -> None:
    db.run("CREATE TABLE t (id int PRIMARY KEY)")
    with Run(db.config(["t"])) as run:
        run.wait(lambda: run.source.phase == "streaming", what="streaming")
    start = run.position
    # The walsender leaves a moment after its client closed: the slot can be dropped once it is inactive.
    run.wait(lambda: db.slot()["active_pid"] is None, what="the slot to be released")
    db.run("SELECT pg_drop_replication_slot(%s)", (db.tag,))
    with Run(db.config(["t"]), start=start) as again, pytest.raises(FatalSourceError, match=r"is gone.*offsets reset"):
        again.wait(lambda: False, timeout=10)
