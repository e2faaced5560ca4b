"""The postgres_wal source in the daemon, through the real broker and registry; start-up errors."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import liberator_testbed as testbed
from liberator.connectors.postgres_wal import PostgresWalSource
from liberator.registry.client import RegistryClient
from liberator_testbed import PostgresInstance, PostgresServer
from tests.integration.postgres_wal_support import Run, WalDb
from tests.support import DaemonThread, app_config, read_topic, wait_for


def source_yaml(db: WalDb, tables: str, extra: str = "") -> str:
    return (
        f"  - name: wal\n    type: postgres_wal\n    url: {db.url}\n    tables: {tables}\n"
        f"    slot: {db.tag}\n    publication: {db.tag}\n"
        f'    topic: "{db.tag}.{{schema}}.{{table}}"\n    status_interval: 500ms\n{extra}'
    )


def test_alter_table_mid_stream_registers_a_new_schema_before_its_first_event(
    pg_url: str, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    db = WalDb(pg_url)
    db.run("CREATE TABLE orders (id int PRIMARY KEY, total numeric(10,2) NOT NULL)")
    db.run("INSERT INTO orders VALUES (1, 10.50)")
    config = app_config(tmp_path, kafka_bootstrap, registry_url, source_yaml(db, "[orders]"))
    topic = f"{db.tag}.public.orders"
    with DaemonThread(config) as daemon:
        read_topic(kafka_bootstrap, registry_url, topic, expect=1)
        db.run("INSERT INTO orders VALUES (2, 20)")
        db.run("ALTER TABLE orders ADD COLUMN note text")
        db.run("INSERT INTO orders VALUES (3, 30, 'with a note')")
        db.run("UPDATE orders SET note = 'later' WHERE id = 1")
        records = read_topic(kafka_bootstrap, registry_url, topic, expect=4)
        wait_for(lambda: daemon.status("wal").positions_stored > 0, what="a stored position")
    assert [(r["value"]["op"], r["key"]["id"]) for r in records] == [("r", 1), ("c", 2), ("c", 3), ("u", 1)]
    assert "note" not in records[1]["value"]["after"]
    assert records[2]["value"]["after"] == {"id": 3, "total": "30.00", "note": "with a note"}
    assert records[3]["value"]["source"]["snapshot"] is False and records[0]["value"]["source"]["snapshot"] is True
    latest = RegistryClient(registry_url).latest(f"{topic}-value")
    assert latest is not None and latest[1] == 2, "the shape with `note` is the subject's second version"


def test_state_envelope_publishes_rows_and_tombstones(
    pg_url: str, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    db = WalDb(pg_url)
    db.run("CREATE TABLE kv (k text PRIMARY KEY, v jsonb)")
    db.run("""INSERT INTO kv VALUES ('a', '{"x": 1}')""")
    config = app_config(tmp_path, kafka_bootstrap, registry_url, source_yaml(db, "[kv]", "    envelope: state\n"))
    topic = f"{db.tag}.public.kv"
    with DaemonThread(config):
        read_topic(kafka_bootstrap, registry_url, topic, expect=1)
        db.run("DELETE FROM kv WHERE k = 'a'")
        records = read_topic(kafka_bootstrap, registry_url, topic, expect=2)
    assert [(r["key"], r["value"]) for r in records] == [({"k": "a"}, {"k": "a", "v": '{"x": 1}'}), ({"k": "a"}, None)]


def test_missing_privileges_are_one_line_each_with_the_fix(postgres_server: PostgresInstance, pg_url: str) -> None:
    db = WalDb(pg_url)
    db.run("CREATE TABLE secret (id int PRIMARY KEY)")
    role = f"r{db.tag}"
    postgres_server.create_user(role, "pw")
    url = db.url.replace("postgres@", f"{role}:pw@", 1)
    config = db.config(["secret"], url=url, create=False)
    problems = Run(config).source.check()
    assert any(f"role {role} may not use replication; run ALTER ROLE {role} REPLICATION" in p for p in problems)
    assert any(f'cannot read public.secret; run GRANT SELECT ON "public"."secret" TO {role}' in p for p in problems)
    assert any(f"publication {db.tag} does not exist; run CREATE PUBLICATION {db.tag}" in p for p in problems)
    assert any(f"slot {db.tag} does not exist; run SELECT pg_create_logical_replication_slot" in p for p in problems)
    assert all("\n" not in p for p in problems)
    with Run(config) as run, pytest.raises(Exception, match="may not use replication"):
        run.wait(lambda: False, timeout=10)


@pytest.fixture(scope="module")
def replica_level_server() -> Iterator[PostgresServer]:
    if testbed.mode() != "native":
        pytest.skip("needs a private native cluster")
    server = PostgresServer(settings={"wal_level": "replica"}).start()
    try:
        yield server
    finally:
        server.stop()


def test_wal_level_replica_is_refused_with_the_fix(replica_level_server: PostgresServer) -> None:
    replica_level_server.execute("CREATE TABLE IF NOT EXISTS t (id int PRIMARY KEY)")
    db = WalDb(replica_level_server.dsn())
    problems = Run(db.config(["t"])).source.check()
    assert problems[0] == (
        "source wal: wal_level is replica, logical decoding needs logical; run ALTER SYSTEM SET wal_level = logical; "
        "and restart PostgreSQL"
    )
    assert isinstance(Run(db.config(["t"])).source, PostgresWalSource)


def test_example_config_passes_check(
    postgres_server: PostgresInstance, pg_url: str, kafka_bootstrap: str, registry_url: str, tmp_path: Path
) -> None:
    db = WalDb(pg_url)
    db.run("CREATE TABLE orders (id int PRIMARY KEY, total numeric(10,2))")
    db.run("CREATE TABLE customers (id int PRIMARY KEY, name text, password_hash text)")
    user = f"cdc_{db.tag}"
    postgres_server.create_user(user, "s3cret", replication=True)
    db.run(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {user}")
    db.run(f"CREATE PUBLICATION {db.tag} FOR TABLE orders, customers")  # as the owner, the documented set-up
    host_port, database = db.url.split("@", 1)[1].split("/", 1)
    env = {
        **os.environ,
        "APP_USER": user,
        "APP_PASSWORD": "s3cret",
        "PG_HOST": host_port.split(":")[0],
        "PG_PORT": host_port.split(":")[1],
        "PG_DATABASE": database,
        "SLOT": db.tag,
        "PUBLICATION": db.tag,
        "KAFKA_BOOTSTRAP": kafka_bootstrap,
        "SCHEMA_REGISTRY_URL": registry_url,
        "OFFSETS_PATH": str(tmp_path / "offsets.json"),
    }
    config = Path(__file__).parents[2] / "configs" / "postgres-wal.yaml"
    result = subprocess.run(
        [sys.executable, "-m", "liberator", "check", str(config)], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "s3cret" not in result.stdout + result.stderr


def _streaming(db: WalDb) -> bool:
    rows = db.rows("SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s", (db.tag,))
    return bool(rows and rows[0][0])


def test_outbox_rows_and_logical_messages_become_domain_events(
    pg_url: str, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    db = WalDb(pg_url)
    db.run("CREATE TABLE orders (id int PRIMARY KEY, status text)")
    db.run(
        "CREATE TABLE outbox (id bigserial PRIMARY KEY, aggregate_type text NOT NULL, aggregate_id text NOT NULL,"
        " event_type text NOT NULL, payload jsonb NOT NULL, occurred_at timestamptz NOT NULL DEFAULT now())"
    )
    topic = f"{db.tag}.order"
    schema = {"type": "record", "name": "OrderEvent", "fields": [{"name": "status", "type": "string"}]}
    RegistryClient(registry_url).register(f"{topic}-value", schema)
    extra = (
        "    outbox:\n      table: public.outbox\n      message_prefix: outbox\n"
        f'      topic: "{db.tag}.{{aggregate_type}}"\n'
    )
    config = app_config(tmp_path, kafka_bootstrap, registry_url, source_yaml(db, "[orders]", extra))
    with DaemonThread(config):
        wait_for(lambda: _streaming(db), what="streaming")
        with db.conn.transaction():
            db.run("INSERT INTO orders VALUES (1, 'new')")
            db.run(
                "INSERT INTO outbox (aggregate_type, aggregate_id, event_type, payload)"
                """ VALUES ('order', '1', 'created', '{"status": "new"}')"""
            )
            db.run("DELETE FROM outbox")  # the application cleans up at once: the WAL still has the insert
        with db.conn.transaction():
            db.run("UPDATE orders SET status = 'shipped'")
            db.run(
                "SELECT pg_logical_emit_message(true, 'outbox', %s)",
                (
                    '{"aggregate_type": "order", "aggregate_id": "1", "event_type": "shipped",'
                    ' "payload": {"status": "shipped"}, "occurred_at": "2024-05-01T12:00:00+00:00"}',
                ),
            )
        db.run("SELECT pg_logical_emit_message(true, 'other', 'ignored')")
        records = read_topic(kafka_bootstrap, registry_url, topic, expect=2)
        rows = read_topic(kafka_bootstrap, registry_url, f"{db.tag}.public.orders", expect=2)
    assert [(r["key"], r["value"], r["headers"]["event_type"]) for r in records] == [
        ("1", {"status": "new"}, "created"),
        ("1", {"status": "shipped"}, "shipped"),
    ]
    assert records[1]["timestamp"] == "2024-05-01T12:00:00.000+00:00"
    assert records[1]["headers"]["id"].count("/") == 1  # a message's id defaults to its LSN
    assert [r["value"]["op"] for r in rows] == ["c", "u"]


def test_a_killed_replication_session_is_retried_without_loss(
    pg_url: str, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    db = WalDb(pg_url)
    db.run("CREATE TABLE t (id int PRIMARY KEY)")
    config = app_config(tmp_path, kafka_bootstrap, registry_url, source_yaml(db, "[t]"))
    topic = f"{db.tag}.public.t"
    with DaemonThread(config) as daemon:
        wait_for(lambda: _streaming(db), what="streaming")
        db.run("INSERT INTO t SELECT g FROM generate_series(1, 10) g")
        read_topic(kafka_bootstrap, registry_url, topic, expect=10)
        db.run("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = %s", (db.tag,))
        db.run("INSERT INTO t SELECT g FROM generate_series(11, 20) g")
        records = read_topic(kafka_bootstrap, registry_url, topic, expect=20)
        assert daemon.status("wal").retries >= 1
    assert sorted(r["key"]["id"] for r in records) == list(range(1, 21))
