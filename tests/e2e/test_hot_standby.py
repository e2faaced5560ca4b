"""Hot standby (docs/ha.md): two daemons with one config on one database, a live writer, kill -9 of the leader.

Exactly one leads; the other shows `phase: standby` in /health (ready: 200) and takes over within
`ha.takeover` of the kill, resuming from the stored position (the offsets file both share): the topic folded
by key equals the table, for postgres_wal, mysql_binlog, query and outbox.
"""

from __future__ import annotations

import random
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from liberator.embedded.ports import free_port
from tests.e2e.cdc_targets import Target, _cdc_target  # noqa: F401 - _cdc_target: the fixture
from tests.integration.postgres_wal_support import WalDb
from tests.integration.test_outbox_support import AppDb, outbox_yaml, register_order_schema
from tests.support import (
    TopicFold,
    app_config,
    fold_differences,
    health,
    read_topic,
    start_daemon_process,
    terminate,
    wait_for,
    with_http,
)

TAKEOVER = 6.0  # ha.takeover in these tests: a standby tries every 2s


@dataclass
class Pair:
    """Two daemon processes with one config (only their http ports differ) and their logs."""

    configs: list[Path]
    ports: list[int]
    logs: list[Path]

    def phase(self, which: int, source: str) -> str | None:
        document = health(self.ports[which])
        if document is None or source not in document["sources"]:
            return None
        return str(document["sources"][source]["phase"])

    def position(self, which: int, source: str) -> Any:
        """The position the daemon stored last (None before its first)."""
        document = health(self.ports[which])
        return None if document is None else document["sources"][source]["position"]

    def ready(self, which: int) -> bool:
        document = health(self.ports[which])
        return document is not None and bool(document["ready"])


def pair(tmp_path: Path, kafka_bootstrap: str, registry_url: str, source: str, offsets: str | None = None) -> Pair:
    # One offsets store for both: the file store shares positions only where both see one file.
    offsets = offsets or f"offsets:\n  store: file\n  path: {tmp_path}/offsets.json\n  flush_interval: 200ms\n"
    configs, ports, logs = [], [], []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        config = app_config(tmp_path / name, kafka_bootstrap, registry_url, source, offsets=offsets)
        config.write_text(config.read_text() + f"ha:\n  takeover: {TAKEOVER:g}s\n")
        port = free_port()
        with_http(config, port)
        configs.append(config)
        ports.append(port)
        logs.append(tmp_path / f"{name}.log")
    return Pair(configs, ports, logs)


class LiveWriter(threading.Thread):
    """Writes through the whole test at the application's pace; `write(n)` does the n-th change."""

    def __init__(self, write: Callable[[int], None]) -> None:
        super().__init__(daemon=True)
        self.write = write
        self.halt = threading.Event()
        self.changes = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.halt.is_set():
                self.write(self.changes)
                self.changes += 1
                time.sleep(0.01)  # the application's pace, not a wait
        except BaseException as exc:
            self.error = exc

    def finish(self) -> None:
        self.halt.set()
        self.join(30)
        assert self.error is None, self.error
        assert self.changes > 50, f"the writer wrote only {self.changes} changes"


def kill_the_leader_under_a_live_writer(
    daemons: Pair, source: str, writer: LiveWriter, published: Callable[[], int], caught_up: Callable[[], bool]
) -> None:
    """The scenario, whatever the source: a leads, b stands by, a is killed, b takes over and catches up."""
    leading = ("snapshot", "streaming", "polling", "publishing")
    a = start_daemon_process(daemons.configs[0], daemons.logs[0])
    b: subprocess.Popen[bytes] | None = None
    try:
        wait_for(lambda: daemons.phase(0, source) in leading, timeout=60, what="the first daemon to lead")
        b = start_daemon_process(daemons.configs[1], daemons.logs[1])
        wait_for(lambda: daemons.phase(1, source) == "standby", timeout=60, what="the second daemon to stand by")
        assert daemons.ready(1), "a standby is ready (it is waiting to take over, as it should)"
        stored_at_standby = daemons.position(0, source)
        writer.start()
        before = published()
        wait_for(lambda: published() > before, timeout=60, what="the leader to publish the writer's changes")
        # ...and to store a newer position, which the standby must read when it takes over.
        wait_for(lambda: daemons.position(0, source) != stored_at_standby, timeout=60, what="a newer stored position")
        assert daemons.phase(1, source) == "standby"  # still: the standby never read meanwhile

        a.send_signal(signal.SIGKILL)
        a.wait(10)
        killed = time.monotonic()
        wait_for(lambda: daemons.phase(1, source) not in (None, "standby"), timeout=60, what="the standby to lead")
        takeover = time.monotonic() - killed
        print(
            f"\n{source}: the standby took over {takeover:.2f}s after kill -9 of the leader (ha.takeover {TAKEOVER:g}s)"
        )
        assert takeover < TAKEOVER, f"took over after {takeover:.1f}s"
        wait_for(lambda: daemons.phase(1, source) in leading, timeout=60, what="the new leader to read")
        writer.finish()
        wait_for(caught_up, timeout=120, what="the new leader to publish everything")
    finally:
        writer.halt.set()
        if a.poll() is None:
            a.kill()
            a.wait(10)
        if b is not None:
            assert terminate(b) == 0, daemons.logs[1].read_text()[-3000:]
    text = daemons.logs[1].read_text()
    assert "another daemon leads source" in text and "holding the lease" in text, text[-3000:]
    assert "Traceback" not in text
    # It led from the position the leader stored meanwhile, read on taking the lease, not the one it saw at start.
    at_start = re.search(r"source \S+ (?:resumes from (.*)|starts from the beginning)$", text, re.M)
    taken = re.search(r"holding the lease .*: leading, from (.*)$", text, re.M)
    assert at_start is not None and taken is not None, text[-3000:]
    assert taken.group(1) not in ("the beginning", at_start.group(1)), (at_start.group(0), taken.group(0))


def test_cdc_standby_takes_over_after_kill_9(
    cdc_target: Target, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    target = cdc_target
    target.fill(200)
    daemons = pair(tmp_path, kafka_bootstrap, registry_url, target.source)
    rng = random.Random(14)

    def write(n: int) -> None:
        key = rng.randrange(1, 400)
        if n % 7 == 6:
            target.transaction([("DELETE FROM acc WHERE id = %s", (key,))])
        else:
            target.transaction([(target.upsert, (key,)), (target.upsert, (rng.randrange(1, 400),))])

    with TopicFold(kafka_bootstrap, registry_url, target.topic, "v") as fold:
        kill_the_leader_under_a_live_writer(
            daemons,
            "cdc",
            LiveWriter(write),
            lambda: fold.records,
            lambda: fold.rows() == target.table(),
        )
        assert fold.rows() == target.table(), fold_differences(fold.rows(), target.table())


@pytest.fixture
def query_table(pg_url: str) -> Iterator[WalDb]:
    db = WalDb(pg_url)
    db.run(
        f"CREATE TABLE {db.tag} (id int PRIMARY KEY, v int NOT NULL, "
        "updated_at timestamptz NOT NULL DEFAULT clock_timestamp())"
    )
    db.run(f"INSERT INTO {db.tag} (id, v) SELECT g, 0 FROM generate_series(1, 200) g")
    yield db
    db.conn.close()


def test_query_standby_takes_over_after_kill_9(
    query_table: WalDb, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    db, table = query_table, query_table.tag
    source = (
        f'  - name: q\n    type: query\n    url: {db.url}\n    tables: [{table}]\n    topic: "{table}.{{table}}"\n'
        "    cursor: [updated_at, id]\n    poll_interval: 200ms\n    safety_delay: 500ms\n"
    )
    # The store HA deployments use (docs/ha.md): a compacted topic both daemons read.
    offsets = f"offsets:\n  store: kafka\n  topic: {table}-offsets\n  flush_interval: 200ms\n"
    daemons = pair(tmp_path, kafka_bootstrap, registry_url, source, offsets)
    rng = random.Random(14)
    writer_conn = psycopg.connect(db.url, autocommit=True)
    upsert = (
        f"INSERT INTO {table} (id, v) VALUES (%s, 0) "
        f"ON CONFLICT (id) DO UPDATE SET v = {table}.v + 1, updated_at = clock_timestamp()"
    )

    def rows() -> dict[Any, Any]:
        return {int(k): int(v) for k, v in db.rows(f"SELECT id, v FROM {table}")}

    try:
        with TopicFold(kafka_bootstrap, registry_url, f"{table}.{table}", "v") as fold:
            kill_the_leader_under_a_live_writer(
                daemons,
                "q",
                LiveWriter(lambda n: writer_conn.execute(upsert, (rng.randrange(1, 400),))),
                lambda: fold.records,
                lambda: fold.rows() == rows(),
            )
            assert fold.rows() == rows(), fold_differences(fold.rows(), rows())
    finally:
        writer_conn.close()


@pytest.mark.parametrize("kind", ["postgresql", "mariadb"])
def test_outbox_standby_takes_over_after_kill_9(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    db = AppDb(request.getfixturevalue("pg_url" if kind == "postgresql" else "mysql_url"), kind)
    db.create_outbox()
    topic = f"{db.prefix}.order"
    register_order_schema(registry_url, topic)
    daemons = pair(tmp_path, kafka_bootstrap, registry_url, outbox_yaml(db, "    batch_size: 25\n"))
    written: dict[int, str] = {}  # event id -> aggregate
    rng = random.Random(14)

    def write(n: int) -> None:
        aggregate = str(rng.randrange(8))
        written[db.insert(aggregate, {"order_id": n, "total": "1.00"})] = aggregate

    seen: set[int] = set()

    def published() -> int:
        seen.update(int(r["headers"]["id"]) for r in read_topic(kafka_bootstrap, registry_url, topic, timeout=1))
        return len(seen)

    kill_the_leader_under_a_live_writer(
        daemons, "ob", LiveWriter(write), published, lambda: db.count() == 0 and published() >= len(written)
    )
    records = read_topic(kafka_bootstrap, registry_url, topic, timeout=30)
    ids = [int(r["headers"]["id"]) for r in records]
    assert set(ids) == set(written), "an outbox row was lost"  # replays keep their id: consumers drop them
