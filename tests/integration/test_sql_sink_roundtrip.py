"""Round trip of every type the sources emit: source table -> query source -> topic -> SQL sink -> a table in
the same kind of database (created by the sink from the Avro schema) -> equal rows."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from liberator import sqldb
from liberator.sqltypes import reflect_table
from tests.integration.legacy_db import LegacyDb
from tests.integration.sql_sink_support import count, sink_yaml, table_rows
from tests.integration.test_sqltypes_reflect import MY_DDL, MY_ROW, PG_DDL, PG_ROW
from tests.support import DaemonThread, app_config, wait_for

SQLITE_DDL = """CREATE TABLE everything (
    id INTEGER PRIMARY KEY, i INT, big BIGINT, vc VARCHAR(20), tx TEXT NOT NULL, n NUMERIC(10, 2),
    nu NUMERIC, r REAL, bo BOOLEAN, bl BLOB, dt DATE, tm TIME, ts DATETIME, j JSON)"""
SQLITE_ROW = """INSERT INTO everything VALUES (9223372036854775807, -2147483648, -9223372036854775808,
    'żółw 🐢', '', 12345678.90, 1.5, 1.7976931348623157e308, 1, x'00ff', '0001-01-01', '23:59:59.999999',
    '9999-12-31 23:59:59.999999', '{"b": [1, 2.5], "a": "é"}')"""

CASES = {
    "postgresql": (PG_DDL, [PG_ROW, "INSERT INTO everything (id, tx) VALUES (1, '')"]),
    "mariadb": ([MY_DDL], [MY_ROW, "INSERT INTO everything (id, tx) VALUES (1, '')"]),
    "sqlite": ([SQLITE_DDL], [SQLITE_ROW, "INSERT INTO everything (id, tx) VALUES (1, '')"]),
}


@pytest.fixture(params=["postgresql", "mariadb", "sqlite"])
def legacy(request: pytest.FixtureRequest, tmp_path: Path) -> LegacyDb:
    if request.param == "sqlite":
        return LegacyDb(f"sqlite:///{tmp_path}/legacy.db", "sqlite")
    url = request.getfixturevalue("pg_url" if request.param == "postgresql" else "mysql_url")
    return LegacyDb(url, request.param)


def test_every_type_round_trips_equal(
    legacy: LegacyDb, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    ddl, rows = CASES[legacy.kind]
    for statement in [*ddl, *rows]:
        legacy.run(statement)
    source = (
        f'  - name: legacy\n    topic: "{legacy.prefix}.{{table}}"\n    type: query\n    url: {legacy.url}\n'
        "    tables: [everything]\n    cursor: [id]\n    poll_interval: 100ms\n"
    )
    sink = sink_yaml(legacy, f"[{legacy.prefix}.everything]", "    create: true\n")
    config = app_config(tmp_path, kafka_bootstrap, registry_url, source + sink)
    with DaemonThread(config) as daemon:
        wait_for(lambda: count(legacy.url, "sink_everything") == 2, timeout=60, what="both rows in the sink table")
        assert daemon.sink_status("replica").state == "running"
    source_rows = table_rows(legacy.url, "everything")
    sink_rows = table_rows(legacy.url, "sink_everything")
    assert len(source_rows) == 2
    # The created table has the source's column types (same dialect: the fields' liberator.db_type).
    engine = sqldb.create_engine(legacy.url)
    with engine.connect() as conn:
        schema = None if legacy.kind == "sqlite" else sa.inspect(conn).default_schema_name
        made, original = (reflect_table(conn, schema, t) for t in ("sink_everything", "everything"))
    engine.dispose()
    assert [(c.name, c.type, c.nullable) for c in made.columns] == [
        (c.name, c.type, c.nullable) for c in original.columns
    ]
    # NaN is never equal to itself: compare it by name.
    assert [_comparable(r) for r in sink_rows] == [_comparable(r) for r in source_rows]


def _comparable(row: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple("NaN" if isinstance(v, Decimal) and v.is_nan() else v for v in row)
