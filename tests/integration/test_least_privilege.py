"""The grants of docs/privileges.md are enough: each block, run as written (names substituted), makes a user
with which `liberator check` passes and the daemon publishes (or the sink writes) the rows. On PostgreSQL the
database's PUBLIC defaults (CONNECT, the public schema's USAGE) are revoked first, so only the documented
grants count."""

from __future__ import annotations

import random
import re
import sqlite3
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from liberator_testbed import MySQLInstance, PostgresInstance
from tests.integration.test_outbox_support import AppDb, register_order_schema
from tests.support import DaemonThread, app_config, cli, read_topic, wait_for

DOC = Path(__file__).resolve().parents[2] / "docs" / "privileges.md"
PASSWORD = "Lp-4kQ9-pw"
_BLOCK = re.compile(r"<!-- grants: (\w+) (\w+) -->\s*```sql\n(.*?)```", re.S)


def documented(server: str, kind: str, user: str, database: str) -> list[str]:
    """The statements of the doc's block for `kind` on `server`, with this test's names."""
    blocks = {(s, k): text for s, k, text in _BLOCK.findall(DOC.read_text())}
    text = "\n".join(line for line in blocks[(server, kind)].splitlines() if not line.lstrip().startswith("--"))
    text = re.sub(r"\bliberator\b", user, re.sub(r"\bshop\b", database, text)).replace("change-me", PASSWORD)
    return [statement.strip() for statement in text.split(";") if statement.strip()]


def a_user() -> str:
    return f"lp{uuid.uuid4().hex[:10]}"


def check_passes(config: Path) -> None:
    result = cli("check", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "problem:" not in result.stdout, result.stdout


# -- PostgreSQL -----------------------------------------------------------------------------------------------


def pg_grant(server: PostgresInstance, database: str, kind: str) -> str:
    """The user made with the doc's grants for `kind`, on a database without PUBLIC's defaults."""
    server.execute(f'REVOKE ALL ON DATABASE "{database}" FROM PUBLIC')
    server.execute("REVOKE ALL ON SCHEMA public FROM PUBLIC", database=database)
    user = a_user()
    for statement in documented("postgresql", kind, user, database):
        server.execute(statement, database=database)
    return user


def pg_orders(server: PostgresInstance, database: str) -> None:
    server.execute("CREATE TABLE orders (id int PRIMARY KEY, total numeric(10,2) NOT NULL)", database=database)
    server.execute("INSERT INTO orders VALUES (1, 1.10), (2, 2.20)", database=database)


def published(
    config: Path, bootstrap: str, registry: str, topic: str, insert: Callable[[], Any], then: Callable[[], Any] = list
) -> None:
    """The daemon, run as the restricted user, publishes the two rows there are, then the one inserted; `then`
    runs while it still runs."""
    with DaemonThread(config):
        assert len(read_topic(bootstrap, registry, topic, expect=2, timeout=60)) == 2
        insert()
        assert len(read_topic(bootstrap, registry, topic, expect=3, timeout=60)) == 3
        then()


def test_postgres_wal_with_the_documented_grants(
    postgres_server: PostgresInstance, pg_database: str, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    pg_orders(postgres_server, pg_database)
    user = pg_grant(postgres_server, pg_database, "postgres_wal")
    slot, prefix = f"s{user}", f"t{user}"
    url = postgres_server.url(pg_database, user=user, password=PASSWORD, driver=None)
    source = (
        f"  - name: wal\n    type: postgres_wal\n    url: {url}\n    tables: [public.orders]\n"
        f'    slot: {slot}\n    publication: liberator_shop\n    topic: "{prefix}.{{table}}"\n'
    )
    config = app_config(tmp_path, kafka_bootstrap, registry_url, source)
    try:
        check_passes(config)
        insert = lambda: postgres_server.execute("INSERT INTO orders VALUES (3, 3.30)", database=pg_database)  # noqa: E731
        published(config, kafka_bootstrap, registry_url, f"{prefix}.orders", insert)
    finally:  # a slot keeps its database from being dropped
        postgres_server.execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s", (slot,)
        )


def test_postgres_wal_tells_what_to_run_for_a_new_table_it_cannot_publish_then_captures_it(
    postgres_server: PostgresInstance,
    pg_database: str,
    tmp_path: Path,
    kafka_bootstrap: str,
    registry_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    pg_orders(postgres_server, pg_database)
    user = pg_grant(postgres_server, pg_database, "postgres_wal")
    slot, prefix = f"s{user}", f"t{user}"
    url = postgres_server.url(pg_database, user=user, password=PASSWORD, driver=None)
    source = (
        f'  - name: wal\n    type: postgres_wal\n    url: {url}\n    tables: ["public.orders*"]\n'
        f'    slot: {slot}\n    publication: liberator_shop\n    topic: "{prefix}.{{table}}"\n'
        "    status_interval: 200ms\n"
    )
    config = app_config(tmp_path, kafka_bootstrap, registry_url, source)
    run = lambda statement: postgres_server.execute(statement, database=pg_database)  # noqa: E731
    try:
        with DaemonThread(config):
            assert len(read_topic(kafka_bootstrap, registry_url, f"{prefix}.orders", expect=2, timeout=60)) == 2
            run("CREATE TABLE orders_eu (id int PRIMARY KEY, total numeric(10,2) NOT NULL)")
            run("INSERT INTO orders_eu VALUES (1, 9.90)")
            wait_for(lambda: "new table public.orders_eu matches" in caplog.text, what="the warning")
            assert f'GRANT SELECT ON "public"."orders_eu" TO {user};' in caplog.text
            run(f"GRANT SELECT ON orders_eu TO {user}")  # as the owner, what the two warnings say
            wait_for(lambda: "ALTER PUBLICATION liberator_shop ADD TABLE" in caplog.text, what="the second warning")
            run("ALTER PUBLICATION liberator_shop ADD TABLE orders_eu")
            run("INSERT INTO orders_eu VALUES (2, 8.80)")
            eu = read_topic(kafka_bootstrap, registry_url, f"{prefix}.orders_eu", expect=2, timeout=60)
            assert sorted(r["key"]["id"] for r in eu) == [1, 2]
    finally:  # a slot keeps its database from being dropped
        postgres_server.execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s", (slot,)
        )


def test_query_on_postgresql_with_the_documented_grants(
    postgres_server: PostgresInstance, pg_database: str, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    pg_orders(postgres_server, pg_database)
    user = pg_grant(postgres_server, pg_database, "query")
    url = postgres_server.url(pg_database, user=user, password=PASSWORD)
    config = app_config(tmp_path, kafka_bootstrap, registry_url, query_source(url, "public.orders", user))
    check_passes(config)
    insert = lambda: postgres_server.execute("INSERT INTO orders VALUES (3, 3.30)", database=pg_database)  # noqa: E731
    published(config, kafka_bootstrap, registry_url, f"t{user}.orders", insert)


def query_source(url: str, table: str, user: str) -> str:
    return (
        f"  - name: poll\n    type: query\n    url: {url}\n    tables: [{table}]\n    cursor: [id]\n"
        f'    poll_interval: 100ms\n    safety_delay: 0ms\n    topic: "t{user}.{{table}}"\n'
    )


def outbox_published(app: AppDb, url: str, tmp_path: Path, bootstrap: str, registry: str) -> None:
    """The outbox source, as the restricted user at `url`, publishes and cleans up (deletes) the events."""
    topic = f"{app.prefix}.order"
    register_order_schema(registry, topic)
    for n in (1, 2):
        app.insert(str(n), {"order_id": n, "total": "1.00"})
    source = (
        f'  - name: ob\n    type: outbox\n    url: {url}\n    topic: "{app.prefix}.{{aggregate_type}}"\n'
        "    poll_interval: 100ms\n"
    )
    config = app_config(tmp_path, bootstrap, registry, source)
    check_passes(config)

    def cleaned_up() -> bool:
        with app.engine.connect() as conn:
            return conn.exec_driver_sql("SELECT count(*) FROM outbox").scalar() == 0

    published(
        config, bootstrap, registry, topic, lambda: app.insert("3", {"order_id": 3, "total": "1.00"}),
        then=lambda: wait_for(cleaned_up, timeout=30, what="the published events deleted from the outbox"),
    )  # fmt: skip


def test_outbox_on_postgresql_with_the_documented_grants(
    postgres_server: PostgresInstance, pg_database: str, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    app = AppDb(postgres_server.url(pg_database), "postgresql")
    app.create_outbox()
    user = pg_grant(postgres_server, pg_database, "outbox")
    url = postgres_server.url(pg_database, user=user, password=PASSWORD)
    outbox_published(app, url, tmp_path, kafka_bootstrap, registry_url)


def sink_wrote(target_url: str, rows: Callable[[], int], tmp_path: Path, bootstrap: str, registry: str) -> None:
    """A SQLite table published by a query source, written by the sql sink as the restricted user."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    with sqlite3.connect(tmp_path / "legacy.db") as conn:
        conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
        conn.executemany("INSERT INTO items VALUES (?, ?)", [(1, "one"), (2, "two")])
    source = (
        f"  - name: legacy\n    type: query\n    url: sqlite:///{tmp_path}/legacy.db\n    tables: [items]\n"
        f'    cursor: [id]\n    poll_interval: 100ms\n    topic: "{prefix}.{{table}}"\n'
    )
    config = app_config(tmp_path, bootstrap, registry, source)
    sink = (
        f"sinks:\n  - name: copy\n    type: sql\n    url: {target_url}\n    topics: [{prefix}.items]\n"
        "    create: true\n    consumer:\n      settings: {session.timeout.ms: 6000, fetch.wait.max.ms: 10}\n"
    )
    config.write_text(config.read_text() + sink)
    check_passes(config)
    with DaemonThread(config):
        wait_for(lambda: rows() == 2, timeout=90, what="the sink to write both rows as the restricted user")


def test_sql_sink_on_postgresql_with_the_documented_grants(
    postgres_server: PostgresInstance, pg_database: str, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    user = pg_grant(postgres_server, pg_database, "sql")
    url = postgres_server.url(pg_database, user=user, password=PASSWORD)

    def rows() -> int:
        found = postgres_server.execute("SELECT to_regclass('public.items') IS NOT NULL", database=pg_database)
        return (
            int(postgres_server.execute("SELECT count(*) FROM items", database=pg_database)[0][0]) if found[0][0] else 0
        )

    sink_wrote(url, rows, tmp_path, kafka_bootstrap, registry_url)


# -- MariaDB --------------------------------------------------------------------------------------------------


def my_grant(server: MySQLInstance, database: str, kind: str) -> str:
    user = a_user()
    for statement in documented("mariadb", kind, user, database):
        server.execute(statement)
    return user


def my_orders(server: MySQLInstance, database: str) -> None:
    server.execute("CREATE TABLE orders (id INT PRIMARY KEY, total DECIMAL(10,2) NOT NULL)", database=database)
    server.execute("INSERT INTO orders VALUES (1, 1.10), (2, 2.20)", database=database)


def test_mysql_binlog_with_the_documented_grants(
    mariadb_server: MySQLInstance, mysql_database: str, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    my_orders(mariadb_server, mysql_database)
    user = my_grant(mariadb_server, mysql_database, "mysql_binlog")
    url = mariadb_server.url(user=user, password=PASSWORD, driver=None)
    source = (
        f"  - name: binlog\n    type: mysql_binlog\n    url: {url}/\n    tables: [{mysql_database}.orders]\n"
        f'    server_id: {random.randrange(10_000, 4_000_000)}\n    topic: "t{user}.{{table}}"\n'
    )
    config = app_config(tmp_path, kafka_bootstrap, registry_url, source)
    check_passes(config)
    insert = lambda: mariadb_server.execute("INSERT INTO orders VALUES (3, 3.30)", database=mysql_database)  # noqa: E731
    published(config, kafka_bootstrap, registry_url, f"t{user}.orders", insert)


def test_query_on_mariadb_with_the_documented_grants(
    mariadb_server: MySQLInstance, mysql_database: str, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    my_orders(mariadb_server, mysql_database)
    user = my_grant(mariadb_server, mysql_database, "query")
    url = mariadb_server.url(mysql_database, user=user, password=PASSWORD)
    config = app_config(tmp_path, kafka_bootstrap, registry_url, query_source(url, "orders", user))
    check_passes(config)
    insert = lambda: mariadb_server.execute("INSERT INTO orders VALUES (3, 3.30)", database=mysql_database)  # noqa: E731
    published(config, kafka_bootstrap, registry_url, f"t{user}.orders", insert)


def test_outbox_on_mariadb_with_the_documented_grants(
    mariadb_server: MySQLInstance, mysql_database: str, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    app = AppDb(mariadb_server.url(mysql_database), "mariadb")
    app.create_outbox()
    user = my_grant(mariadb_server, mysql_database, "outbox")
    outbox_published(app, mariadb_server.url(mysql_database, user=user, password=PASSWORD), tmp_path,
                     kafka_bootstrap, registry_url)  # fmt: skip


def test_sql_sink_on_mariadb_with_the_documented_grants(
    mariadb_server: MySQLInstance, mysql_database: str, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    user = my_grant(mariadb_server, mysql_database, "sql")
    url = mariadb_server.url(mysql_database, user=user, password=PASSWORD)

    def rows() -> int:
        tables = mariadb_server.execute("SHOW TABLES LIKE 'items'", database=mysql_database)
        return int(mariadb_server.execute("SELECT count(*) FROM items", database=mysql_database)[0][0]) if tables else 0

    sink_wrote(url, rows, tmp_path, kafka_bootstrap, registry_url)


def test_every_documented_block_is_tested() -> None:
    blocks = {(s, k) for s, k, _ in _BLOCK.findall(DOC.read_text())}
    kinds = {"postgres_wal", "query", "outbox", "sql"}
    assert blocks == {("postgresql", k) for k in kinds} | {
        ("mariadb", k) for k in kinds - {"postgres_wal"} | {"mysql_binlog"}
    }
