"""`filter:` publishes only the rows an expression matches, on every source kind; an update that takes a row
out of the filter is published as a delete where the source has old images, so a topic folded by key
equals the filtered table."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from liberator.capture.filters import compile_filter
from liberator.errors import SchemaError
from liberator.schema import Column, IntType, StringType, TableSchema
from liberator_testbed import MySQLInstance
from tests.integration.postgres_wal_support import WalDb
from tests.integration.test_mysql_binlog_helpers import source_yaml as binlog_yaml
from tests.support import DaemonThread, app_config, fold_by_key, read_topic, wait_for

EXPRESSION = "status in ('paid', 'shipped') and total > 10"


def _folded(bootstrap: str, registry: str, topic: str, envelope: str) -> dict[int, str]:
    folded = fold_by_key(read_topic(bootstrap, registry, topic))
    return {k: v["status"] for k, v in folded.items()}


def test_postgres_wal_and_query_publish_only_matching_rows(
    pg_url: str, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    db = WalDb(pg_url)
    db.run("CREATE TABLE orders (id int PRIMARY KEY, status text NOT NULL, total int, updated_at timestamptz)")
    db.run("ALTER TABLE orders ALTER COLUMN updated_at SET DEFAULT now()")
    db.run("ALTER TABLE orders REPLICA IDENTITY FULL")
    db.run("INSERT INTO orders (id, status, total) VALUES (1, 'paid', 20), (2, 'draft', 50), (3, 'paid', NULL)")
    wal = (
        f"  - name: wal\n    type: postgres_wal\n    url: {db.url}\n    tables: [orders]\n"
        f'    slot: {db.tag}\n    publication: {db.tag}\n    topic: "{db.tag}.wal.{{table}}"\n'
        f'    filter: {{public.orders: "{EXPRESSION}"}}\n'
    )
    query = (
        f"  - name: q\n    type: query\n    url: {pg_url}\n"
        f'    tables: [{{table: orders, filter: "{EXPRESSION}"}}]\n'
        f'    cursor: [updated_at, id]\n    poll_interval: 100ms\n    topic: "{db.tag}.q.{{table}}"\n'
    )
    config = app_config(tmp_path, kafka_bootstrap, registry_url, wal + query)
    wal_topic, query_topic = f"{db.tag}.wal.orders", f"{db.tag}.q.orders"
    with DaemonThread(config):
        wait_for(lambda: _folded(kafka_bootstrap, registry_url, wal_topic, "change") == {1: "paid"}, what="snapshot")
        wait_for(lambda: _folded(kafka_bootstrap, registry_url, query_topic, "state") == {1: "paid"}, what="first poll")
        db.run("INSERT INTO orders (id, status, total) VALUES (4, 'shipped', 99), (5, 'draft', 99)")
        db.run("UPDATE orders SET status = 'cancelled', updated_at = now() WHERE id = 1")  # leaves the filter
        db.run("UPDATE orders SET status = 'paid', updated_at = now() WHERE id = 2")  # enters it
        expected = {2: "paid", 4: "shipped"}
        wait_for(lambda: _folded(kafka_bootstrap, registry_url, wal_topic, "change") == expected, what="the WAL")
        # The query source has no old images: a row that leaves the filter is not withdrawn (documented).
        wait_for(
            lambda: _folded(kafka_bootstrap, registry_url, query_topic, "state") == {1: "paid", **expected},
            what="the query source",
            timeout=20,
        )


def test_mysql_binlog_publishes_only_matching_rows(
    mariadb_server: MySQLInstance, mysql_url: str, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    database = mysql_url.rsplit("/", 1)[-1]
    mariadb_server.execute(
        "CREATE TABLE orders (id INT PRIMARY KEY, status TEXT NOT NULL, total INT)", database=database
    )
    prefix = f"t{uuid.uuid4().hex[:10]}"
    extra = f'    filter: {{{database}.orders: "{EXPRESSION}"}}\n'
    config = app_config(
        tmp_path, kafka_bootstrap, registry_url, binlog_yaml(mariadb_server, f"[{database}.orders]", prefix, extra)
    )
    topic = f"{prefix}.{database}.orders"
    with DaemonThread(config) as daemon:
        wait_for(lambda: daemon.status("cdc").phase == "streaming", what="streaming")
        mariadb_server.execute(
            "INSERT INTO orders VALUES (1, 'paid', 20), (2, 'draft', 50), (3, 'shipped', 5)", database=database
        )
        mariadb_server.execute("UPDATE orders SET status = 'cancelled' WHERE id = 1", database=database)
        mariadb_server.execute("UPDATE orders SET status = 'paid' WHERE id = 2", database=database)
        mariadb_server.execute("INSERT INTO orders VALUES (9, 'paid', 11)", database=database)
        wait_for(lambda: _folded(kafka_bootstrap, registry_url, topic, "change") == {2: "paid", 9: "paid"}, what="rows")


def test_a_filter_naming_an_unknown_column_or_not_parsing_is_refused() -> None:
    shape = TableSchema("public", "t", (Column("id", IntType(), False), Column("s", StringType())), ("id",))
    with pytest.raises(SchemaError, match="names nope, not a published column"):
        compile_filter("public.t", shape, "nope > 1")
    with pytest.raises(SchemaError, match="does not parse"):
        compile_filter("public.t", shape, "s ==")
    with pytest.raises(SchemaError):
        compile_filter("public.t", shape, "__import__('os')")
    with pytest.raises(SchemaError, match="Call is not part of the filter language"):
        compile_filter("public.t", shape, "s.upper() == 'A'")
    with pytest.raises(SchemaError, match="not part of the filter language"):
        compile_filter("public.t", shape, "[s for s in s]")
    matches = compile_filter("public.t", shape, "s == 'a' or id > 5")
    assert matches is not None and matches([1, "a"]) and matches([6, None]) and not matches([1, None])
