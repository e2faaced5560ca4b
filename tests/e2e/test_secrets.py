"""No secret is ever shown: a password planted in every secret-bearing field works where a server checks
it, and never appears, whole, percent-encoded or in pieces, in anything liberator prints or serves.

The password holds `@ : / space %`: substituted unencoded into a URL's userinfo, `@` split it (the tail
leaked as a host name) and a space made libpq quote the whole URL in its error.
"""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
from confluent_kafka import Producer

from liberator.connectors.outbox.ddl import outbox_ddl
from liberator.embedded.ports import free_port
from liberator_testbed import MySQLInstance, PostgresInstance

pytestmark = pytest.mark.e2e

PASSWORD = "Pw9Kx@Lm4Jd:Qz8Hv/ Rt5Wb%Vy6Nc"  # what the database users, the registry and SASL get
WRONG = "Wr0Ng@Aa1Bb:Cc2Dd/ Ee3Ff%Gg4Hh"  # planted where it is refused
PLANTED = [PASSWORD, WRONG]


def leaks(text: str) -> list[str]:
    """Every form of a planted secret found in `text`: whole, percent-encoded, basic-auth header, pieces."""
    found = []
    for secret in PLANTED:
        forms = [secret, quote(secret, safe=""), quote(secret), base64.b64encode(f"reg:{secret}".encode()).decode()]
        pieces = secret.replace("@", " ").replace(":", " ").replace("/", " ").replace("%", " ").split()
        found += [form for form in forms + pieces if form in text]
    return found


@dataclass
class Outputs:
    """Everything liberator printed or served in a test, to grep at the end."""

    texts: dict[str, str] = field(default_factory=dict)

    def add(self, what: str, text: str) -> None:
        self.texts[f"{what} #{len(self.texts)}"] = text

    def cli(self, *args: str, env: dict[str, str], stdin: str | None = None, timeout: float = 120) -> Any:
        result = subprocess.run(
            [sys.executable, "-m", "liberator", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
            input=stdin,
        )
        self.add(" ".join(args[:2]), result.stdout + result.stderr)
        return result

    def assert_no_leak(self) -> None:
        found = {what: leaks(text) for what, text in self.texts.items()}
        assert not any(found.values()), {what: forms for what, forms in found.items() if forms}


@dataclass
class Bed:
    pg: PostgresInstance
    my: MySQLInstance
    pg_user: str
    my_user: str
    pg_db: str
    my_db: str
    tag: str
    kafka: str
    registry: str
    tmp: Path

    def pg_url(self, password_var: str, driver: str = "postgresql") -> str:
        return f"{driver}://{self.pg_user}:${{{password_var}}}@{self.pg.host}:{self.pg.port}/{self.pg_db}"

    def my_url(self, password_var: str, database: str = "") -> str:
        return f"mysql://{self.my_user}:${{{password_var}}}@{self.my.host}:{self.my.port}/{database}"

    def config(
        self,
        name: str,
        db_password: str,
        kafka: str | None = None,
        registry_port: int | None = None,
        sasl: bool = False,
        offsets: str = "file",
    ) -> Path:
        """Every secret-bearing field holds a ${...} reference; `db_password` names the variable for the DBs."""
        registry_port = registry_port or int(self.registry.rsplit(":", 1)[1])
        port = free_port()
        security = "    security.protocol: SASL_PLAINTEXT\n    sasl.mechanism: PLAIN\n" if sasl else ""
        tag = self.tag
        text = f"""\
name: {name}
kafka:
  bootstrap_servers: {kafka or self.kafka}
  settings:
{security}    sasl.username: liberator
    sasl.password: ${{KAFKA_PASSWORD}}
    debug: conf
schema_registry:
  url: http://reg:${{REGISTRY_PASSWORD}}@127.0.0.1:{registry_port}
  basic_auth: reg:${{REGISTRY_PASSWORD}}
offsets:
  store: {offsets}
  path: {self.tmp}/{name}-offsets.json
  topic: {tag}-{name}-offsets
  flush_interval: 200ms
http:
  listen: 127.0.0.1:{port}
sources:
  - name: wal
    type: postgres_wal
    url: {self.pg_url(db_password)}
    tables: [public.items]
    slot: {tag}_{name}
    publication: {tag}_{name}
    create: true
    topic: "{tag}.{name}.wal.{{table}}"
  - name: pgquery
    type: query
    url: {self.pg_url(db_password, "postgresql+psycopg")}
    tables: [public.items]
    cursor: [id]
    poll_interval: 200ms
    topic: "{tag}.{name}.pgquery.{{table}}"
  - name: binlog
    type: mysql_binlog
    url: {self.my_url(db_password)}
    tables: [{self.my_db}.items]
    server_id: {free_port()}
    topic: "{tag}.{name}.binlog.{{table}}"
  - name: myquery
    type: query
    url: {self.my_url(db_password, self.my_db)}
    tables: [items]
    cursor: [id]
    poll_interval: 200ms
    topic: "{tag}.{name}.myquery.{{table}}"
  - name: myoutbox
    type: outbox
    url: {self.my_url(db_password, self.my_db)}
    poll_interval: 200ms
  - name: keepalive
    type: query
    url: sqlite:///{self.tmp}/keepalive.db
    tables: [items]
    cursor: [id]
    poll_interval: 200ms
    topic: "{tag}.{name}.keepalive.{{table}}"
sinks:
  - name: topg
    type: sql
    url: {self.pg_url(db_password, "postgresql+psycopg")}
    topics: [{tag}.{name}.pgquery.items]
    table: copy_{name}
    create: true
    consumer: {{settings: {{session.timeout.ms: 6000, fetch.wait.max.ms: 10, topic.metadata.refresh.interval.ms: 500}}}}
  - name: tomy
    type: sql
    url: {self.my_url(db_password, self.my_db)}
    topics: [{tag}.{name}.myquery.items]
    table: copy_{name}
    create: true
    consumer: {{settings: {{session.timeout.ms: 6000, fetch.wait.max.ms: 10, topic.metadata.refresh.interval.ms: 500}}}}
"""
        path = self.tmp / f"{name}.yaml"
        path.write_text(text)
        self.health_port = port
        return path

    def env(self, **values: str) -> dict[str, str]:
        defaults = {"DB_PASSWORD": PASSWORD, "KAFKA_PASSWORD": PASSWORD, "REGISTRY_PASSWORD": PASSWORD}
        return {**os.environ, "PYTHONUNBUFFERED": "1", **defaults, **values}


@pytest.fixture
def bed(
    postgres_server: PostgresInstance,
    mariadb_server: MySQLInstance,
    pg_database: str,
    mysql_database: str,
    kafka_bootstrap: str,
    registry_url: str,
    tmp_path: Path,
) -> Iterator[Bed]:
    tag = f"s{uuid.uuid4().hex[:8]}"
    pg_user, my_user = f"{tag}_pg", f"{tag}_my"  # roles and users are server-wide: one per test
    postgres_server.create_user(pg_user, PASSWORD, superuser=True, replication=True)
    mariadb_server.create_user(my_user, PASSWORD)
    with psycopg.connect(postgres_server.dsn(pg_database), autocommit=True) as conn:
        conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
        conn.execute("INSERT INTO items VALUES (1, 'one'), (2, 'two')")
    for statement in [
        "CREATE TABLE items (id INTEGER PRIMARY KEY, name VARCHAR(20) NOT NULL)",
        "INSERT INTO items VALUES (1, 'one'), (2, 'two')",
        outbox_ddl("mysql").strip().rstrip(";"),
    ]:
        mariadb_server.execute(statement, database=mysql_database)
    with sqlite3.connect(tmp_path / "keepalive.db") as conn:
        conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
        conn.execute("INSERT INTO items VALUES (1, 'one')")
    yield Bed(
        postgres_server, mariadb_server, pg_user, my_user, pg_database, mysql_database, tag, kafka_bootstrap,
        registry_url, tmp_path,
    )  # fmt: skip
    with psycopg.connect(postgres_server.dsn(pg_database), autocommit=True) as conn:
        conn.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name LIKE %s",
                     (f"{tag}%",))  # fmt: skip


def get(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode())
    except urllib.error.HTTPError as error:  # 503 once a source failed: the body is what counts
        return str(error.read().decode())
    except OSError:
        return ""


class Daemon:
    """`liberator run` as a process, its log and its /health, all kept in `outputs`."""

    def __init__(self, outputs: Outputs, config: Path, port: int, env: dict[str, str]) -> None:
        self.outputs = outputs
        self.port = port
        self.log = config.with_suffix(".log")
        handle = open(self.log, "wb")  # noqa: SIM115 - handed to the child
        self.process = subprocess.Popen(
            [sys.executable, "-m", "liberator", "--log-level", "DEBUG", "run", str(config)],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=env,
        )

    def health(self) -> dict[str, Any]:
        text = get(f"http://127.0.0.1:{self.port}/health")
        return json.loads(text) if text else {}

    def wait(self, condition: Any, what: str, timeout: float = 90) -> None:
        from tests.support import wait_for

        def ready() -> bool:
            assert self.process.poll() is None, self.log.read_text(errors="replace")[-3000:]
            health = self.health()  # {} until the endpoint listens
            if not health.get("sources"):
                return False  # the endpoint listens a moment before the daemon registers its sources
            return bool(condition(health))

        wait_for(ready, timeout=timeout, what=what)

    def stop(self) -> None:
        for endpoint in ("/health", "/metrics"):
            body = get(f"http://127.0.0.1:{self.port}{endpoint}")
            assert body or self.process.poll() is not None, f"{endpoint} did not answer"
            self.outputs.add(endpoint, body)
        self.process.terminate()
        self.process.wait(90)
        self.outputs.add("run log", self.log.read_text(errors="replace"))


def states(health: dict[str, Any]) -> dict[str, tuple[str, str | None]]:
    parts = {**health.get("sources", {}), **health.get("sinks", {})}
    return {name: (part["state"], part["error"]) for name, part in parts.items()}


def test_a_planted_password_works_and_never_shows(bed: Bed) -> None:
    out = Outputs()
    env = bed.env()
    config = bed.config("works", "DB_PASSWORD")

    check = out.cli("check", str(config), env=env)
    assert check.returncode == 0, check.stdout + check.stderr
    assert out.cli("schemas", str(config), env=env).returncode == 0

    daemon = Daemon(out, config, bed.health_port, env)
    try:
        daemon.wait(
            lambda h: (
                all(h["sources"][s]["events_acked"] >= 2 for s in ("wal", "pgquery", "binlog", "myquery"))
                and all(h["sinks"][s]["records_applied"] >= 2 for s in ("topg", "tomy"))
                and h["sources"]["myoutbox"]["state"] == "running"
            ),
            what="every source publishing and every sink applying, each logged in with the password",
        )
        assert all(error is None for _state, error in states(daemon.health()).values()), states(daemon.health())
    finally:
        daemon.stop()
    assert bed.pg.execute("SELECT count(*) FROM copy_works", database=bed.pg_db) == [(2,)]
    assert bed.my.execute("SELECT count(*) FROM copy_works", database=bed.my_db) == [(2,)]

    shown = out.cli("offsets", "show", str(config), env=env)
    assert shown.returncode == 0
    wal = json.dumps(json.loads(shown.stdout)["wal"])
    assert out.cli("offsets", "set", str(config), "--source", "wal", "-", env=env, stdin=wal).returncode == 0
    assert out.cli("offsets", "reset", str(config), "--source", "keepalive", env=env).returncode == 0

    registry = bed.registry.replace("http://", f"http://reg:{quote(PASSWORD, safe='')}@")
    tail = out.cli(
        "tail", f"{bed.tag}.works.pgquery.items", "--bootstrap-servers", bed.kafka, "--registry", registry,
        "--from-beginning", "--max", "2", env=env,
    )  # fmt: skip
    assert tail.returncode == 0 and len(tail.stdout.splitlines()) == 2, tail.stderr
    out.assert_no_leak()


def test_a_refused_password_never_shows(bed: Bed) -> None:
    out = Outputs()
    env = bed.env(DB_PASSWORD=WRONG)
    config = bed.config("refused", "DB_PASSWORD")
    check = out.cli("check", str(config), env=env)
    assert check.returncode == 1
    refused = [line for line in check.stdout.splitlines() if "refused the credentials" in line or "denied" in line]
    assert len(refused) >= 5, check.stdout

    daemon = Daemon(out, config, bed.health_port, env)
    try:
        daemon.wait(
            # (a sink logs in when it has records to apply: `check` above showed them refused)
            lambda h: all(h["sources"][s]["state"] in ("failed", "retrying") for s in h["sources"] if s != "keepalive"),
            what="every source's database refusing the password",
        )
    finally:
        daemon.stop()
    out.assert_no_leak()


def test_an_unreachable_registry_never_shows_its_credentials(bed: Bed) -> None:
    out = Outputs()
    env = bed.env()
    config = bed.config("noregistry", "DB_PASSWORD", registry_port=free_port())
    check = out.cli("check", str(config), env=env)
    assert check.returncode == 1
    assert any("schema registry at http://reg:***@127.0.0.1:" in line for line in check.stdout.splitlines())

    daemon = Daemon(out, config, bed.health_port, env)
    try:
        daemon.wait(
            lambda h: "schema registry at http://reg:***@" in str(h["sources"]["keepalive"]["error"]),
            what="the registry failure in /health",
        )
    finally:
        daemon.stop()
    topic = f"{bed.tag}.framed"
    producer = Producer({"bootstrap.servers": bed.kafka})
    producer.produce(topic, key=b"\x00\x00\x00\x00\x01k", value=b"\x00\x00\x00\x00\x01v")
    assert producer.flush(30) == 0
    registry = f"http://reg:{quote(PASSWORD, safe='')}@127.0.0.1:{free_port()}"
    tail = out.cli(
        "tail", topic, "--bootstrap-servers", bed.kafka, "--registry", registry, "--from-beginning", "--max", "1",
        env=env,
    )  # fmt: skip
    assert tail.returncode == 1 and "schema registry at http://reg:***@127.0.0.1:" in tail.stderr, tail.stderr
    out.assert_no_leak()


def test_an_unreachable_broker_never_shows_the_sasl_password(bed: Bed) -> None:
    out = Outputs()
    env = bed.env()
    down = f"127.0.0.1:{free_port()}"
    config = bed.config("nobroker", "DB_PASSWORD", kafka=down, sasl=True, offsets="kafka")
    check = out.cli("check", str(config), env=env)
    assert check.returncode == 1 and f"Kafka at {down} did not answer" in check.stdout

    daemon = Daemon(out, config, bed.health_port, env)
    try:
        daemon.wait(lambda h: True, what="/health to answer", timeout=60)
    finally:
        daemon.stop()
    assert out.cli("offsets", "show", str(config), env=env).returncode == 1
    registry = bed.registry.replace("http://", f"http://reg:{quote(PASSWORD, safe='')}@")
    tail = out.cli("tail", "any", "--bootstrap-servers", down, "--registry", registry, env=env)
    assert tail.returncode == 1
    out.assert_no_leak()
