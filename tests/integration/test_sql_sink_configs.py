"""The SQL sink's example config passes `liberator check` against a real PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from liberator.config import load_config
from liberator.sinks.sql.config import SqlSinkConfig
from liberator_testbed import PostgresInstance

CONFIGS = Path(__file__).parents[2] / "configs"


def test_sql_sink_examples_load() -> None:
    os.environ.setdefault("APP_PASSWORD", "x")
    for name in ("sql-sink-postgres.yaml", "sql-sink-mysql.yaml"):
        config = load_config(CONFIGS / name)
        assert [type(s) for s in config.sinks] == [SqlSinkConfig]


def test_postgres_sink_example_passes_check(
    pg_url: str, postgres_server: PostgresInstance, kafka_bootstrap: str, registry_url: str
) -> None:
    url = sa.make_url(pg_url)
    user = f"report_{url.database[-8:]}"
    postgres_server.create_user(user, "s3cret")  # type: ignore[attr-defined]
    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"GRANT CREATE ON SCHEMA public TO {user}")
    engine.dispose()
    env = {
        **os.environ,
        "APP_USER": user,
        "APP_PASSWORD": "s3cret",
        "PG_HOST": str(url.host),
        "PG_PORT": str(url.port),
        "PG_DATABASE": str(url.database),
        "KAFKA_BOOTSTRAP": kafka_bootstrap,
        "SCHEMA_REGISTRY_URL": registry_url,
    }
    result = subprocess.run(
        [sys.executable, "-m", "liberator", "check", str(CONFIGS / "sql-sink-postgres.yaml")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "sink reporting (sql): target reachable" in result.stdout + result.stderr
    assert "s3cret" not in result.stdout + result.stderr
