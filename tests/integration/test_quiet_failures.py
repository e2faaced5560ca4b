"""Under a failure each command says what is wrong once: no floods of librdkafka lines, no tracebacks."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from confluent_kafka import Producer

from liberator.embedded.ports import free_port
from tests.support import app_config, cli, start_daemon_process, terminate, wait_for


def sqlite_source(tmp_path: Path) -> str:
    db = tmp_path / "legacy.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
    return f"  - name: legacy\n    type: query\n    url: sqlite:///{db}\n    tables: [items]\n    cursor: [id]\n"


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def test_check_with_a_down_broker_says_so_once(tmp_path: Path, registry_url: str) -> None:
    down = f"127.0.0.1:{free_port()}"
    result = cli("check", str(app_config(tmp_path, down, registry_url, sqlite_source(tmp_path))))
    assert result.returncode == 1
    output = lines(result.stdout + result.stderr)
    assert [line for line in output if line.startswith("problem:")] == [
        f"problem: Kafka at {down} did not answer (Failed to get metadata: Local: Broker transport failure); "
        "start it or fix kafka.bootstrap_servers"
    ]
    assert all(line.startswith(("ok: ", "problem: ")) for line in output), output
    assert len(output) <= 4, output


def test_tail_with_a_down_broker_exits_1_with_one_line(registry_url: str) -> None:
    down = f"127.0.0.1:{free_port()}"
    result = cli("tail", "some.topic", "--bootstrap-servers", down, "--registry", registry_url, "--idle-timeout", "5")
    assert result.returncode == 1
    assert lines(result.stdout + result.stderr) == [
        f"liberator: error: Kafka at {down} did not answer (Failed to get metadata: Local: Broker transport "
        "failure); start it or fix --bootstrap-servers"
    ]
    as_json = cli("tail", "some.topic", "--bootstrap-servers", down, "--registry", registry_url, "--log-format", "json")
    assert as_json.returncode == 1
    [line] = lines(as_json.stdout + as_json.stderr)  # a log collector reads stderr: the error is one object too
    entry = json.loads(line)
    assert entry["level"] == "ERROR" and entry["logger"] == "liberator", entry
    assert entry["message"].startswith(f"Kafka at {down} did not answer") and "--bootstrap-servers" in entry["message"]


class _Refusing(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'{"error_code": 401, "message": "Unauthorized"}'
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def refusing_registry() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Refusing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_tail_against_a_401_registry_is_one_line(kafka_bootstrap: str, refusing_registry: str) -> None:
    topic = f"quiet-{free_port()}"
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(topic, key=b"\x00\x00\x00\x00\x01\x02", value=b"\x00\x00\x00\x00\x01\x02")
    assert producer.flush(30) == 0
    result = cli(
        "tail", topic, "--bootstrap-servers", kafka_bootstrap, "--registry", refusing_registry,
        "--from-beginning", "--max", "1",
    )  # fmt: skip
    assert result.returncode == 1
    assert lines(result.stdout + result.stderr) == [
        f"liberator: error: schema registry at {refusing_registry} refused the request with HTTP 401 (credentials "
        "required); set user:password@ in the registry URL"
    ]
    with_credentials = refusing_registry.replace("http://", "http://reader:Wq4%40wrong@")
    result = cli(
        "tail", topic, "--bootstrap-servers", kafka_bootstrap, "--registry", with_credentials,
        "--from-beginning", "--max", "1",
    )  # fmt: skip
    assert lines(result.stdout + result.stderr) == [
        f"liberator: error: schema registry at {with_credentials.replace('Wq4%40wrong', '***')} refused the "
        "request with HTTP 401 (bad credentials); fix user:password@ in the registry URL"
    ]


def test_a_successful_tail_prints_records_and_nothing_else(kafka_bootstrap: str, registry_url: str) -> None:
    topic = f"quiet-{free_port()}"
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(topic, key=b"plain", value=b"bytes")
    assert producer.flush(30) == 0
    result = cli("tail", topic, "--bootstrap-servers", kafka_bootstrap, "--registry", registry_url, "--from-beginning",
                 "--max", "1")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no library warnings (Authlib's deprecation warning was printed on every tail)
    assert json.loads(result.stdout)["value"] == {"undecodable_base64": "Ynl0ZXM="}


def test_a_daemon_with_a_down_broker_folds_librdkafka_lines(tmp_path: Path, registry_url: str) -> None:
    down = f"127.0.0.1:{free_port()}"
    sink = (
        f"sinks:\n  - name: copy\n    type: sql\n    url: sqlite:///{tmp_path}/copy.db\n    topics: [quiet.items]\n"
        "    create: true\n"
    )
    config = app_config(tmp_path, down, registry_url, "")
    config.write_text(config.read_text().replace("sources:\n", sink))
    log = tmp_path / "daemon.log"
    process = start_daemon_process(config, log)
    try:
        wait_for(lambda: "Connection refused" in log.read_text(), what="the first connection failure")
        # What is measured is a span of time: librdkafka retries every 50 ms or so, and 8 s of that
        # were ~150 lines saying the same thing.
        first = time.monotonic()
        wait_for(lambda: time.monotonic() - first >= 8, timeout=20, what="8 s of a down broker")
    finally:
        terminate(process)
    kafka_lines = [line for line in lines(log.read_text()) if "liberator.kafka" in line]
    assert 1 <= len(kafka_lines) <= 3, kafka_lines


def test_unreachable_database_is_named_once_per_line(tmp_path: Path, registry_url: str, kafka_bootstrap: str) -> None:
    source = (
        f"  - name: pg\n    type: postgres_wal\n    url: postgresql://cdc:pw@127.0.0.1:{free_port()}/shop\n"
        "    tables: [public.items]\n"
    )
    config = app_config(tmp_path, kafka_bootstrap, registry_url, source)
    (problem,) = [line for line in cli("check", str(config)).stdout.splitlines() if "source pg" in line]
    assert problem.count("cannot reach") == 1 and problem.count("source pg") == 1, problem
    log = tmp_path / "daemon.log"
    process = start_daemon_process(config, log)
    try:
        wait_for(lambda: log.read_text().count("retrying in") >= 2, what="two retries")
    finally:
        terminate(process)
    retries = [line for line in lines(log.read_text()) if "retrying in" in line]
    assert all(line.count("cannot reach") == 1 and line.count("source pg") == 1 for line in retries), retries


def test_the_replica_identity_warning_is_logged_once_per_table(
    tmp_path: Path, pg_url: str, postgres_server: object, kafka_bootstrap: str
) -> None:
    import psycopg

    from liberator.connectors.postgres_wal.connection import libpq_url

    with psycopg.connect(libpq_url(pg_url), autocommit=True) as conn:
        conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT)")  # REPLICA IDENTITY DEFAULT
        conn.execute("INSERT INTO items VALUES (1, 'one')")  # an event, so its schema must be registered
    tag = f"q{free_port()}"
    source = (
        f"  - name: pg\n    type: postgres_wal\n    url: {pg_url}\n    tables: [public.items]\n"
        f"    slot: {tag}\n    publication: {tag}\n    create: true\n"
    )
    # An unreachable registry makes the source retry from the start again and again.
    config = app_config(tmp_path, kafka_bootstrap, f"http://127.0.0.1:{free_port()}", source)
    log = tmp_path / "daemon.log"
    process = start_daemon_process(config, log)
    try:
        wait_for(lambda: log.read_text().count("retrying in") >= 3, timeout=60, what="three retries")
    finally:
        terminate(process)
        with psycopg.connect(libpq_url(pg_url), autocommit=True) as conn:
            conn.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s",
                         (tag,))  # fmt: skip
    assert log.read_text().count("has REPLICA IDENTITY DEFAULT") == 1, log.read_text()
