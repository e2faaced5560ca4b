"""configs/mysql-binlog.yaml passes `liberator check` against a real MariaDB set up as the comments say;
a missing outbox table is one line with the fix."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import liberator_testbed as testbed
from liberator_testbed import MariaDBServer

CONFIG = Path(__file__).parents[2] / "configs" / "mysql-binlog.yaml"


def test_example_config_passes_check_and_a_missing_outbox_table_is_named(
    tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    if testbed.mode() != "native":
        pytest.skip("needs a private native MariaDB (the example's `shop` database)")
    with MariaDBServer() as server:
        server.create_database("shop")
        server.execute("CREATE TABLE shop.orders (id INT PRIMARY KEY, total DECIMAL(10,2))")
        server.execute("CREATE TABLE shop.order_lines (id INT PRIMARY KEY, order_id INT NOT NULL)")
        server.create_user("cdc", "s3cret", grants=("REPLICATION SLAVE", "BINLOG MONITOR", "SELECT"))
        env = {
            **os.environ,
            "APP_PASSWORD": "s3cret",
            "MYSQL_HOST": server.host,
            "MYSQL_PORT": str(server.port),
            "KAFKA_BOOTSTRAP": kafka_bootstrap,
            "SCHEMA_REGISTRY_URL": registry_url,
            "OFFSETS_PATH": str(tmp_path / "offsets.json"),
        }

        def check() -> subprocess.CompletedProcess[str]:
            command = [sys.executable, "-m", "liberator", "check", str(CONFIG)]
            return subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)

        missing = check()
        assert missing.returncode != 0
        assert "the outbox table shop.outbox does not exist; create it" in missing.stdout + missing.stderr
        server.execute(
            "CREATE TABLE shop.outbox (id BIGINT AUTO_INCREMENT PRIMARY KEY, aggregate_type VARCHAR(100) NOT NULL,"
            " aggregate_id VARCHAR(100) NOT NULL, event_type VARCHAR(100) NOT NULL, payload JSON NOT NULL,"
            " occurred_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6))"
        )
        result = check()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "s3cret" not in result.stdout + result.stderr
