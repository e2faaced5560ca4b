"""`on_incompatible: new_topic` against real servers: an ALTER the registry refuses (int -> text under BACKWARD)
moves the table to `{topic}.v2`; the old topic keeps every record it had, the new one folded by key equals the
table (its rows read again by the source's incremental snapshot) and gets every later change; a restart keeps
writing to it, and (postgres_wal) a second refused change moves the table on to `.v3`. mysql_binlog's change is
a type change on MariaDB while a writer updates rows, and there `stop` (the default) stops with the one-line
reason. The query source's change is a required column added (without a default in its schema), on PostgreSQL
and MariaDB. (`stop` of the others is covered by test_query_type_change and test_registry_terse.)"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from liberator.embedded.ports import free_port
from liberator_testbed import MySQLInstance
from tests.integration.legacy_db import LegacyDb
from tests.integration.postgres_wal_support import WalDb
from tests.integration.test_mysql_binlog_helpers import numbers, source_yaml
from tests.support import (
    DaemonThread,
    app_config,
    cli,
    fold_by_key,
    health,
    metrics_text,
    read_topic,
    wait_for,
    with_http,
)

ROWS = 40


def _qty_by_key(records: list[dict[str, Any]]) -> dict[int, Any]:
    return {key: row["qty"] for key, row in fold_by_key(records).items()}


def _topic_equals(bootstrap: str, registry: str, topic: str, table: dict[int, Any]) -> bool:
    try:
        folded = _qty_by_key(read_topic(bootstrap, registry, topic, timeout=5))
    except AssertionError:  # the topic does not exist yet
        return False
    return folded == table


def _wal_config(db: WalDb, tmp_path: Path, bootstrap: str, registry: str) -> Path:
    wal = (
        f"  - name: wal\n    type: postgres_wal\n    url: {db.url}\n    tables: [items]\n"
        f'    slot: {db.tag}\n    publication: {db.tag}\n    topic: "{db.tag}.{{table}}"\n'
        "    snapshot_chunk: 7\n    on_incompatible: new_topic\n"
    )
    return app_config(tmp_path, bootstrap, registry, wal)


def test_postgres_wal_moves_a_refused_table_to_a_new_topic_and_keeps_it_there_after_a_restart(
    pg_url: str, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    db = WalDb(pg_url)
    db.run("CREATE TABLE items (id int PRIMARY KEY, qty int NOT NULL)")
    db.run(f"INSERT INTO items SELECT i, i FROM generate_series(1, {ROWS}) AS i")
    config = _wal_config(db, tmp_path, kafka_bootstrap, registry_url)
    port = free_port()
    with_http(config, port)
    old, v2, v3 = f"{db.tag}.items", f"{db.tag}.items.v2", f"{db.tag}.items.v3"

    def table() -> dict[int, Any]:
        return dict(db.rows("SELECT id, qty FROM items"))  # type: ignore[arg-type]

    with DaemonThread(config) as daemon:
        before = read_topic(kafka_bootstrap, registry_url, old, expect=ROWS)
        db.run("UPDATE items SET qty = qty + 100 WHERE id <= 5")  # compatible: still the old topic
        before = read_topic(kafka_bootstrap, registry_url, old, expect=ROWS + 5)
        db.run("ALTER TABLE items ALTER COLUMN qty TYPE text USING qty::text")
        db.run("UPDATE items SET qty = 'many' WHERE id = 1")
        db.run("INSERT INTO items VALUES (1000, 'new')")
        wait_for(lambda: _topic_equals(kafka_bootstrap, registry_url, v2, table()), timeout=60, what="v2 == table")
        reads = [r for r in read_topic(kafka_bootstrap, registry_url, v2) if r["value"] and r["value"]["op"] == "r"]
        assert len(reads) <= ROWS + 1, "the table is read again once"
        status = daemon.status("wal")
        assert status.state == "running", status.error
        assert [(m.old_topic, m.new_topic) for m in status.topic_moves] == [(old, v2)]
        assert "field before.qty as string" in status.topic_moves[0].reason
        shown = health(port)
        assert shown is not None and shown["sources"]["wal"]["topic_moves"][0]["new_topic"] == v2
        text = metrics_text(port)
        assert 'liberator_source_topic_moves_total{app="test",source="wal",type="postgres_wal",' in text
        assert f'old_topic="{old}",new_topic="{v2}"}} 1' in text
        db.run("UPDATE items SET qty = 'later' WHERE id = 2")  # later changes go to the new topic
        wait_for(lambda: _topic_equals(kafka_bootstrap, registry_url, v2, table()), what="a later change in v2")
        wait_for(lambda: daemon.positions_settled("wal"), what="positions stored")
    assert read_topic(kafka_bootstrap, registry_url, old) == before, "the old topic keeps exactly what it had"
    checked = cli("schemas", str(config), "--check")  # against the subjects of the topic it writes to now
    assert checked.returncode == 0 and "are compatible" in checked.stdout, checked.stderr

    with DaemonThread(config) as daemon:  # a restart: the table stays on v2 without moving again
        db.run("INSERT INTO items VALUES (1001, 'after restart')")
        wait_for(lambda: _topic_equals(kafka_bootstrap, registry_url, v2, table()), what="v2 after the restart")
        assert daemon.status("wal").topic_moves == []
        db.run("ALTER TABLE items ALTER COLUMN qty TYPE int USING length(qty)")  # refused again: on to v3
        db.run("UPDATE items SET qty = 7 WHERE id = 3")
        wait_for(lambda: _topic_equals(kafka_bootstrap, registry_url, v3, table()), timeout=60, what="v3 == table")
        assert [(m.old_topic, m.new_topic) for m in daemon.status("wal").topic_moves] == [(v2, v3)]
    assert read_topic(kafka_bootstrap, registry_url, old) == before


def _binlog_setup(
    server: MySQLInstance, db: str, tmp_path: Path, bootstrap: str, registry: str, extra: str = ""
) -> tuple[Path, str]:
    server.execute(f"CREATE TABLE `{db}`.items (id INT PRIMARY KEY, qty INT NOT NULL)")
    server.execute(f"INSERT INTO `{db}`.items SELECT i, i FROM ({numbers(ROWS)}) AS s")
    config = app_config(tmp_path, bootstrap, registry, source_yaml(server, f"[{db}.items]", db, extra))
    return config, f"{db}.{db}.items"


@contextmanager
def _writer(server: MySQLInstance, db: str) -> Iterator[None]:
    """Updates rows (values that fit the old and the new column type) until the block ends."""
    stop = threading.Event()

    def write() -> None:
        key = 0
        while not stop.is_set():
            key = key % ROWS + 1
            server.execute(f"UPDATE `{db}`.items SET qty = qty + 1 WHERE id = %s", (key,))
            stop.wait(0.01)

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(10)


def test_mysql_binlog_moves_a_refused_table_to_a_new_topic_and_keeps_it_there_after_a_restart(
    mariadb_server: MySQLInstance, mysql_database: str, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    db = mysql_database
    config, old = _binlog_setup(
        mariadb_server,
        db,
        tmp_path,
        kafka_bootstrap,
        registry_url,
        "    snapshot_chunk: 7\n    on_incompatible: new_topic\n",
    )
    v2 = f"{old}.v2"

    def table() -> dict[int, Any]:
        return {int(k): v for k, v in mariadb_server.execute(f"SELECT id, qty FROM `{db}`.items")}

    def v2_equals_table() -> bool:
        try:
            folded = _qty_by_key(read_topic(kafka_bootstrap, registry_url, v2, timeout=5))
        except AssertionError:  # the topic does not exist yet
            return False
        return {k: str(v) for k, v in folded.items()} == {k: str(v) for k, v in table().items()}

    with DaemonThread(config) as daemon:
        read_topic(kafka_bootstrap, registry_url, old, expect=ROWS)
        with _writer(mariadb_server, db):
            wait_for(lambda: len(read_topic(kafka_bootstrap, registry_url, old, timeout=5)) > ROWS, what="updates")
            mariadb_server.execute(f"ALTER TABLE `{db}`.items MODIFY qty VARCHAR(20) NOT NULL")  # int -> string
            mariadb_server.execute(f"UPDATE `{db}`.items SET qty = 'many' WHERE id = 1")
            mariadb_server.execute(f"INSERT INTO `{db}`.items VALUES (1000, 'new')")
            status = daemon.status("cdc")
            wait_for(lambda: bool(status.topic_moves), what="the move")
        wait_for(v2_equals_table, timeout=60, what="v2 == table")
        reads = [r for r in read_topic(kafka_bootstrap, registry_url, v2) if r["value"] and r["value"]["op"] == "r"]
        assert len(reads) <= ROWS + 1, "the table is read again once"
        assert status.state == "running", status.error
        assert [(m.old_topic, m.new_topic) for m in status.topic_moves] == [(old, v2)]
        assert "qty as string" in status.topic_moves[0].reason
        before = read_topic(kafka_bootstrap, registry_url, old)
        assert all(isinstance(r["value"]["after"]["qty"], int) for r in before if r["value"]["after"])
        mariadb_server.execute(f"UPDATE `{db}`.items SET qty = 'later' WHERE id = 2")  # later changes: v2
        wait_for(v2_equals_table, what="a later change in v2")
        wait_for(lambda: daemon.positions_settled("cdc"), what="positions stored")
    assert read_topic(kafka_bootstrap, registry_url, old) == before, "the old topic keeps exactly what it had"

    with DaemonThread(config) as daemon:  # a restart: the table stays on v2 without moving again
        mariadb_server.execute(f"INSERT INTO `{db}`.items VALUES (1001, 'after restart')")
        wait_for(v2_equals_table, what="v2 after the restart")
        assert daemon.status("cdc").topic_moves == []
    assert read_topic(kafka_bootstrap, registry_url, old) == before


def test_mysql_binlog_stops_on_a_refused_schema_by_default_with_a_one_line_reason(
    mariadb_server: MySQLInstance, mysql_database: str, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    db = mysql_database
    config, old = _binlog_setup(mariadb_server, db, tmp_path, kafka_bootstrap, registry_url)
    with DaemonThread(config) as daemon:
        read_topic(kafka_bootstrap, registry_url, old, expect=ROWS)
        mariadb_server.execute(f"ALTER TABLE `{db}`.items MODIFY qty VARCHAR(20) NOT NULL")
        mariadb_server.execute(f"UPDATE `{db}`.items SET qty = 'many' WHERE id = 1")
        assert daemon.wait(60) == 1
        status = daemon.status("cdc")
    assert status.state == "failed"
    assert status.error.startswith(
        f"table {db}.items: schema registry refused the new schema for subject '{old}-value' under BACKWARD"
    )
    assert "\n" not in status.error and "register it under a new topic" in status.error
    assert status.topic_moves == []
    assert len(read_topic(kafka_bootstrap, registry_url, old)) == ROWS


@pytest.fixture(params=["postgresql", "mariadb"])
def legacy(request: pytest.FixtureRequest) -> LegacyDb:
    url = request.getfixturevalue("pg_url" if request.param == "postgresql" else "mysql_url")
    return LegacyDb(url, request.param)


def test_the_query_source_moves_a_refused_table_to_a_new_topic_and_keeps_it_there_after_a_restart(
    legacy: LegacyDb, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    legacy.create_orders()
    for i in range(1, ROWS + 1):
        legacy.insert_order(i, qty=i)
    source = (
        f'  - name: legacy\n    topic: "{legacy.prefix}.{{schema}}.{{table}}"\n'
        f"    type: query\n    url: {legacy.url}\n    tables: [orders]\n    batch_size: 7\n"
        "    cursor: [updated_at, id]\n    poll_interval: 50ms\n    safety_delay: 0s\n    schema_refresh: 200ms\n"
        "    on_incompatible: new_topic\n"
    )
    config = app_config(tmp_path, kafka_bootstrap, registry_url, source)
    old = f"{legacy.prefix}.{legacy.schema}.orders"
    v2 = f"{old}.v2"

    def table() -> dict[int, Any]:
        return {row[0]: row[1] for row in legacy.rows("SELECT id, qty FROM orders")}

    with DaemonThread(config) as daemon:
        before = read_topic(kafka_bootstrap, registry_url, old, expect=ROWS)
        # A required field without a default: old records cannot be read with the new schema (BACKWARD). Unlike a
        # type change, rows polled before the next schema refresh still fit the old shape.
        legacy.run("ALTER TABLE orders ADD COLUMN region VARCHAR(10) NOT NULL DEFAULT 'eu'")
        status = daemon.status("legacy")

        def moved() -> bool:
            # A row polled before the source's next schema refresh still has the old shape: write until one
            # with the new shape (refused, so moved) was read.
            legacy.run(f"UPDATE orders SET qty = qty + 1, updated_at = {legacy.now} WHERE id = 1")
            return bool(status.topic_moves)

        wait_for(moved, interval=0.3, what="the move")
        wait_for(lambda: _topic_equals(kafka_bootstrap, registry_url, v2, table()), timeout=60, what="v2 == table")
        assert status.state == "running", status.error
        assert [(m.old_topic, m.new_topic) for m in status.topic_moves] == [(old, v2)]
        assert "region" in status.topic_moves[0].reason
        assert {row["region"] for row in fold_by_key(read_topic(kafka_bootstrap, registry_url, v2)).values()} == {"eu"}
        legacy.insert_order(1000, qty=5)
        wait_for(lambda: _topic_equals(kafka_bootstrap, registry_url, v2, table()), what="a later row in v2")
        wait_for(lambda: daemon.positions_settled("legacy"), what="positions stored")
    kept = read_topic(kafka_bootstrap, registry_url, old)
    # Every record it had, then the updates polled before the schema refresh, in the old shape.
    assert kept[:ROWS] == before
    assert all("region" not in r["value"] for r in kept)

    with DaemonThread(config) as daemon:
        legacy.insert_order(1001, qty=6)
        wait_for(lambda: _topic_equals(kafka_bootstrap, registry_url, v2, table()), what="v2 after the restart")
        assert daemon.status("legacy").topic_moves == []
    assert read_topic(kafka_bootstrap, registry_url, old) == kept
