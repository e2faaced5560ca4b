"""The CDC targets the e2e tests run on: PostgreSQL (postgres_wal) and MariaDB (mysql_binlog), each with the
table `acc (id, v)` and the YAML of a source named `cdc` capturing it. Tests take the `cdc_target` fixture."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pymysql  # type: ignore[import-untyped]
import pytest

from liberator_testbed import MySQLInstance
from tests.integration.postgres_wal_support import WalDb
from tests.integration.test_mysql_binlog_helpers import source_yaml

CHUNK = 500

Statement = tuple[str, tuple[Any, ...]]


@dataclass
class Target:
    """A database with the table `acc (id, v)` and how the daemon captures it."""

    kind: str  # postgresql | mariadb
    source: str  # the source's YAML entry
    topic: str
    slot: str | None  # postgres_wal's replication slot
    fill: Callable[[int], None]  # rows 1..n with v = 0
    transaction: Callable[[list[Statement]], None]  # runs statements in one transaction
    upsert: str  # insert a key, or bump it if it exists
    move: Callable[[int, int], Statement]  # change a row's primary key, unless the new one is taken
    table: Callable[[], dict[int, int]]
    name: str = "acc"  # how a snapshot request names the table


def _pg_target(pg_url: str) -> Iterator[Target]:
    db = WalDb(pg_url)
    db.run("CREATE TABLE acc (id int PRIMARY KEY, v int NOT NULL)")
    source = (
        f"  - name: cdc\n    type: postgres_wal\n    url: {db.url}\n    tables: [acc]\n    slot: {db.tag}\n"
        f'    publication: {db.tag}\n    topic: "{db.tag}.{{table}}"\n    snapshot_chunk: {CHUNK}\n'
        "    status_interval: 200ms\n"
    )
    writer = psycopg.connect(db.url, autocommit=True)

    def transaction(statements: list[Statement]) -> None:
        with writer.transaction():
            for sql, args in statements:
                writer.execute(sql, args)

    def table() -> dict[int, int]:
        return {int(k): int(v) for k, v in db.rows("SELECT id, v FROM acc")}

    upsert = "INSERT INTO acc VALUES (%s, 0) ON CONFLICT (id) DO UPDATE SET v = acc.v + 1"

    def move(old: int, new: int) -> Statement:
        taken = "EXISTS (SELECT 1 FROM acc WHERE id = %s)"
        return (f"UPDATE acc SET id = %s WHERE id = %s AND NOT {taken}", (new, old, new))

    def fill(rows: int) -> None:
        db.run("INSERT INTO acc (id, v) SELECT g, 0 FROM generate_series(1, %s) g", (rows,))

    yield Target("postgresql", source, f"{db.tag}.acc", db.tag, fill, transaction, upsert, move, table)
    writer.close()


def _mariadb_target(server: MySQLInstance, db: str) -> Iterator[Target]:
    server.execute(f"CREATE TABLE `{db}`.acc (id INT PRIMARY KEY, v INT NOT NULL)")
    writer = server.connect(database=db)

    def transaction(statements: list[Statement]) -> None:
        try:
            with writer.cursor() as cur:
                cur.execute("BEGIN")
                for sql, args in statements:
                    cur.execute(sql, args)
                cur.execute("COMMIT")
        except pymysql.MySQLError as exc:
            writer.rollback()
            if exc.args[0] not in (1213, 1205):  # deadlock / lock wait: rolled back, nothing committed
                raise

    def table() -> dict[int, int]:
        return {int(k): int(v) for k, v in server.execute(f"SELECT id, v FROM `{db}`.acc")}

    upsert = "INSERT INTO acc VALUES (%s, 0) ON DUPLICATE KEY UPDATE v = v + 1"

    def move(old: int, new: int) -> Statement:
        return ("UPDATE IGNORE acc SET id = %s WHERE id = %s", (new, old))  # IGNORE: no change if `new` is taken

    source = source_yaml(server, f"[{db}.acc]", db, f"    snapshot_chunk: {CHUNK}\n")

    def fill(rows: int) -> None:
        server.execute(f"INSERT INTO acc (id, v) SELECT seq, 0 FROM seq_1_to_{int(rows)}", database=db)

    yield Target("mariadb", source, f"{db}.{db}.acc", None, fill, transaction, upsert, move, table, f"{db}.acc")
    writer.close()


# Defined under a private name with `name=`: test modules import it without clashing with their parameters.
@pytest.fixture(params=["postgresql", "mariadb"], name="cdc_target")
def _cdc_target(request: pytest.FixtureRequest) -> Iterator[Target]:
    if request.param == "postgresql":
        yield from _pg_target(request.getfixturevalue("pg_url"))
    else:
        yield from _mariadb_target(request.getfixturevalue("mariadb_server"), request.getfixturevalue("mysql_database"))
