"""Test-bed servers in Docker containers, for machines that have a Docker engine.

Selected with ``LIBERATOR_TESTBED=testcontainers``; needs ``pip install 'liberator[docker]'``
(testcontainers is imported lazily). Each class exposes the same API as its native counterpart
(``url()``, ``create_database()``, ``execute()``, ``create_user()``, ``bootstrap_servers``...), so the
fixtures do not care which one runs. What this mode adds over the native one: MySQL 8 itself instead of
MariaDB, and Apache Kafka instead of Tansu (tests marked ``real_kafka`` run only here). The schema
registry stays the embedded one in both modes.
"""

from __future__ import annotations

from typing import Any, Self

from liberator.embedded.broker import BrokerInstance
from liberator.embedded.process import TestbedError, track, untrack
from liberator_testbed.mariadb import MySQLInstance
from liberator_testbed.postgres import PostgresInstance

POSTGRES_IMAGE = "postgres:15"
MYSQL_IMAGE = "mysql:8.0"
KAFKA_IMAGE = "confluentinc/cp-kafka:7.6.1"
_PASSWORD = "test"


def _require(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise TestbedError(
            f"LIBERATOR_TESTBED=testcontainers needs testcontainers: pip install 'liberator[docker]' ({e})"
        ) from e


class PostgresContainer(PostgresInstance):
    """PostgreSQL 15 with ``wal_level=logical``; superuser ``postgres`` with password ``test``."""

    def __init__(self, image: str = POSTGRES_IMAGE):
        super().__init__("127.0.0.1", 0, admin_user="postgres", admin_password=_PASSWORD)
        self.image = image
        self._container: Any = None

    def start(self) -> Self:
        if self._container is not None:
            return self
        tc = _require("testcontainers.postgres")
        c = tc.PostgresContainer(
            self.image, username="postgres", password=_PASSWORD, dbname="postgres", driver="psycopg"
        )
        c.with_command(
            "-c wal_level=logical -c max_replication_slots=20 -c max_wal_senders=20 -c max_connections=200"
            " -c fsync=off -c full_page_writes=off"
        )
        c.start()
        self._container = c
        track(self, self.stop)
        self.host = c.get_container_host_ip()
        self.port = int(c.get_exposed_port(5432))
        # The image lets replication connections in only from inside the container: allow them by password.
        c.exec(["sh", "-c", 'echo "host replication all all scram-sha-256" >> "$PGDATA/pg_hba.conf"'])
        self.execute("SELECT pg_reload_conf()")
        return self

    def stop(self) -> None:
        untrack(self)
        if self._container is not None:
            self._container.stop()
            self._container = None


class MySQLContainer(MySQLInstance):
    """MySQL 8.0 with ROW binlog, FULL row image and metadata, GTIDs on; ``root`` has password ``test``."""

    flavor = "mysql"

    def __init__(self, image: str = MYSQL_IMAGE):
        super().__init__("127.0.0.1", 0, admin_user="root", admin_password=_PASSWORD)
        self.image = image
        self._container: Any = None

    def start(self) -> Self:
        if self._container is not None:
            return self
        tc = _require("testcontainers.mysql")
        c = tc.MySqlContainer(self.image, dialect="pymysql", username="root", password=_PASSWORD, dbname="test")
        c.with_command(
            "--server-id=1 --log-bin=binlog --binlog-format=ROW --binlog-row-image=FULL"
            " --binlog-row-metadata=FULL --gtid-mode=ON --enforce-gtid-consistency=ON"
            " --character-set-server=utf8mb4 --default-authentication-plugin=mysql_native_password"
        )
        c.start()
        self._container = c
        track(self, self.stop)
        self.host = c.get_container_host_ip()
        self.port = int(c.get_exposed_port(3306))
        return self

    def stop(self) -> None:
        untrack(self)
        if self._container is not None:
            self._container.stop()
            self._container = None


class KafkaContainer(BrokerInstance):
    """Apache Kafka (Confluent Platform image, KRaft, one broker)."""

    kind = "kafka"

    def __init__(self, image: str = KAFKA_IMAGE):
        self.image = image
        self._container: Any = None
        self._bootstrap = ""

    @property
    def bootstrap_servers(self) -> str:
        return self._bootstrap

    def start(self) -> Self:
        if self._container is not None:
            return self
        tc = _require("testcontainers.kafka")
        c = tc.KafkaContainer(self.image).with_kraft()
        # One broker: internal topics (transactions, offsets) must not ask for 3 replicas.
        c.with_env("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1")
        c.with_env("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1")
        c.start()
        self._container = c
        track(self, self.stop)
        self._bootstrap = c.get_bootstrap_server()
        return self

    def stop(self) -> None:
        untrack(self)
        if self._container is not None:
            self._container.stop()
            self._container = None
