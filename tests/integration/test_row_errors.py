"""`on_error` on every source kind, with the daemon: a poison row (a value the database accepts and the
converter refuses) stops the source, goes to the dead-letter topic with its raw values and headers, or is
skipped and counted; the stream goes on past it, and a restart does not send the dead letter again.

The poison values, one real one per source:
- postgres_wal: `numeric(10,2)` accepts 'NaN'; an Avro decimal cannot hold it; and an `int[]` accepts a
  two-dimensional array, which the source's text parser refuses before any conversion;
- query (MariaDB): a zero date `0000-00-00` under a permissive sql_mode; no Avro date is that day;
- mysql_binlog (MariaDB): an ENUM given a value it does not have under a permissive sql_mode is stored as
  the empty "error" value '', which is not one of the enum's symbols;
- outbox (PostgreSQL): a JSON payload that does not match its subject's schema.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from liberator_testbed import MySQLInstance
from tests.integration.postgres_wal_support import WalDb
from tests.integration.test_mysql_binlog_helpers import source_yaml as binlog_yaml
from tests.integration.test_outbox_support import AppDb, outbox_yaml, register_order_schema
from tests.support import DaemonThread, app_config, read_dead_letters, read_records, read_topic, wait_for

POLICIES = ["stop", "dead_letter", "skip"]


@dataclass
class Case:
    """One source kind with its poison row: how to write good and bad rows, and where they show up."""

    source: str  # the source's name in the config
    yaml: Callable[[str], str]  # the source's entry, given the policy lines
    topic: str
    table: str  # as the dead letter's header names it
    good: Callable[[int], None]
    poison: Callable[[int], None]
    published: Callable[[list[dict[str, Any]]], list[int]]  # the ids of the good rows on the topic
    reason: str  # part of the one-line reason
    raw: dict[str, Any]  # part of the dead letter's "after" values
    kind: str  # the skipped-rows metric's reason label


def _wal_case(pg_url: str) -> Case:
    db = WalDb(pg_url)
    db.run("CREATE TABLE orders (id int PRIMARY KEY, total numeric(10,2) NOT NULL)")
    return Case(
        "wal",
        lambda policy: (
            f"  - name: wal\n    type: postgres_wal\n    url: {db.url}\n    tables: [orders]\n"
            f'    slot: {db.tag}\n    publication: {db.tag}\n    topic: "{db.tag}.{{table}}"\n{policy}'
        ),
        f"{db.tag}.orders",
        "public.orders",
        lambda i: db.run("INSERT INTO orders VALUES (%s, %s)", (i, i + 0.5)),
        lambda i: db.run("INSERT INTO orders VALUES (%s, 'NaN')", (i,)),
        lambda records: [r["key"]["id"] for r in records if r["value"] is not None],
        "table public.orders column total: value Decimal('NaN') (Decimal) cannot be held by numeric(10,2)",
        {"id": 2, "total": "NaN"},
        "conversion",
    )


def _wal_unreadable_case(pg_url: str) -> Case:
    """A value the WAL source's own text parser refuses (not the Avro conversion): a 2-D array in an int[]."""
    db = WalDb(pg_url)
    db.run("CREATE TABLE orders (id int PRIMARY KEY, tags int[] NOT NULL)")
    return Case(
        "wal",
        lambda policy: (
            f"  - name: wal\n    type: postgres_wal\n    url: {db.url}\n    tables: [orders]\n"
            f'    slot: {db.tag}\n    publication: {db.tag}\n    topic: "{db.tag}.{{table}}"\n{policy}'
        ),
        f"{db.tag}.orders",
        "public.orders",
        lambda i: db.run("INSERT INTO orders VALUES (%s, %s)", (i, [i])),
        lambda i: db.run("INSERT INTO orders VALUES (%s, '{{1,2},{3,4}}')", (i,)),
        lambda records: [r["key"]["id"] for r in records if r["value"] is not None],
        "table public.orders column tags: '{{1,2},{3,4}}' cannot be read exactly",
        {"id": "2", "tags": "{{1,2},{3,4}}"},  # as the server sent them: text
        "conversion",
    )


def _query_case(mariadb_server: MySQLInstance, mysql_url: str) -> Case:
    database = mysql_url.rsplit("/", 1)[-1]
    prefix = f"t{uuid.uuid4().hex[:10]}"
    mariadb_server.execute(
        "CREATE TABLE orders (id INT PRIMARY KEY, due DATE NOT NULL,"
        " updated_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6))",
        database=database,
    )

    def insert(i: int, due: str) -> None:
        conn = mariadb_server.connect(database=database)
        try:
            with conn.cursor() as cur:
                cur.execute("SET SESSION sql_mode = ''")  # what lets a legacy application write zero dates
                cur.execute("INSERT INTO orders (id, due) VALUES (%s, %s)", (i, due))
        finally:
            conn.close()

    return Case(
        "q",
        lambda policy: (
            f"  - name: q\n    type: query\n    url: {mysql_url}\n    tables: [orders]\n"
            f"    cursor: [updated_at, id]\n    poll_interval: 100ms\n    safety_delay: 200ms\n"
            f'    topic: "{prefix}.{{table}}"\n{policy}'
        ),
        f"{prefix}.orders",
        f"{database}.orders",
        lambda i: insert(i, "2024-05-06"),
        lambda i: insert(i, "0000-00-00"),
        lambda records: [r["key"]["id"] for r in records if r["value"] is not None],
        f"table {database}.orders column due: value '0000-00-00' (str) is not a date",
        {"id": 2, "due": "0000-00-00"},
        "conversion",
    )


def _binlog_case(mariadb_server: MySQLInstance, mysql_url: str) -> Case:
    database = mysql_url.rsplit("/", 1)[-1]
    prefix = f"t{uuid.uuid4().hex[:10]}"
    mariadb_server.execute(
        "CREATE TABLE orders (id INT PRIMARY KEY, status ENUM('new', 'paid') NOT NULL)", database=database
    )

    def insert(i: int, status: str) -> None:
        conn = mariadb_server.connect(database=database)
        try:
            with conn.cursor() as cur:
                cur.execute("SET SESSION sql_mode = ''")  # an unknown label is stored as '' with a warning
                cur.execute("INSERT INTO orders VALUES (%s, %s)", (i, status))
        finally:
            conn.close()

    return Case(
        "cdc",
        lambda policy: binlog_yaml(mariadb_server, f"[{database}.orders]", prefix, policy),
        f"{prefix}.{database}.orders",
        f"{database}.orders",
        lambda i: insert(i, "paid"),
        lambda i: insert(i, "refunded"),
        lambda records: [r["key"]["id"] for r in records if r["value"] is not None],
        f"table {database}.orders column status: value '' (str) is not one of the enum's values",
        {"id": 2, "status": ""},
        "conversion",
    )


def _outbox_case(pg_url: str, registry_url: str) -> Case:
    db = AppDb(pg_url, "postgresql")
    db.create_outbox()
    db.run("ALTER TABLE outbox ALTER COLUMN payload TYPE TEXT")  # the application writes any text
    topic = f"{db.prefix}.order"
    register_order_schema(registry_url, topic)

    def good(i: int) -> None:
        db.insert(str(i), {"order_id": i, "total": "1.00"})

    def poison(i: int) -> None:
        db.insert(str(i), {"order_id": "two", "total": "1.00"})

    return Case(
        "ob",
        lambda policy: outbox_yaml(db, policy).replace(
            f'    dead_letter: {{topic: "{db.prefix}.dead.{{source}}"}}\n', ""
        ),
        topic,
        "outbox",
        good,
        poison,
        lambda records: [r["value"]["order_id"] for r in records],
        "payload.order_id: expected an integer (long), got 'two'",
        {"aggregate_id": "2", "payload": '{"order_id": "two", "total": "1.00"}'},
        "invalid",
    )


@pytest.fixture(params=["postgres_wal", "postgres_wal_unreadable", "query", "mysql_binlog", "outbox"])
def case(request: pytest.FixtureRequest, registry_url: str) -> Case:
    if request.param == "postgres_wal":
        return _wal_case(request.getfixturevalue("pg_url"))
    if request.param == "postgres_wal_unreadable":
        return _wal_unreadable_case(request.getfixturevalue("pg_url"))
    if request.param == "outbox":
        return _outbox_case(request.getfixturevalue("pg_url"), registry_url)
    server, url = request.getfixturevalue("mariadb_server"), request.getfixturevalue("mysql_url")
    return _query_case(server, url) if request.param == "query" else _binlog_case(server, url)


@pytest.mark.parametrize("policy", POLICIES)
def test_a_poison_row_under_each_policy(
    case: Case, policy: str, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    dead_topic = f"{case.topic}.dlq"
    lines = f'    on_error: {policy}\n    dead_letter: {{topic: "{dead_topic}"}}\n'
    config = app_config(tmp_path, kafka_bootstrap, registry_url, case.yaml(lines))

    def published() -> list[int]:
        return sorted(case.published(read_topic(kafka_bootstrap, registry_url, case.topic, timeout=5)))

    case.good(1)
    with DaemonThread(config) as daemon:
        status = daemon.status(case.source)
        wait_for(lambda: published() == [1], what="the first good row")
        case.poison(2)
        case.good(3)
        if policy == "stop":
            wait_for(lambda: status.state == "failed", what="the source to stop")
            assert case.reason in status.error and "\n" not in status.error
            assert "set on_error: dead_letter or skip" in status.error
            assert published() == [1]
            return
        wait_for(lambda: published() == [1, 3], what="the row after the poison row")
        if policy == "skip":
            assert status.rows_skipped == {(case.table, case.kind): 1} and status.rows_dead_lettered == 0
            assert read_records(kafka_bootstrap, dead_topic, timeout=1) == []
            return
        (dead,) = read_dead_letters(kafka_bootstrap, dead_topic, expect=1)
        wait_for(lambda: daemon.positions_settled(case.source), what="the position past the dead letter")
    assert status.rows_dead_lettered == 1 and status.rows_skipped == {}
    assert case.raw.items() <= dead["value"]["after"].items()
    headers = dead["headers"]
    assert headers["liberator.source"] == case.source and headers["liberator.table"] == case.table
    assert case.reason in headers["liberator.error"] and headers["liberator.position"]
    # A restart goes on from after the dead letter: it is not sent again.
    with DaemonThread(config):
        case.good(4)
        wait_for(lambda: published() == [1, 3, 4], what="the row after the restart")
    assert len(read_dead_letters(kafka_bootstrap, dead_topic)) == 1


@pytest.mark.parametrize("mode", ["consistent", "incremental"])
@pytest.mark.parametrize("poison", ["'NaN'", "'{{1,2},{3,4}}'"])
def test_a_poison_row_in_the_wal_snapshot(
    poison: str, mode: str, pg_url: str, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    """The snapshot reads rows through the same paths: a poison row there is skipped (or dead-lettered) too,
    whether the snapshot is one consistent read or chunks between watermarks."""
    db = WalDb(pg_url)
    column = "numeric(10,2)" if "NaN" in poison else "int[]"
    db.run(f"CREATE TABLE orders (id int PRIMARY KEY, v {column} NOT NULL)")
    good = "1" if "NaN" in poison else "'{1}'"
    db.run(f"INSERT INTO orders VALUES (1, {good}), (2, {poison}), (3, {good})")
    source = (
        f"  - name: wal\n    type: postgres_wal\n    url: {db.url}\n    tables: [orders]\n"
        f'    slot: {db.tag}\n    publication: {db.tag}\n    topic: "{db.tag}.{{table}}"\n    on_error: skip\n'
        f"    snapshot_mode: {mode}\n"
    )
    config = app_config(tmp_path, kafka_bootstrap, registry_url, source)
    with DaemonThread(config) as daemon:
        status = daemon.status("wal")
        wait_for(
            lambda: (
                sorted(r["key"]["id"] for r in read_topic(kafka_bootstrap, registry_url, f"{db.tag}.orders")) == [1, 3]
            ),
            what="the snapshot's good rows",
        )
        assert status.rows_skipped == {("public.orders", "conversion"): 1}
