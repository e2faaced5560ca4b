"""`include:` is an allow-list of published columns on every source kind: key columns always go, every other
column only when listed, so a column the application adds later never leaks before someone lists it."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from liberator_testbed import MySQLInstance
from tests.integration.postgres_wal_support import WalDb
from tests.integration.test_mysql_binlog_helpers import source_yaml as binlog_yaml
from tests.support import DaemonThread, app_config, read_topic


def _rows(records: list[dict[str, object]], envelope: str) -> list[dict[str, object]]:
    return [record["value"]["after"] if envelope == "change" else record["value"] for record in records]  # type: ignore[index]


def test_postgres_wal_and_query_publish_only_included_columns_also_after_a_new_column(
    pg_url: str, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    db = WalDb(pg_url)
    db.run("CREATE TABLE users (id int PRIMARY KEY, name text, secret text, updated_at timestamptz DEFAULT now())")
    db.run("INSERT INTO users (id, name, secret) VALUES (1, 'a', 's1')")
    wal = (
        f"  - name: wal\n    type: postgres_wal\n    url: {db.url}\n    tables: [users]\n"
        f'    slot: {db.tag}\n    publication: {db.tag}\n    topic: "{db.tag}.wal.{{table}}"\n'
        "    include: {public.users: [name]}\n"
    )
    query = (
        f"  - name: q\n    type: query\n    url: {pg_url}\n    tables: [{{table: users, include: [name]}}]\n"
        f'    cursor: [updated_at, id]\n    poll_interval: 100ms\n    topic: "{db.tag}.q.{{table}}"\n'
    )
    config = app_config(tmp_path, kafka_bootstrap, registry_url, wal + query)
    with DaemonThread(config):
        read_topic(kafka_bootstrap, registry_url, f"{db.tag}.wal.users", expect=1)
        db.run("ALTER TABLE users ADD COLUMN token text")
        db.run("INSERT INTO users (id, name, secret, token) VALUES (2, 'b', 's2', 't2')")
        wal_rows = _rows(read_topic(kafka_bootstrap, registry_url, f"{db.tag}.wal.users", expect=2), "change")
        query_rows = _rows(read_topic(kafka_bootstrap, registry_url, f"{db.tag}.q.users", expect=2), "state")
    assert [set(r) for r in wal_rows] == [{"id", "name"}] * 2
    assert [set(r) for r in query_rows] == [{"id", "name"}] * 2


def test_mysql_binlog_publishes_only_included_columns(
    mariadb_server: MySQLInstance, mysql_url: str, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    database = mysql_url.rsplit("/", 1)[-1]
    mariadb_server.execute("CREATE TABLE users (id INT PRIMARY KEY, name TEXT, secret TEXT)", database=database)
    prefix = f"t{uuid.uuid4().hex[:10]}"
    source = binlog_yaml(mariadb_server, f"[{database}.users]", prefix, f"    include: {{{database}.users: [name]}}\n")
    config = app_config(tmp_path, kafka_bootstrap, registry_url, source)
    with DaemonThread(config):
        mariadb_server.execute("INSERT INTO users VALUES (1, 'a', 's1'), (2, 'b', 's2')", database=database)
        rows = _rows(read_topic(kafka_bootstrap, registry_url, f"{prefix}.{database}.users", expect=2), "change")
    assert [set(r) for r in rows] == [{"id", "name"}] * 2


def test_include_must_name_a_captured_table_and_real_columns() -> None:
    from liberator.connectors.mysql_binlog.config import MySQLBinlogConfig

    base = {"name": "b", "type": "mysql_binlog", "url": "mysql://r@h/", "tables": ["shop.users"], "server_id": 7}
    with pytest.raises(ValueError, match=r"include: shop\.orders is not a captured table"):
        MySQLBinlogConfig.model_validate({**base, "include": {"shop.orders": ["id"]}})
