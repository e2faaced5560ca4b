"""Helpers for the binlog source tests (no tests here): configs, a source driven in-process, topic reads,
and the `binlog_db` fixture that runs a test on MariaDB and on MySQL 8 (through testcontainers, where Docker is)."""

from __future__ import annotations

import importlib.util
import itertools
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import liberator_testbed as testbed
from liberator.capture import datum_events
from liberator.events import ChangeEvent, Checkpoint
from liberator.positions import Position
from liberator.source import Source
from liberator_testbed import MySQLInstance

_server_ids = itertools.count(1000 + uuid.uuid4().int % 100_000)


def next_server_id() -> int:
    return next(_server_ids)


def source_yaml(server: MySQLInstance, tables: str, prefix: str, extra: str = "", name: str = "cdc") -> str:
    url = server.url(driver=None)
    return (
        f"  - name: {name}\n    type: mysql_binlog\n    url: {url}\n    tables: {tables}\n"
        f"    server_id: {next_server_id()}\n    heartbeat: 200ms\n"
        f'    topic: "{prefix}.{{schema}}.{{table}}"\n{extra}'
    )


def make_source(server: MySQLInstance, tables: list[str], **options: Any) -> tuple[Source[Any, Any], threading.Event]:
    from liberator.connectors.mysql_binlog import MySQLBinlogSource
    from liberator.connectors.mysql_binlog.config import MySQLBinlogConfig

    config = MySQLBinlogConfig(
        name="cdc",
        url=options.pop("url", None) or server.url(driver=None),
        tables=tables,
        server_id=options.pop("server_id", None) or next_server_id(),
        heartbeat=options.pop("heartbeat", 0.2),
        **options,
    )
    import logging

    from liberator.source import SourceContext

    stop = threading.Event()
    return MySQLBinlogSource(config, SourceContext("test", stop, logging.getLogger("test.cdc"))), stop


def read_events(source: Source[Any, Any], start: Position | None) -> Iterator[Any]:
    """`source.read(start)` as the runtime sees it: each batch's events (datums, as Kafka gets them, decoded)
    then a Checkpoint at the batch's position (if it has one); idle ticks dropped."""
    return datum_events(source.read(start), source.config.envelope)


def collect(items: Iterator[Any], stop: threading.Event, until: Any, limit: int = 100_000) -> list[Any]:
    """Items from a source's read() until `until(items)` holds (then stop is set and the rest drained)."""
    out: list[Any] = []
    for item in items:
        out.append(item)
        if until(out) or len(out) >= limit:
            stop.set()
            break
    return out


def changes(items: list[Any]) -> list[ChangeEvent]:
    return [i for i in items if isinstance(i, ChangeEvent)]


def checkpoints(items: list[Any]) -> list[Checkpoint]:
    return [i for i in items if isinstance(i, Checkpoint)]


def docker_missing() -> str | None:
    """Why MySQL 8 cannot run here, or None when testcontainers can start it."""
    if importlib.util.find_spec("testcontainers") is None or importlib.util.find_spec("docker") is None:
        return "MySQL 8 runs in Docker through testcontainers: pip install 'liberator[docker]' on a machine with Docker"
    import docker  # type: ignore[import-untyped,import-not-found,unused-ignore]

    try:
        docker.from_env().ping()
    except Exception as exc:  # any failure means: no usable engine
        return f"MySQL 8 runs in Docker through testcontainers; no Docker engine is reachable ({type(exc).__name__})"
    return None


# Defined under private names with `name=`: test modules import them (pytest sees the fixture) without the
# import clashing with the test functions' parameters.
@pytest.fixture(scope="session", name="mysql8_server")
def _mysql8_server(mariadb_server: MySQLInstance) -> Iterator[MySQLInstance]:
    if not mariadb_server.is_mariadb:  # LIBERATOR_TESTBED=testcontainers: the session server is MySQL 8 already
        yield mariadb_server
        return
    reason = docker_missing()
    if reason is not None:
        pytest.skip(reason)
    from liberator_testbed.docker import MySQLContainer

    server = MySQLContainer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["mariadb", "mysql8"], name="binlog_db")
def _binlog_db(request: pytest.FixtureRequest) -> Iterator[tuple[MySQLInstance, str]]:
    """(server, a fresh database): MariaDB 10.11 here, and MySQL 8 where Docker exists (skipped otherwise)."""
    server: MySQLInstance = request.getfixturevalue("mariadb_server" if request.param == "mariadb" else "mysql8_server")
    if request.param == "mariadb" and not server.is_mariadb:
        pytest.skip("the session server is MySQL 8 (LIBERATOR_TESTBED=testcontainers); see the mysql8 case")
    name = testbed.unique_name(request.node.name, max_len=60)
    server.create_database(name)
    try:
        yield server, name
    finally:
        server.drop_database(name)


def numbers(count: int) -> str:
    """A SELECT of 1..count that MariaDB and MySQL 8 both run (MariaDB's seq_1_to_N is MariaDB-only)."""
    return f"WITH RECURSIVE n (i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {int(count)}) SELECT i FROM n"
