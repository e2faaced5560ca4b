"""Outbox behaviour under concurrency: late commits, cleanup modes, two daemons on one table, NOTIFY."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path
from typing import Any, cast

import pytest
import sqlalchemy as sa

from liberator import sqldb
from liberator.config import load_config
from liberator.connectors.outbox.claim import InFlight
from liberator.connectors.outbox.config import OutboxSourceConfig
from liberator.connectors.outbox.ddl import outbox_ddl
from liberator.connectors.outbox.dialects import queue_session
from liberator.connectors.outbox.queries import OutboxQueries
from liberator.connectors.outbox.source import OutboxSource
from liberator.registry.client import RegistryClient
from liberator.runtime import build_source
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
    shared = kind != "sqlite" and locking == "auto"
    with DaemonThread(configs[0]) as one, DaemonThread(configs[1]) as two:
        if shared:  # the later one waits out the other's answer about who claims (presence) first
            wait_for(
                lambda: all(daemon.status("ob").phase in ("polling", "publishing") for daemon in (one, two)),
                what="both daemons to claim",
            )
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
    if not shared:
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


@pytest.mark.parametrize("json_table", [True, False], ids=["json_table", "literals"])
@pytest.mark.parametrize("cleanup", ["delete", "mark"])
def test_mariadb_cleanup_is_one_statement_of_primary_key_lookups(
    mysql_url: str, cleanup: str, json_table: bool
) -> None:
    """The cleanup reads the ids first and finds each row by primary key (eq_ref), whatever the size of the
    outbox: a range or a scan of the outbox would wait on rows another daemon's claim holds (deadlocks)."""
    db = AppDb(mysql_url, "mariadb")
    db.create_outbox(cleanup=cleanup)
    ids = [db.insert(str(n), order(n)) for n in range(12)]
    config = OutboxSourceConfig.model_validate(
        {"name": "ob", "type": "outbox", "url": mysql_url, "topic": "t.{aggregate_type}", "cleanup": cleanup}
    )
    queries = OutboxQueries(config, "mysql", json_table=json_table)
    statements = queries.cleanup(ids[2:7])
    assert len(statements) == 1, "one statement, not one per row"
    statement, params = statements[0]
    with db.engine.begin() as conn:
        plan = conn.execute(sa.text(f"EXPLAIN {statement}"), params).mappings().all()
        outbox = [step for step in plan if step["table"] == "o"]
        assert plan[0]["table"] == ("gone" if json_table else "<derived2>"), plan
        assert [(s["type"], s["key"]) for s in outbox] == [("eq_ref", "PRIMARY")], plan
        conn.execute(statement, params)
    left = db.count() if cleanup == "delete" else db.count("published_at IS NULL")
    assert left == 7
    statement, params = queries.rows_by_id(ids[:2] + ids[8:])
    with db.engine.connect() as conn:
        rows = conn.execute(statement, params).mappings().all()
    assert [row["id"] for row in rows] == ids[:2] + ids[8:], "the rows by id, in publishing order"


def test_a_wide_in_flight_window_gets_a_connection_for_every_claim(
    pg_url: str, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    """With skip_locked each batch in flight holds its claim's connection until Kafka acknowledges it: the
    pool must hold max_in_flight of them besides the claim's and the presence lock's (the default pool of
    5 + 10 ran dry at max_in_flight 16 and waited 30 s for a connection)."""
    db = AppDb(pg_url, "postgresql")
    db.create_outbox()
    topic = f"{db.prefix}.order"
    register_order_schema(registry_url, topic)
    for n in range(400):
        db.insert(str(n % 7), order(n))
    config = app_config(
        tmp_path,
        kafka_bootstrap,
        registry_url,
        outbox_yaml(db, "    batch_size: 1\n    max_in_flight: 32\n"),
    )
    # Kafka holds each batch a while (linger), so the window fills up.
    config.write_text(config.read_text().replace("kafka:\n", "kafka:\n  settings:\n    linger.ms: 500\n", 1))
    with DaemonThread(config) as daemon:
        wait_for(lambda: db.count() == 0, timeout=60, what="the outbox to empty")
        assert daemon.status("ob").retries == 0
        assert daemon.status("ob").error is None
    assert len(read_topic(kafka_bootstrap, registry_url, topic, expect=400)) == 400


@pytest.mark.parametrize("cleanup", ["delete", "mark"])
def test_postgresql_claims_and_cleanups_use_the_indexes_whatever_the_statistics_say(pg_url: str, cleanup: str) -> None:
    """A backlog grown since the last ANALYZE: the planner still thinks the outbox small, and planned a sort
    of the whole outbox for each claim and a scan of it for each cleanup. The source's sessions do not."""
    db = AppDb(pg_url, "postgresql")
    db.create_outbox(cleanup=cleanup)
    with db.engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE outbox SET (autovacuum_enabled = false)"))
        conn.execute(sa.text("ANALYZE outbox"))  # the statistics of an empty outbox
        conn.execute(
            sa.text("INSERT INTO outbox (aggregate_type, aggregate_id, event_type, payload) VALUES ('o', :a, 'E', :p)"),
            [{"a": str(n), "p": "{}"} for n in range(5000)],
        )
    config = OutboxSourceConfig.model_validate(
        {"name": "ob", "type": "outbox", "url": pg_url, "topic": "t.{aggregate_type}", "cleanup": cleanup}
    )
    queries = OutboxQueries(config, "postgresql")
    plain = sqldb.create_engine(pg_url)
    source_like = sqldb.create_engine(pg_url)
    queue_session(source_like)

    def plans(engine: sa.Engine) -> tuple[str, str]:
        """The plans of the claim and of the cleanup of the claimed rows, as the source sends them."""

        def explained(_conn: Any, _cursor: Any, sql: str, params: Any, _context: Any, _many: bool) -> Any:
            return f"EXPLAIN {sql}", params

        with engine.connect() as conn:
            claim = queries.claim(500, skip_locked=True)
            ids = [row.id for row in conn.execute(claim)]
            statement, params = queries.cleanup(ids)[0]
            sa.event.listen(engine, "before_cursor_execute", explained, retval=True)
            try:
                found = ["\n".join(r[0] for r in conn.execute(q, p)) for q, p in ((claim, {}), (statement, params))]
            finally:
                sa.event.remove(engine, "before_cursor_execute", explained)
            conn.rollback()
        return found[0], found[1]

    claim_plan, cleanup_plan = plans(plain)
    assert "Seq Scan" in claim_plan + cleanup_plan, "the statistics no longer mislead: the test shows nothing"
    claim_plan, cleanup_plan = plans(source_like)
    assert "Seq Scan" not in claim_plan and "Sort" not in claim_plan, claim_plan
    assert "Seq Scan" not in cleanup_plan, cleanup_plan
    plain.dispose()
    source_like.dispose()


@pytest.mark.parametrize("cleanup", ["delete", "mark"])
def test_postgresql_cleanup_of_integer_ids_is_one_statement_with_one_array_parameter(pg_url: str, cleanup: str) -> None:
    """However many ids a batch has: an IN list of hundreds of placeholders was parsed again for every batch
    (too long for psycopg's query cache) and cut into statements of 1000."""
    db = AppDb(pg_url, "postgresql")
    db.create_outbox(cleanup=cleanup)
    with db.engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO outbox (aggregate_type, aggregate_id, event_type, payload) VALUES ('o', :a, 'E', :p)"),
            [{"a": str(n), "p": "{}"} for n in range(2600)],
        )
        ids = [int(i) for i in conn.execute(sa.text("SELECT id FROM outbox ORDER BY id")).scalars()]
    config = OutboxSourceConfig.model_validate(
        {"name": "ob", "type": "outbox", "url": pg_url, "topic": "t.{aggregate_type}", "cleanup": cleanup}
    )
    statements = OutboxQueries(config, "postgresql").cleanup(ids[:2500])
    assert len(statements) == 1 and list(statements[0][1]) == ["outbox_ids"], statements[0][1].keys()
    with db.engine.begin() as conn:
        conn.execute(*statements[0])
    left = db.count() if cleanup == "delete" else db.count("published_at IS NULL")
    assert left == 100


def test_mysql_claims_run_at_read_committed_without_a_set_per_claim(
    mysql_url: str, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    """No gap locks block the application's inserts during a claim, and the isolation level is the
    session's own: set per claim, it cost a SET and its reset (two round trips) every time."""
    db = AppDb(mysql_url, "mariadb")
    db.create_outbox()
    register_order_schema(registry_url, f"{db.prefix}.order")
    for n in range(4):
        db.insert(str(n), order(n))
    config = load_config(app_config(tmp_path, kafka_bootstrap, registry_url, outbox_yaml(db, "    batch_size: 1\n")))
    source = cast(
        OutboxSource, build_source(config.sources[0], "test", threading.Event(), RegistryClient(registry_url))
    )
    source._open()
    claimer = source._claimer
    assert claimer is not None
    seen = []
    try:
        for _ in range(3):
            claimed = claimer.claim(InFlight())
            assert claimed is not None and claimed.conn is not None
            level, sets = claimed.conn.execute(
                sa.text(
                    "SELECT @@session.tx_isolation, VARIABLE_VALUE FROM information_schema.SESSION_STATUS "
                    "WHERE VARIABLE_NAME = 'COM_SET_OPTION'"
                )
            ).one()
            seen.append((claimed.conn.connection.dbapi_connection, level, int(sets)))
            claimed.conn.rollback()
            claimed.conn.close()  # back to the pool: the next claim takes the same session
    finally:
        source.close()
    assert all(level == "READ-COMMITTED" for _, level, _ in seen), seen
    assert len({id(session) for session, _, _ in seen}) == 1, "one pooled session served every claim"
    assert len({sets for _, _, sets in seen}) == 1, f"SET statements sent between claims: {seen}"
