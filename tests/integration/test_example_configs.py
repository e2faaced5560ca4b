"""The example configs in configs/ are real: they load, and `liberator check` passes against real servers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from liberator.config import load_config
from tests.integration.legacy_db import LegacyDb

CONFIGS = sorted((Path(__file__).parents[2] / "configs").glob("*.yaml"))


def test_there_are_examples() -> None:
    assert len(CONFIGS) >= 3


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_example_loads(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_PASSWORD", "secret")
    config = load_config(path)
    assert config.sources or config.sinks


@pytest.mark.parametrize("name", ["query-postgres.yaml", "query-view.yaml"])
def test_postgres_examples_pass_check(
    name: str, pg_url: str, postgres_server: object, kafka_bootstrap: str, registry_url: str, tmp_path: Path
) -> None:
    legacy = LegacyDb(pg_url, "postgresql")
    legacy.create_orders()
    legacy.run(
        "CREATE TABLE customers (id INT PRIMARY KEY, name TEXT NOT NULL, password_hash TEXT, "
        "updated_at TIMESTAMP(6) NOT NULL)"
    )
    url = sa.make_url(pg_url)
    user = f"app_{legacy.prefix}"  # roles are cluster-wide: one per test
    postgres_server.create_user(user, "s3cret")  # type: ignore[attr-defined]
    legacy.run(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {user}")
    env = {
        **os.environ,
        "APP_USER": user,
        "APP_PASSWORD": "s3cret",
        "PG_HOST": str(url.host),
        "PG_PORT": str(url.port),
        "PG_DATABASE": str(url.database),
        "KAFKA_BOOTSTRAP": kafka_bootstrap,
        "SCHEMA_REGISTRY_URL": registry_url,
        "OFFSETS_PATH": str(tmp_path / "offsets.json"),
    }
    config = Path(__file__).parents[2] / "configs" / name
    result = subprocess.run(
        [sys.executable, "-m", "liberator", "check", str(config)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "s3cret" not in result.stdout + result.stderr


def test_outbox_postgres_example_passes_check(
    pg_url: str, postgres_server: object, kafka_bootstrap: str, registry_url: str, tmp_path: Path
) -> None:
    from liberator.connectors.outbox.ddl import outbox_ddl

    legacy = LegacyDb(pg_url, "postgresql")
    for statement in outbox_ddl("postgresql", notify_channel="outbox_wake").split(";\n\n"):
        legacy.run(statement.strip().rstrip(";"))
    url = sa.make_url(pg_url)
    user = f"app_{legacy.prefix}"
    postgres_server.create_user(user, "s3cret")  # type: ignore[attr-defined]
    legacy.run(f"GRANT SELECT, UPDATE, DELETE ON outbox TO {user}")
    env = {
        **os.environ,
        "APP_USER": user,
        "APP_PASSWORD": "s3cret",
        "PG_HOST": str(url.host),
        "PG_PORT": str(url.port),
        "PG_DATABASE": str(url.database),
        "KAFKA_BOOTSTRAP": kafka_bootstrap,
        "SCHEMA_REGISTRY_URL": registry_url,
        "OFFSETS_PATH": str(tmp_path / "offsets.json"),
    }
    config = Path(__file__).parents[2] / "configs" / "outbox-postgres.yaml"
    command = [sys.executable, "-m", "liberator", "check", str(config)]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "s3cret" not in result.stdout + result.stderr
    legacy.run(f"REVOKE DELETE ON outbox FROM {user}")  # the cleanup needs it: check must say so
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 1
    assert "permission denied for table outbox; grant the user SELECT, UPDATE, DELETE on outbox" in result.stdout
