"""Helpers shared by integration and end-to-end tests: configs, an in-process daemon, topic reading."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pymysql  # type: ignore[import-untyped]
import sqlalchemy as sa
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, TopicPartition

from liberator.config import load_config
from liberator.runtime import Daemon
from liberator.tail import RecordDecoder

T = TypeVar("T")


def app_config(
    tmp_path: Path,
    bootstrap: str,
    registry: str,
    sources: str,
    name: str = "test",
    offsets: str | None = None,
) -> Path:
    offsets = offsets or f"offsets:\n  store: file\n  path: {tmp_path}/offsets.json\n  flush_interval: 200ms\n"
    text = (
        f"name: {name}\nkafka:\n  bootstrap_servers: {bootstrap}\n"
        f"schema_registry:\n  url: {registry}\n{offsets}sources:\n{sources}"
    )
    path = tmp_path / "liberator.yaml"
    path.write_text(text)
    return path


class DaemonThread:
    """Runs the daemon in this process; `stop()` is what SIGTERM does."""

    def __init__(self, config_path: Path) -> None:
        self.daemon = Daemon(load_config(config_path))
        self.exit_code: int | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self.exit_code = self.daemon.run()

    def __enter__(self) -> DaemonThread:
        self.thread.start()
        return self

    def stop(self, timeout: float = 60) -> int | None:
        self.daemon.stop.set()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the daemon did not stop"
        return self.exit_code

    def wait(self, timeout: float) -> int | None:
        self.thread.join(timeout)
        return self.exit_code

    def __exit__(self, *exc: object) -> None:
        if self.thread.is_alive():
            self.stop()

    def status(self, source: str) -> Any:
        """The source's status, once the starting daemon has registered it."""
        return wait_for(lambda: self.daemon.metrics.sources.get(source), what=f"source {source} to be registered")

    def sink_status(self, sink: str) -> Any:
        """The sink's status, once the starting daemon has registered it."""
        return wait_for(lambda: self.daemon.metrics.sinks.get(sink), what=f"sink {sink} to be registered")

    def positions_settled(self, source: str) -> bool:
        """Every published event of `source` is acknowledged and the newest committable position is stored.

        Comparing counters (`positions_stored > before`) races with a flush that already happened."""
        runner = next((r for r in self.daemon.runners if r.config.name == source), None)
        if runner is None:
            raise NotYet(f"source {source} has no runner yet")
        return runner.settled()


def read_records(bootstrap: str, topic: str, expect: int | None = None, timeout: float = 30.0) -> list[Message]:
    """Every record of `topic` from the start, undecoded, in partition order.

    Stops at `expect` records, or (expect None) once every partition's end is reached: the broker says where
    that is (partition EOF), so no quiet period is hoped for. A topic that does not exist yet is waited for
    (up to `timeout`); at the timeout what was read so far is returned."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "test-reader",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "fetch.wait.max.ms": 10,
        }
    )
    records: list[Message] = []
    try:
        deadline = time.monotonic() + timeout
        while True:
            metadata = consumer.list_topics(topic, timeout=5).topics.get(topic)
            if metadata is not None and metadata.error is None and metadata.partitions:
                break
            if time.monotonic() > deadline:
                return records
            time.sleep(0.2)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in metadata.partitions])
        at_end: set[int] = set()
        while time.monotonic() < deadline:
            if expect is not None and len(records) >= expect:
                break
            if expect is None and len(at_end) == len(metadata.partitions):
                break
            message = consumer.poll(0.1)
            if message is None:
                continue
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    at_end.add(message.partition() or 0)
                continue
            at_end.discard(message.partition() or 0)
            records.append(message)
    finally:
        consumer.close()
    return records


def read_topic(
    bootstrap: str, registry: str, topic: str, expect: int | None = None, timeout: float = 30.0
) -> list[dict[str, Any]]:
    """Every record of `topic` from the start, decoded (see `read_records` for when it stops)."""
    decoder = RecordDecoder(registry)
    return [decoder.decode(message) for message in read_records(bootstrap, topic, expect, timeout)]


def read_dead_letters(
    bootstrap: str, topic: str, expect: int | None = None, timeout: float = 30.0
) -> list[dict[str, Any]]:
    """The dead letters of a source's `on_error: dead_letter` topic: key and value as JSON, headers as text."""
    return [
        {
            "key": None if message.key() is None else json.loads(message.key() or b""),
            "value": json.loads(message.value() or b""),
            "headers": {name: (value or b"").decode() for name, value in message.headers() or []},
        }
        for message in read_records(bootstrap, topic, expect, timeout)
    ]


def wait_for_latest_values(
    bootstrap: str, registry: str, topic: str, field: str, expected: dict[Any, Any], timeout: float
) -> None:
    """Wait until the newest change envelope of every key on `topic` has `after[field] == expected[key id]`."""

    def caught_up() -> bool:
        latest = {r["key"]["id"]: r["value"]["after"][field] for r in read_topic(bootstrap, registry, topic)}
        return latest == expected

    wait_for(caught_up, timeout=timeout, interval=1.0, what=f"{topic} to hold every row's latest version")


def with_http(config_path: Path, port: int) -> None:
    """Turn on the daemon's /health and /metrics endpoint on 127.0.0.1:`port` in an app_config file."""
    text = config_path.read_text()
    config_path.write_text(text.replace("sources:\n", f"http:\n  listen: 127.0.0.1:{port}\nsources:\n", 1))


def metrics_text(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return str(response.read().decode())


# Kafka error codes that mean "that topic, partition or group does not exist yet".
_KAFKA_NOT_YET = {
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError._UNKNOWN_TOPIC,
    KafkaError._UNKNOWN_PARTITION,
    KafkaError.GROUP_ID_NOT_FOUND,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.NOT_COORDINATOR,
}
_MYSQL_NO_SUCH_TABLE = 1146


class NotYet(Exception):
    """Raised by a test's own condition when what it looks at does not exist yet."""


def not_there_yet(exc: BaseException) -> bool:
    """Whether `exc` only says that what a wait looks at does not exist *yet*: a table, a topic, a consumer
    group, a file (a log, an offsets file), a listening port, a daemon's source or sink.

    Anything else is a real error that fails the wait at once."""
    if isinstance(exc, NotYet | FileNotFoundError | ConnectionRefusedError):
        return True
    if isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, ConnectionRefusedError):
        return True
    if isinstance(exc, KafkaException):
        error = exc.args[0] if exc.args else None
        return isinstance(error, KafkaError) and error.code() in _KAFKA_NOT_YET
    if isinstance(exc, sa.exc.DBAPIError) and exc.orig is not None:
        exc = exc.orig
    if isinstance(exc, psycopg.errors.UndefinedTable):
        return True
    if isinstance(exc, pymysql.err.MySQLError):
        return bool(exc.args) and exc.args[0] == _MYSQL_NO_SUCH_TABLE
    return isinstance(exc, sqlite3.OperationalError) and str(exc).startswith("no such table")


def wait_for(condition: Callable[[], T], timeout: float = 30.0, interval: float = 0.1, what: str = "condition") -> T:
    """Poll `condition` until it returns a true value, and return that value.

    A condition that raises because something does not exist yet (`not_there_yet`) has simply not come
    true yet; any other error fails at once. If the last look raised such an error, the timeout says so."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            value = condition()
        except Exception as exc:
            if not not_there_yet(exc):
                raise
            last = exc
        else:
            if value:
                return value
            last = None  # the condition ran: report only an error from the last look
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    because = f"; last error: {type(last).__name__}: {str(last).strip().splitlines()[0]}" if last else ""
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}{because}")


# Tests read the lines an operator reads at a terminal; off one the default is JSON (tests/e2e/test_json_logs.py).
TEXT_LOGS = ("--log-format", "text")


def cli(*args: str, timeout: float = 60, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """`liberator ARGS... --log-format text` as a process; its output is text (a later --log-format wins)."""
    return subprocess.run(
        [sys.executable, "-m", "liberator", *args[:1], *TEXT_LOGS, *args[1:]],
        capture_output=True,
        text=True,
        timeout=timeout,
        input=stdin,
    )


def snapshot_cli(config_path: Path, source: str, *args: str) -> str:
    """The output of `liberator snapshot CONFIG --source SOURCE ARGS...`; a non-zero exit fails the test."""
    done = cli("snapshot", str(config_path), "--source", source, *args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def snapshots_idle(config_path: Path, source: str) -> bool:
    """Whether `liberator snapshot --status` says the source has no snapshot queued or under way."""
    return "no snapshot queued or under way" in snapshot_cli(config_path, source, "--status")


def start_daemon_process(config_path: Path, log_path: Path, *options: str) -> subprocess.Popen[bytes]:
    """`liberator run CONFIG --log-format text [options]` as a child process, its output appended to `log_path`."""
    log = open(log_path, "ab")  # noqa: SIM115 - handed to the child
    return subprocess.Popen(
        [sys.executable, "-m", "liberator", "run", str(config_path), *TEXT_LOGS, *options],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def terminate(process: subprocess.Popen[bytes], timeout: float = 60) -> int:
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout)


def rss_mb() -> float:
    """This process's resident set size now, in MiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def versions_by_key(records: list[dict[str, Any]], field: str) -> dict[Any, set[Any]]:
    """Every `after[field]` value each key id had on the topic (change envelopes)."""
    seen: dict[Any, set[Any]] = {}
    for record in records:
        seen.setdefault(record["key"]["id"], set()).add(record["value"]["after"][field])
    return seen


def version_gaps(final: dict[Any, int], seen: dict[Any, set[Any]]) -> dict[Any, list[int]]:
    """Per key, the versions between the first one on the topic and `final` that never reached it."""
    gaps = {k: sorted(set(range(min(seen[k]), v + 1)) - seen[k]) for k, v in final.items()}
    return {k: g for k, g in gaps.items() if g}


class TopicFold(threading.Thread):
    """Consumes a topic from its start in the background and folds it by key: the newest row of each key.

    A tombstone or a delete envelope removes its key, so once the source caught up `rows()` equals the
    table. Waits for the topic to exist instead of assuming it does.
    """

    def __init__(self, bootstrap: str, registry: str, topic: str, field: str) -> None:
        super().__init__(daemon=True)
        self.bootstrap = bootstrap
        self.decoder = RecordDecoder(registry)
        self.topic = topic
        self.field = field
        self.halt = threading.Event()
        self._lock = threading.Lock()
        self._rows: dict[Any, Any] = {}
        self.records = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        settings = {"bootstrap.servers": self.bootstrap, "group.id": "test-fold", "enable.auto.commit": False}
        consumer = Consumer({**settings, "fetch.wait.max.ms": 10})
        try:
            while not self.halt.is_set():
                metadata = consumer.list_topics(self.topic, timeout=5).topics.get(self.topic)
                if metadata is not None and metadata.error is None and metadata.partitions:
                    break
                self.halt.wait(0.2)
            else:
                return
            consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in metadata.partitions])
            while not self.halt.is_set():
                message = consumer.poll(0.1)
                if message is None or message.error():
                    continue
                record = self.decoder.decode(message)
                key = tuple(sorted(record["key"].items()))
                value = record["value"]
                with self._lock:
                    self.records += 1
                    if value is None or value.get("op") == "d":
                        self._rows.pop(key, None)
                    else:  # a change envelope's `after`, or a state record (the row itself)
                        self._rows[key] = (value["after"] if "op" in value else value)[self.field]
        except BaseException as exc:  # reported by rows()
            self.error = exc
        finally:
            consumer.close()

    def rows(self) -> dict[Any, Any]:
        """{key id (or key tuple): field} as the topic says now."""
        if self.error is not None:
            raise self.error
        with self._lock:
            return {(k[0][1] if len(k) == 1 else k): v for k, v in self._rows.items()}

    def __enter__(self) -> TopicFold:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.halt.set()
        self.join(10)


def fold_differences(fold: dict[Any, Any], table: dict[Any, Any]) -> dict[str, Any]:
    """What keeps a folded topic from equalling a table: ghost keys, missing keys, wrong values (a few each)."""
    ghosts = sorted(set(fold) - set(table))
    missing = sorted(set(table) - set(fold))
    wrong = sorted(k for k in set(fold) & set(table) if fold[k] != table[k])
    return {
        "ghosts": (len(ghosts), ghosts[:10]),
        "missing": (len(missing), missing[:10]),
        "wrong": (len(wrong), [(k, fold[k], table[k]) for k in wrong[:10]]),
    }


def health(port: int) -> dict[str, Any] | None:
    """The daemon's /health document, or None while it does not answer yet."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
            return dict(json.load(response))
    except urllib.error.HTTPError as exc:  # 503 once a source failed: still the document
        return dict(json.load(exc))
    except OSError:
        return None


def fold_by_key(records: list[dict[str, Any]]) -> dict[Any, Any]:
    """A topic as the table it describes: per key id, the newest row (a change envelope's `after`, or a state
    value); a delete or a tombstone removes the key."""
    rows: dict[Any, Any] = {}
    for record in records:
        value = record["value"]
        row = value.get("after") if isinstance(value, dict) and "op" in value else value
        if row is None:
            rows.pop(record["key"]["id"], None)
        else:
            rows[record["key"]["id"]] = row
    return rows
