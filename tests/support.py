"""Helpers shared by integration and end-to-end tests: configs, an in-process daemon, topic reading."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from liberator.config import load_config
from liberator.runtime import Daemon
from liberator.tail import RecordDecoder


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
        return self.daemon.metrics.sources[source]

    def positions_settled(self, source: str) -> bool:
        """Every published event of `source` is acknowledged and the newest committable position is stored.

        Comparing counters (`positions_stored > before`) races with a flush that already happened."""
        runner = next(r for r in self.daemon.runners if r.config.name == source)
        committable = runner.checkpointer.committable()
        return runner.checkpointer.in_flight == 0 and committable is not None and runner.stored == committable


def read_topic(
    bootstrap: str,
    registry: str,
    topic: str,
    expect: int | None = None,
    timeout: float = 30.0,
    quiet: float = 1.5,
) -> list[dict[str, Any]]:
    """Every record of `topic` from the start, decoded. Stops at `expect` records, or when quiet."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "test-reader",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 10,
        }
    )
    decoder = RecordDecoder(registry)
    records: list[dict[str, Any]] = []
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
        last = time.monotonic()
        while time.monotonic() < deadline:
            if expect is not None and len(records) >= expect:
                break
            message = consumer.poll(0.1)
            if message is None or message.error():
                if expect is None and time.monotonic() - last > quiet:
                    break
                continue
            records.append(decoder.decode(message))
            last = time.monotonic()
    finally:
        consumer.close()
    return records


def wait_for(condition: Any, timeout: float = 30.0, interval: float = 0.1, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def cli(*args: str, timeout: float = 60, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """`liberator ARGS...` as a process; its output is text."""
    return subprocess.run(
        [sys.executable, "-m", "liberator", *args], capture_output=True, text=True, timeout=timeout, input=stdin
    )


def start_daemon_process(config_path: Path, log_path: Path) -> subprocess.Popen[bytes]:
    log = open(log_path, "ab")  # noqa: SIM115 - handed to the child
    return subprocess.Popen(
        [sys.executable, "-m", "liberator", "run", str(config_path)],
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


def wait_for_latest_values(
    bootstrap: str, registry: str, topic: str, field: str, expected: dict[Any, Any], timeout: float
) -> None:
    """Wait until the newest change envelope of every key on `topic` has `after[field] == expected[key id]`."""

    def caught_up() -> bool:
        latest = {r["key"]["id"]: r["value"]["after"][field] for r in read_topic(bootstrap, registry, topic, quiet=0.5)}
        return latest == expected

    wait_for(caught_up, timeout=timeout, interval=1.0, what=f"{topic} to hold every row's latest version")


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
