"""The postgres_wal source against a real PostgreSQL 15: snapshot, streaming, positions, restarts."""

from __future__ import annotations

import pytest

from liberator.events import Checkpoint
from tests.integration.postgres_wal_support import Run, WalDb, values


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
