"""`mask:` hides column values on every source kind before they leave the database's host: hash (salted
SHA-256), redact, truncate, null; the schemas say so (a hashed column is unbounded text, a nulled one is
nullable), and key columns and non-text columns under a text mask are refused in one line."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path
from typing import Any

import pytest

from liberator.capture.masks import masked
from liberator.errors import SchemaError
from liberator.schema import Column, IntType, StringType, TableSchema
from liberator_testbed import MySQLInstance
from tests.integration.postgres_wal_support import WalDb
from tests.integration.test_mysql_binlog_helpers import source_yaml as binlog_yaml
from tests.support import DaemonThread, app_config, read_topic

SALT = "pepper"


def _hashed(value: str) -> str:
    return hashlib.sha256((SALT + value).encode()).hexdigest()


def _check(rows: list[dict[str, Any]]) -> None:
    by_id = {row["id"]: row for row in rows}
    assert by_id[1]["email"] == _hashed("a@x") and by_id[2]["email"] == _hashed("b@x")
    assert by_id[1]["note"] == "lon" and by_id[2]["note"] is None
    assert by_id[1]["ssn"] == "***" and by_id[1]["secret"] is None


def test_postgres_wal_and_query_mask_values(
    pg_url: str, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    db = WalDb(pg_url)
    db.run(
        "CREATE TABLE users (id int PRIMARY KEY, email text NOT NULL, note text, ssn varchar(11), "
        "secret int NOT NULL, updated_at timestamptz DEFAULT now())"
    )
    db.run("INSERT INTO users (id, email, note, ssn, secret) VALUES (1, 'a@x', 'long note', '123-45-6789', 7)")
    rules = "{email: hash, note: {truncate: 3}, ssn: redact, secret: 'null'}"
    wal = (
        f"  - name: wal\n    type: postgres_wal\n    url: {db.url}\n    tables: [users]\n"
        f'    slot: {db.tag}\n    publication: {db.tag}\n    topic: "{db.tag}.wal.{{table}}"\n'
        f"    mask: {{public.users: {rules}}}\n    mask_salt: {SALT}\n"
    )
    query = (
        f"  - name: q\n    type: query\n    url: {pg_url}\n    tables: [{{table: users, mask: {rules}}}]\n"
        f'    cursor: [updated_at, id]\n    poll_interval: 100ms\n    topic: "{db.tag}.q.{{table}}"\n'
        f"    mask_salt: {SALT}\n"
    )
    config = app_config(tmp_path, kafka_bootstrap, registry_url, wal + query)
    with DaemonThread(config):
        read_topic(kafka_bootstrap, registry_url, f"{db.tag}.wal.users", expect=1)
        db.run("INSERT INTO users (id, email, note, ssn, secret) VALUES (2, 'b@x', NULL, '987-65-4321', 8)")
        wal_rows = [
            r["value"]["after"] for r in read_topic(kafka_bootstrap, registry_url, f"{db.tag}.wal.users", expect=2)
        ]
        query_rows = [r["value"] for r in read_topic(kafka_bootstrap, registry_url, f"{db.tag}.q.users", expect=2)]
    _check(wal_rows)
    _check(query_rows)


def test_mysql_binlog_masks_values(
    mariadb_server: MySQLInstance, mysql_url: str, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    database = mysql_url.rsplit("/", 1)[-1]
    mariadb_server.execute(
        "CREATE TABLE users (id INT PRIMARY KEY, email TEXT NOT NULL, note TEXT, ssn VARCHAR(11), secret INT NOT NULL)",
        database=database,
    )
    prefix = f"t{uuid.uuid4().hex[:10]}"
    extra = (
        f"    mask: {{{database}.users: {{email: hash, note: {{truncate: 3}}, ssn: redact, secret: 'null'}}}}\n"
        f"    mask_salt: {SALT}\n"
    )
    config = app_config(
        tmp_path, kafka_bootstrap, registry_url, binlog_yaml(mariadb_server, f"[{database}.users]", prefix, extra)
    )
    with DaemonThread(config):
        mariadb_server.execute(
            "INSERT INTO users VALUES (1, 'a@x', 'long note', '123-45-6789', 7), (2, 'b@x', NULL, '9', 8)",
            database=database,
        )
        rows = [
            r["value"]["after"]
            for r in read_topic(kafka_bootstrap, registry_url, f"{prefix}.{database}.users", expect=2)
        ]
    _check(rows)


def test_masks_that_cannot_apply_are_refused_in_one_line() -> None:
    shape = TableSchema(
        "public", "t", (Column("id", IntType(), False), Column("n", IntType()), Column("s", StringType(5))), ("id",)
    )
    with pytest.raises(SchemaError, match="key columns cannot be masked"):
        masked("public.t", shape, {"id": "null"}, SALT)
    with pytest.raises(SchemaError, match="applies to text columns; use null"):
        masked("public.t", shape, {"n": "hash"}, SALT)
    with pytest.raises(SchemaError, match="needs the source's `mask_salt`"):
        masked("public.t", shape, {"s": "hash"}, None)
    published, mask = masked("public.t", shape, {"s": "redact"}, SALT)
    assert published.columns[2].type == StringType() and mask is not None and mask([1, 2, "abc"]) == [1, 2, "***"]
