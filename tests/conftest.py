"""Shared fixtures: real throwaway servers from ``liberator_testbed``, started lazily.

Session-scoped servers start only when a test asks for them and stop at the end of the session:
``postgres_server``, ``mariadb_server``, ``kafka_broker`` / ``kafka_bootstrap``, ``registry_server`` /
``registry_url``. Per-test: ``pg_database`` / ``pg_url`` and ``mysql_database`` / ``mysql_url`` give a
fresh, empty database that is dropped afterwards.

``LIBERATOR_TESTBED=testcontainers`` runs the databases and Kafka in Docker (see liberator_testbed).
Tests under tests/integration are marked ``integration``, under tests/e2e ``e2e``; tests marked
``real_kafka`` are skipped unless a real Kafka (testcontainers mode) is in use.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import liberator_testbed as testbed
from liberator_testbed import BrokerInstance, EmbeddedRegistry, MySQLInstance, PostgresInstance

_TESTS = Path(__file__).resolve().parent
_DIR_MARKERS = {"integration": "integration", "e2e": "e2e"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    real_kafka = testbed.mode() == "testcontainers"
    skip_real_kafka = pytest.mark.skip(reason="needs a real Kafka: run with LIBERATOR_TESTBED=testcontainers")
    for item in items:
        try:
            rel = Path(item.path).resolve().relative_to(_TESTS)
        except ValueError:
            rel = None
        if rel is not None and rel.parts and rel.parts[0] in _DIR_MARKERS:
            item.add_marker(_DIR_MARKERS[rel.parts[0]])
        if not real_kafka and item.get_closest_marker("real_kafka") is not None:
            item.add_marker(skip_real_kafka)


# --- servers (session) -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresInstance]:
    server = testbed.start_postgres()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def mariadb_server() -> Iterator[MySQLInstance]:
    server = testbed.start_mariadb()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[BrokerInstance]:
    broker = testbed.start_broker()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_broker: BrokerInstance) -> str:
    return kafka_broker.bootstrap_servers


@pytest.fixture(scope="session")
def registry_server() -> Iterator[EmbeddedRegistry]:
    registry = testbed.start_registry()
    try:
        yield registry
    finally:
        registry.stop()


@pytest.fixture(scope="session")
def registry_url(registry_server: EmbeddedRegistry) -> str:
    return registry_server.url


# --- fresh databases (per test) ----------------------------------------------------------------


@pytest.fixture
def pg_database(postgres_server: PostgresInstance, request: pytest.FixtureRequest) -> Iterator[str]:
    name = testbed.unique_name(request.node.name, max_len=60)
    postgres_server.create_database(name)
    yield name
    postgres_server.drop_database(name)


@pytest.fixture
def pg_url(postgres_server: PostgresInstance, pg_database: str) -> str:
    """SQLAlchemy URL (``postgresql+psycopg://``, superuser) of a fresh database."""
    return postgres_server.url(pg_database)


@pytest.fixture
def mysql_database(mariadb_server: MySQLInstance, request: pytest.FixtureRequest) -> Iterator[str]:
    name = testbed.unique_name(request.node.name, max_len=60)
    mariadb_server.create_database(name)
    yield name
    mariadb_server.drop_database(name)


@pytest.fixture
def mysql_url(mariadb_server: MySQLInstance, mysql_database: str) -> str:
    """SQLAlchemy URL (``mysql+pymysql://``, root) of a fresh database."""
    return mariadb_server.url(mysql_database)
