"""`rename:` publishes columns under other names on every source kind: the schemas, keys and values say the new
names (the registry checks what consumers get), the database keeps its own."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from liberator_testbed import MySQLInstance
from tests.integration.postgres_wal_support import WalDb
from tests.integration.test_mysql_binlog_helpers import source_yaml as binlog_yaml
from tests.support import DaemonThread, app_config, read_topic


def _check(records: list[dict[str, object]], key: str, field: str, envelope: str) -> None:
    assert len(records) == 2
    for record in records:
        assert set(record["key"]) == {key}  # type: ignore[arg-type]
        value = record["value"]
        row = value["after"] if envelope == "change" else value  # type: ignore[index]
        assert field in row and "email" not in row, row  # type: ignore[operator]


def test_postgres_wal_and_query_publish_renamed_columns(
    pg_url: str, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    db = WalDb(pg_url)
    db.run(
        "CREATE TABLE users (id int PRIMARY KEY, email text NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())"
    )
    db.run("INSERT INTO users (id, email) VALUES (1, 'a@x'), (2, 'b@x')")
    wal = (
        f"  - name: wal\n    type: postgres_wal\n    url: {db.url}\n    tables: [users]\n"
        f'    slot: {db.tag}\n    publication: {db.tag}\n    topic: "{db.tag}.wal.{{table}}"\n'
        "    rename: {public.users: {id: user_id, email: contact}}\n"
    )
    query = (
        f"  - name: q\n    type: query\n    url: {pg_url}\n"
        "    tables: [{table: users, rename: {id: user_id, email: contact}}]\n"
        f'    cursor: [updated_at, id]\n    poll_interval: 100ms\n    topic: "{db.tag}.q.{{table}}"\n'
    )
    config = app_config(tmp_path, kafka_bootstrap, registry_url, wal + query)
    with DaemonThread(config):
        _check(
            read_topic(kafka_bootstrap, registry_url, f"{db.tag}.wal.users", expect=2), "user_id", "contact", "change"
        )
        _check(read_topic(kafka_bootstrap, registry_url, f"{db.tag}.q.users", expect=2), "user_id", "contact", "state")


def test_mysql_binlog_publishes_renamed_columns(
    mariadb_server: MySQLInstance, mysql_url: str, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    database = mysql_url.rsplit("/", 1)[-1]
    mariadb_server.execute("CREATE TABLE users (id INT PRIMARY KEY, email TEXT NOT NULL)", database=database)
    prefix = f"t{uuid.uuid4().hex[:10]}"
    extra = f"    rename: {{{database}.users: {{email: contact}}}}\n"
    config = app_config(
        tmp_path, kafka_bootstrap, registry_url, binlog_yaml(mariadb_server, f"[{database}.users]", prefix, extra)
    )
    with DaemonThread(config):
        mariadb_server.execute("INSERT INTO users VALUES (1, 'a@x'), (2, 'b@x')", database=database)
        _check(
            read_topic(kafka_bootstrap, registry_url, f"{prefix}.{database}.users", expect=2), "id", "contact", "change"
        )


def test_a_rename_to_a_name_avro_refuses_is_a_config_error() -> None:
    from liberator.connectors.query.config import TableEntry

    with pytest.raises(ValueError, match="not an Avro field name"):
        TableEntry.model_validate({"table": "users", "rename": {"email": "e-mail"}})
