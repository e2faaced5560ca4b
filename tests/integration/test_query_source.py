"""The query-based source against real PostgreSQL and MariaDB, through a real broker and registry."""

from __future__ import annotations

import datetime as dt
import decimal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from liberator.capture import datum_events
from liberator.config import load_config
from liberator.envelope import Envelope
from liberator.events import ChangeEvent
from liberator.runtime import build_source
from tests.integration.legacy_db import LegacyDb
from tests.support import DaemonThread, app_config, read_topic, wait_for


@pytest.fixture(params=["postgresql", "mariadb"])
def legacy(request: pytest.FixtureRequest) -> LegacyDb:
    url = request.getfixturevalue("pg_url" if request.param == "postgresql" else "mysql_url")
    return LegacyDb(url, request.param)


def source_yaml(legacy: LegacyDb, tables: str = "[orders]", extra: str = "") -> str:
    # The broker lives for the whole session and cannot delete topics: each test gets its own names.
    return (
        f'  - name: legacy\n    topic: "{legacy.prefix}.{{schema}}.{{table}}"\n'
        f"    type: query\n    url: {legacy.url}\n    tables: {tables}\n"
        f"    cursor: [updated_at, id]\n    poll_interval: 200ms\n    safety_delay: 500ms\n{extra}"
    )


def topic_of(legacy: LegacyDb, table: str = "orders") -> str:
    return f"{legacy.prefix}.{legacy.schema}.{table}"


def test_snapshot_then_incremental_updates(
    legacy: LegacyDb, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    legacy.create_orders()
    for i in range(1, 251):
        legacy.insert_order(i, total=f"{i}.25")
    config = app_config(tmp_path, kafka_bootstrap, registry_url, source_yaml(legacy, extra="    batch_size: 40\n"))
    topic = topic_of(legacy)
    with DaemonThread(config):
        records = read_topic(kafka_bootstrap, registry_url, topic, expect=250)
        assert [r["key"] for r in records] == [{"id": i} for i in range(1, 251)]
        assert records[9]["value"] == {
            "id": 10,
            "customer": "c10",
            "total": "10.25",
            "qty": 1,
            "updated_at": records[9]["value"]["updated_at"],
        }
        # Kafka's record time is the row's cursor timestamp, and the source emits in that order.
        stamps = [r["timestamp"] for r in records]
        assert stamps == sorted(stamps)
        assert records[0]["timestamp"][:19] == records[0]["value"]["updated_at"][:19]

        legacy.run(f"UPDATE orders SET qty = 7, updated_at = {legacy.now} WHERE id = 3")
        legacy.insert_order(251, total="99999999.99")
        more = read_topic(kafka_bootstrap, registry_url, topic, expect=252)[250:]
        assert [(r["key"]["id"], r["value"]["qty"], r["value"]["total"]) for r in more] == [
            (3, 7, "3.25"),
            (251, 1, "99999999.99"),
        ]


def test_safety_delay_catches_a_late_commit_with_an_older_timestamp(
    legacy: LegacyDb, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    legacy.create_orders()
    legacy.insert_order(1)
    extra = "    safety_delay: 3s\n"
    config = app_config(
        tmp_path,
        kafka_bootstrap,
        registry_url,
        source_yaml(legacy).replace("    safety_delay: 500ms\n", "") + extra,
    )
    with DaemonThread(config):
        read_topic(kafka_bootstrap, registry_url, topic_of(legacy), expect=1)
        with legacy.engine.connect() as slow:
            slow.begin()
            slow.execute(sa.text(f"INSERT INTO orders VALUES (2, 'late', 1.00, 1, {legacy.now})"))
            time.sleep(0.3)  # the scenario, not a wait: row 3's timestamp is later than row 2's
            legacy.insert_order(3)  # newer timestamp, committed first
            # The scenario: polls pass while 2 is uncommitted. Fewer polls on a slow machine only weaken the
            # test; it stays valid while row 2 commits within the 3s delay.
            time.sleep(1.0)
            slow.commit()
        records = read_topic(kafka_bootstrap, registry_url, topic_of(legacy), expect=3, timeout=20)
    assert [r["key"]["id"] for r in records] == [1, 2, 3]


def test_without_safety_delay_the_late_commit_is_lost(
    legacy: LegacyDb, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    """The counterpart of the test above: it shows the delay is what saves the late row."""
    legacy.create_orders()
    legacy.insert_order(1)
    config = app_config(
        tmp_path,
        kafka_bootstrap,
        registry_url,
        source_yaml(legacy).replace("safety_delay: 500ms", "safety_delay: 0s"),
    )
    with DaemonThread(config):
        read_topic(kafka_bootstrap, registry_url, topic_of(legacy), expect=1)
        with legacy.engine.connect() as slow:
            slow.begin()
            slow.execute(sa.text(f"INSERT INTO orders VALUES (2, 'late', 1.00, 1, {legacy.now})"))
            time.sleep(0.3)  # the scenario, not a wait: row 3's timestamp is later than row 2's
            legacy.insert_order(3)
            wait_for(lambda: len(read_topic(kafka_bootstrap, registry_url, topic_of(legacy))) >= 2)
            slow.commit()
        # Row 4 comes after the commit: once it is on the topic, the polls that could have read row 2 are done.
        legacy.insert_order(4)
        records = read_topic(kafka_bootstrap, registry_url, topic_of(legacy), expect=3)
        records = read_topic(kafka_bootstrap, registry_url, topic_of(legacy))
    assert [r["key"]["id"] for r in records] == [1, 3, 4]


def test_several_tables_merge_in_timestamp_order(legacy: LegacyDb, tmp_path: Path) -> None:
    legacy.create_orders("orders")
    legacy.create_orders("refunds")
    for i in range(1, 61):
        legacy.insert_order(i, table="orders" if i % 3 else "refunds")
    config = app_config(
        tmp_path,
        "127.0.0.1:1",
        "http://127.0.0.1:1",
        source_yaml(legacy, tables="[orders, refunds]", extra="    batch_size: 7\n"),
    )
    source_config = load_config(config).sources[0]
    stop = threading.Event()
    source = build_source(source_config, "test", stop)
    events: list[ChangeEvent] = []
    try:
        for item in datum_events(source.read(None), Envelope.state):
            if isinstance(item, ChangeEvent):
                events.append(item)
            if len(events) == 60:
                stop.set()
    finally:
        source.close()
    assert sorted(e.key["id"] for e in events) == list(range(1, 61))
    assert [e.key["id"] for e in events] == list(range(1, 61))  # inserted in id order, one at a time
    assert [e.timestamp_ms for e in events] == sorted(e.timestamp_ms for e in events)
    assert {e.stream.topic for e in events} == {topic_of(legacy, "orders"), topic_of(legacy, "refunds")}


def test_restart_after_clean_stop_resumes_without_loss_or_duplicates(
    legacy: LegacyDb, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    legacy.create_orders()
    for i in range(1, 21):
        legacy.insert_order(i)
    config = app_config(tmp_path, kafka_bootstrap, registry_url, source_yaml(legacy))
    topic = topic_of(legacy)
    with DaemonThread(config) as daemon:
        read_topic(kafka_bootstrap, registry_url, topic, expect=20)
        assert daemon.stop() == 0
    for i in range(21, 31):
        legacy.insert_order(i)
    legacy.run(f"UPDATE orders SET qty = 2, updated_at = {legacy.now} WHERE id = 5")
    with DaemonThread(config) as daemon:
        read_topic(kafka_bootstrap, registry_url, topic, expect=31)
        # Row 31 comes later: once it is on the topic, polls after the resumed position have run, and any
        # row they read again would be on the topic before it.
        legacy.insert_order(31)
        read_topic(kafka_bootstrap, registry_url, topic, expect=32)
        assert daemon.stop() == 0
    records = read_topic(kafka_bootstrap, registry_url, topic)
    assert [r["key"]["id"] for r in records] == [*range(1, 31), 5, 31]
    assert records[30]["value"]["qty"] == 2  # the update of row 5


def test_incompatible_schema_change_stops_the_source_and_loses_nothing(
    legacy: LegacyDb, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    legacy.create_orders()
    legacy.insert_order(1)
    config = app_config(
        tmp_path, kafka_bootstrap, registry_url, source_yaml(legacy, extra="    schema_refresh: 200ms\n")
    )
    topic = topic_of(legacy)
    with DaemonThread(config) as daemon:
        read_topic(kafka_bootstrap, registry_url, topic, expect=1)
        legacy.run(legacy.change_type_to_text("orders", "qty"))
        legacy.run(f"UPDATE orders SET qty = 'many', updated_at = {legacy.now} WHERE id = 1")
        assert daemon.wait(30) == 1
        status = daemon.status("legacy")
    assert status.state == "failed"
    assert f"{topic}-value" in status.error and "refused the new schema" in status.error
    assert "BACKWARD" in status.error and "qty" in status.error
    assert "\n" not in status.error
    assert len(read_topic(kafka_bootstrap, registry_url, topic)) == 1  # nothing published with the new shape
    # The stored position still points before the refused change, so a fixed schema replays it.
    offsets = (tmp_path / "offsets.json").read_text()
    assert "orders" in offsets


def test_query_option_captures_a_select_with_named_key(
    legacy: LegacyDb, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    legacy.create_orders()
    for i in range(1, 6):
        legacy.insert_order(i, total=f"{i}.00", qty=i)
    tables = (
        "\n      - name: big_orders\n        key: [id]\n"
        '        query: "SELECT id, total * qty AS amount, updated_at FROM orders WHERE qty >= 3"'
    )
    config = app_config(tmp_path, kafka_bootstrap, registry_url, source_yaml(legacy, tables=tables))
    topic = topic_of(legacy, "big_orders")
    with DaemonThread(config):
        records = read_topic(kafka_bootstrap, registry_url, topic, expect=3)
    assert [(r["key"]["id"], decimal.Decimal(r["value"]["amount"])) for r in records] == [
        (3, decimal.Decimal(9)),
        (4, decimal.Decimal(16)),
        (5, decimal.Decimal(25)),
    ]


def test_wrong_password_is_one_fatal_line(
    legacy: LegacyDb, tmp_path: Path, kafka_bootstrap: str, registry_url: str, request: pytest.FixtureRequest
) -> None:
    server: Any = request.getfixturevalue("postgres_server" if legacy.kind == "postgresql" else "mariadb_server")
    server.create_user("app", "right-password")
    url = sa.make_url(legacy.url).set(username="app", password="wrong-password")
    bad = LegacyDb(url.render_as_string(hide_password=False), legacy.kind)
    config = app_config(tmp_path, kafka_bootstrap, registry_url, source_yaml(bad))
    with DaemonThread(config) as daemon:
        assert daemon.wait(30) == 1
        error = daemon.status("legacy").error
    assert "refused the credentials" in error and "wrong-password" not in error and "\n" not in error


def test_a_lost_database_connection_is_retried_and_resumes_without_loss(
    pg_url: str, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    legacy = LegacyDb(pg_url, "postgresql")
    legacy.create_orders()
    legacy.insert_order(1)
    config = app_config(tmp_path, kafka_bootstrap, registry_url, source_yaml(legacy))
    topic = topic_of(legacy)
    with DaemonThread(config) as daemon:
        read_topic(kafka_bootstrap, registry_url, topic, expect=1)
        database = sa.make_url(pg_url).database
        # What a database restart or a network cut looks like to the source: its session dies.
        legacy.run(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :db AND pid <> pg_backend_pid()",
            db=database,
        )
        status = daemon.status("legacy")
        wait_for(lambda: status.retries >= 1, what="the source to notice and retry")
        # Idle, it reads again: the retry is over and its error is not left behind.
        wait_for(lambda: status.state == "running" and status.error is None, what="the source reading again")
        legacy.insert_order(2)
        records = read_topic(kafka_bootstrap, registry_url, topic, expect=2, timeout=30)
    assert [r["key"]["id"] for r in records] == [1, 2]


def _plan(conn: sa.Connection, query: sa.Select[Any]) -> list[Any]:
    """The database's EXPLAIN of a query, with the query's own bound values."""
    compiled = query.compile(dialect=conn.dialect)
    params = compiled.construct_params()
    args: Any = tuple(params[name] for name in compiled.positiontup or ()) if compiled.positional else params
    return list(conn.exec_driver_sql(f"EXPLAIN {compiled}", args).all())


def test_a_page_after_a_cursor_is_one_index_range_read(legacy: LegacyDb, tmp_path: Path) -> None:
    """The keyset condition is written in the form each database reads as a range of the (updated_at, id)
    index; MariaDB scans the whole index for the row-value form `(updated_at, id) > (...)` instead."""
    legacy.create_orders()
    with legacy.engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO orders (id, customer, total, qty, updated_at) VALUES (:id, 'c', 1, 1, :at)"),
            [{"id": i, "at": dt.datetime(2024, 1, 1) + dt.timedelta(seconds=i // 2)} for i in range(1, 20_001)],
        )
        conn.execute(sa.text("ANALYZE orders" if legacy.kind == "postgresql" else "ANALYZE TABLE orders"))
    config = app_config(tmp_path, "127.0.0.1:1", "http://127.0.0.1:1", source_yaml(legacy))
    source = build_source(load_config(config).sources[0], "test", threading.Event())
    conn, readers = source._connect()  # type: ignore[attr-defined]
    try:
        (reader,) = readers
        middle = (dt.datetime(2024, 1, 1) + dt.timedelta(seconds=5000), 10_000)
        plan = _plan(conn, reader.page(middle, None, 500))
        if legacy.kind == "postgresql":
            text = "\n".join(row[0] for row in plan)
            assert "Index Scan using orders_cursor" in text and "Index Cond: (ROW(updated_at, id) >" in text, text
        else:
            (row,) = plan
            assert (row[3], row[5]) == ("range", "orders_cursor"), row  # type, key
            exprs = reader._cursor_exprs()
            row_values = reader.select().where(sa.tuple_(*exprs) > sa.tuple_(*map(sa.literal, middle)))
            (scan,) = _plan(conn, row_values.order_by(*exprs).limit(500))
            assert scan[3] != "range", scan  # the form it replaces: not a range read
        assert [r[0] for r in conn.execute(reader.page(middle, None, 3))] == [10_001, 10_002, 10_003]
    finally:
        conn.close()
        source.close()
