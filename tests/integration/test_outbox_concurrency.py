"""Outbox behaviour under concurrency: late commits, cleanup modes, two daemons on one table, NOTIFY."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from connectors.outbox.config import OutboxSourceConfig
from connectors.outbox.ddl import outbox_ddl
from connectors.outbox.queries import OutboxQueries
from tests.integration.test_outbox_support import AppDb, app_db, outbox_yaml, register_order_schema
from tests.support import DaemonThread, app_config, read_topic, wait_for

__all__ = ["app_db"]


def order(n: int) -> dict[str, object]:
    return {"order_id": n, "total": "1.00"}


@pytest.mark.parametrize("kind", ["postgresql", "mariadb"])
def test_a_late_commit_with_a_smaller_id_is_not_skipped(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    # (SQLite has one writer at a time, so its ids always commit in order.)
    db = AppDb(request.getfixturevalue("pg_url" if kind == "postgresql" else "mysql_url"), kind)
    db.create_outbox()
    topic = f"{db.prefix}.order"
    register_order_schema(registry_url, topic)
    config = app_config(tmp_path, kafka_bootstrap, registry_url, outbox_yaml(db))
    with DaemonThread(config), db.engine.connect() as slow:
        slow.begin()
        late = db.insert("a", order(1), conn=slow)  # takes the smaller id, commits last
        early = db.insert("b", order(2))
        assert late < early
        first = read_topic(kafka_bootstrap, registry_url, topic, expect=1)
        wait_for(lambda: db.count() == 0, what="the early row to be cleaned up")
        slow.commit()
        both = read_topic(kafka_bootstrap, registry_url, topic, expect=2)
        wait_for(lambda: db.count() == 0, what="the late row to be cleaned up")
    assert [r["headers"]["id"] for r in first] == [str(early)]
    assert [r["headers"]["id"] for r in both] == [str(early), str(late)]


def test_cleanup_mark_keeps_rows_and_never_republishes(
    app_db: AppDb, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    app_db.create_outbox(cleanup="mark")
    topic = f"{app_db.prefix}.order"
    register_order_schema(registry_url, topic)
    for n in range(7):
        app_db.insert(str(n % 3), order(n))
    extra = "    cleanup: mark\n    batch_size: 3\n"
    config = app_config(tmp_path, kafka_bootstrap, registry_url, outbox_yaml(app_db, extra))
    with DaemonThread(config):
        wait_for(lambda: app_db.count("published_at IS NULL") == 0, what="every row to be marked")
        # Row 9 comes later: once it is published, later polls have run, and a marked row they took for
        # unpublished would be on the topic too (the count below).
        app_db.insert("9", order(9))
        records = read_topic(kafka_bootstrap, registry_url, topic, expect=8)
        wait_for(lambda: app_db.count("published_at IS NULL") == 0, what="the new row to be marked")
    assert app_db.count() == 8
    assert sorted(r["value"]["order_id"] for r in records) == [0, 1, 2, 3, 4, 5, 6, 9]
    assert len(read_topic(kafka_bootstrap, registry_url, topic)) == 8


class Writer(threading.Thread):
    """The application: many small transactions, each writing one event of one of 12 aggregates."""

    def __init__(self, db: AppDb, count: int) -> None:
        super().__init__(daemon=True)
        self.db = db
        self.count = count
        self.ids: dict[int, str] = {}

    def run(self) -> None:
        rng = random.Random(5)
        for n in range(self.count):
            aggregate = str(rng.randrange(12))
            self.ids[self.db.insert(aggregate, order(n))] = aggregate
            time.sleep(rng.uniform(0, 0.004))  # the application's pace, not a wait


@pytest.mark.parametrize(
    ("kind", "locking"),
    [
        ("postgresql", "auto"),
        ("mariadb", "auto"),
        ("sqlite", "auto"),
        ("postgresql", "leader"),
        ("mariadb", "leader"),
    ],
)
def test_two_daemons_on_one_table_publish_each_row_once_in_aggregate_order(
    kind: str,
    locking: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    kafka_bootstrap: str,
    registry_url: str,
) -> None:
    if kind == "sqlite":
        db = AppDb(f"sqlite:///{tmp_path}/app.db", "sqlite")
    else:
        db = AppDb(request.getfixturevalue("pg_url" if kind == "postgresql" else "mysql_url"), kind)
    db.create_outbox()
    topic = f"{db.prefix}.order"
    register_order_schema(registry_url, topic)
    writer = Writer(db, 300)
    extra = f"    batch_size: 10\n    locking: {locking}\n"
    configs = []
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        config = app_config(tmp_path / name, kafka_bootstrap, registry_url, outbox_yaml(db, extra), name=name)
        if kind != "sqlite" and locking == "auto":  # SKIP LOCKED: the daemons share the table, no lease
            config.write_text(config.read_text() + 'ha:\n  mode: "off"\n')
        configs.append(config)
    with DaemonThread(configs[0]) as one, DaemonThread(configs[1]) as two:
        writer.start()
        writer.join()
        wait_for(lambda: db.count() == 0, timeout=60, what="both daemons to empty the outbox")
        records = read_topic(kafka_bootstrap, registry_url, topic, expect=300)
        published = [one.status("ob").events_published, two.status("ob").events_published]
        # No deadlock or lost lock made a daemon roll back a published batch (which would publish it again).
        assert one.status("ob").retries == 0 and two.status("ob").retries == 0
    ids = [int(r["headers"]["id"]) for r in records]
    assert len(ids) == 300 and set(ids) == set(writer.ids), "a row was lost or published twice"
    for aggregate in set(writer.ids.values()):
        mine = [i for i in ids if writer.ids[i] == aggregate]
        assert mine == sorted(mine), f"aggregate {aggregate} out of outbox order"
    if kind == "sqlite" or locking == "leader":
        assert sorted(published) == [0, 300]  # one leader; the other stood by
    else:
        assert min(published) > 0 and sum(published) == 300  # both shared the work


def test_notify_wakes_the_source_without_waiting_for_the_poll(
    pg_url: str, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    db = AppDb(pg_url, "postgresql")
    with db.engine.begin() as conn:
        for statement in outbox_ddl("postgresql", notify_channel="outbox_wake").split(";\n\n"):
            conn.execute(sa.text(statement.strip().rstrip(";")))
    topic = f"{db.prefix}.order"
    register_order_schema(registry_url, topic)
    source = outbox_yaml(db).replace("poll_interval: 100ms", "poll_interval: 30s") + "    notify_channel: outbox_wake\n"
    config = app_config(tmp_path, kafka_bootstrap, registry_url, source)
    with DaemonThread(config):
        # The first row is claimed by the first poll; once it is cleaned up the source has nothing left and
        # waits for the next poll, 30 s away, unless a NOTIFY wakes it.
        db.insert("0", order(0))
        read_topic(kafka_bootstrap, registry_url, topic, expect=1, timeout=20)
        wait_for(lambda: db.count() == 0, what="the first row to be cleaned up")
        started = time.monotonic()
        db.insert("1", order(1))
        records = read_topic(kafka_bootstrap, registry_url, topic, expect=2, timeout=20)
        elapsed = time.monotonic() - started
    assert len(records) == 2
    assert elapsed < 10, f"took {elapsed:.1f}s: the NOTIFY did not wake the source"


@pytest.mark.parametrize("cleanup", ["delete", "mark"])
def test_mariadb_cleanup_is_one_statement_of_primary_key_lookups(mysql_url: str, cleanup: str) -> None:
    """The cleanup reads the ids first and finds each row by primary key (eq_ref), whatever the size of the
    outbox: a range or a scan of the outbox would wait on rows another daemon's claim holds (deadlocks)."""
    db = AppDb(mysql_url, "mariadb")
    db.create_outbox(cleanup=cleanup)
    ids = [db.insert(str(n), order(n)) for n in range(12)]
    config = OutboxSourceConfig.model_validate(
        {"name": "ob", "type": "outbox", "url": mysql_url, "topic": "t.{aggregate_type}", "cleanup": cleanup}
    )
    statements = OutboxQueries(config, "mysql").cleanup(ids[2:7])
    assert len(statements) == 1, "one statement, not one per row"
    statement, params = statements[0]
    with db.engine.begin() as conn:
        plan = conn.execute(sa.text(f"EXPLAIN {statement}"), params).mappings().all()
        outbox = [step for step in plan if step["table"] == "o"]
        assert plan[0]["table"] == "<derived2>", plan
        assert [(s["type"], s["key"]) for s in outbox] == [("eq_ref", "PRIMARY")], plan
        conn.execute(statement, params)
    left = db.count() if cleanup == "delete" else db.count("published_at IS NULL")
    assert left == 7
