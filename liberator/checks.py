"""`liberator check`: connect to everything a config names and report each problem on one line."""

from __future__ import annotations

import threading
from collections.abc import Callable

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from liberator.config import AppConfig
from liberator.errors import LiberatorError
from liberator.kafkalog import with_kafka_logger
from liberator.offsets import open_store
from liberator.registry.client import RegistryClient
from liberator.runtime import build_source, registry_client


def check_all(config: AppConfig, report: Callable[[str], None]) -> list[str]:
    problems: list[str] = []
    servers = config.kafka.bootstrap_servers
    admin = AdminClient(
        with_kafka_logger(
            {
                "bootstrap.servers": servers,
                "socket.timeout.ms": 5000,
                **{k: v for k, v in config.kafka.settings.items() if k.startswith(("security.", "sasl.", "ssl."))},
            }
        )
    )
    try:
        metadata = admin.list_topics(timeout=8)
        report(f"Kafka at {servers}: {len(metadata.brokers)} broker(s)")
        kafka_ok = True
    except KafkaException as exc:
        problems.append(
            f"Kafka at {servers} did not answer ({exc.args[0].str()}); start it or fix kafka.bootstrap_servers"
        )
        kafka_ok = False

    registry = registry_client(config, timeout=5)
    try:
        count = len(registry.subjects())
        report(f"schema registry at {registry.url}: {count} subject(s)")
    except LiberatorError as exc:
        problems.append(str(exc))

    if config.offsets.store == "file" or kafka_ok:
        store = open_store(config)
        try:
            stored = store.load_all()
            report(f"offsets in {store.describe()}: {len(stored)} stored position(s)")
        except LiberatorError as exc:
            problems.append(str(exc))
        finally:
            store.close()

    for source_config in config.sources:
        try:
            source = build_source(source_config, config.name, threading.Event(), registry)
        except LiberatorError as exc:
            problems.append(str(exc))
            continue
        try:
            found = source.check()
            if found:
                problems.extend(
                    f"source {source_config.name}: {line}" if not line.startswith("source ") else line for line in found
                )
            else:
                report(f"source {source_config.name} ({source_config.type}): reachable, tables readable")
        finally:
            source.close()
    problems.extend(check_sinks(config, registry, report))
    return problems


def check_sinks(config: AppConfig, registry: RegistryClient, report: Callable[[str], None]) -> list[str]:
    from liberator.sinkrunner import DeadLetterProducer, build_sink

    problems: list[str] = []
    for sink_config in config.sinks:
        try:
            sink = build_sink(sink_config, config.name, threading.Event(), registry, DeadLetterProducer({}))
        except LiberatorError as exc:
            problems.append(str(exc))
            continue
        try:
            found = sink.check()
            problems.extend(
                f"sink {sink_config.name}: {line}" if not line.startswith("sink ") else line for line in found
            )
            if not found:
                report(f"sink {sink_config.name} ({sink_config.type}): target reachable, offsets table ready")
        finally:
            sink.close()
    return problems
