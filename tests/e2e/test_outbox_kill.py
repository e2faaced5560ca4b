"""The outbox source as a process, killed with SIGKILL between publishing and cleaning up."""

from __future__ import annotations

import json
import random
import signal
import threading
import time
from pathlib import Path

import pytest

from liberator_testbed import EmbeddedBroker
from tests.integration.test_outbox_support import AppDb, app_db, outbox_yaml, register_order_schema
from tests.support import DaemonThread, app_config, read_topic, start_daemon_process, terminate, wait_for

__all__ = ["app_db"]


def identity(record: dict[str, object]) -> str:
    return json.dumps([record["key"], record["value"], record["headers"], record["timestamp"]], sort_keys=True)


def test_kill_9_after_publish_before_cleanup_replays_with_the_same_event_id(
    app_db: AppDb, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    app_db.create_outbox()
    topic = f"{app_db.prefix}.order"
    register_order_schema(registry_url, topic)
    ids = [app_db.insert(str(n % 4), {"order_id": n, "total": "2.00"}) for n in range(20)]
    log = tmp_path / "daemon.log"
    config = app_config(tmp_path, kafka_bootstrap, registry_url, outbox_yaml(app_db))
    with app_db.hold_cleanup():  # Kafka acknowledges, the DELETE waits: the kill lands in between
        process = start_daemon_process(config, log)
        try:
            first = read_topic(kafka_bootstrap, registry_url, topic, expect=20, timeout=60)
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait(10)
    assert len(first) == 20
    assert app_db.count() == 20, "the rows were deleted although the cleanup never committed"

    process = start_daemon_process(config, log)
    try:
        wait_for(lambda: app_db.count() == 0, timeout=60, what="the replayed rows to be cleaned up")
    finally:
        assert terminate(process) == 0, log.read_text()[-3000:]
    records = read_topic(kafka_bootstrap, registry_url, topic, expect=40)
    assert len(records) == 40
    # Every event twice, identical down to the event id header: consumers drop the second copy by id.
    assert sorted(int(r["headers"]["id"]) for r in records) == sorted(ids + ids)
    assert {identity(r) for r in records[:20]} == {identity(r) for r in records[20:]}


class Writer(threading.Thread):
    def __init__(self, db: AppDb) -> None:
        super().__init__(daemon=True)
        self.db = db
        self.stop = threading.Event()
        self.ids: list[int] = []

    def run(self) -> None:
        rng = random.Random(7)
        n = 0
        while not self.stop.is_set():
            self.ids.append(self.db.insert(str(rng.randrange(8)), {"order_id": n, "total": "1.00"}))
            n += 1
            time.sleep(0.004)  # the application's pace, not a wait


@pytest.mark.parametrize("kind", ["postgresql", "mariadb"])
def test_kill_9_at_random_moments_while_writing_loses_nothing(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    db = AppDb(request.getfixturevalue("pg_url" if kind == "postgresql" else "mysql_url"), kind)
    db.create_outbox()
    topic = f"{db.prefix}.order"
    register_order_schema(registry_url, topic)
    config = app_config(tmp_path, kafka_bootstrap, registry_url, outbox_yaml(db, "    batch_size: 25\n"))
    log = tmp_path / "daemon.log"
    writer = Writer(db)
    writer.start()
    rng = random.Random(13)
    try:
        for _ in range(3):
            process = start_daemon_process(config, log)
            time.sleep(rng.uniform(1.5, 3.0))  # kill at a random moment: the timing is the test
            process.send_signal(signal.SIGKILL)
            process.wait(10)
    finally:
        writer.stop.set()
        writer.join()
    process = start_daemon_process(config, log)
    try:
        wait_for(lambda: db.count() == 0, timeout=90, what="the outbox to be emptied")
    finally:
        assert terminate(process) == 0, log.read_text()[-3000:]
    records = read_topic(kafka_bootstrap, registry_url, topic)
    published = [int(r["headers"]["id"]) for r in records]
    assert set(published) == set(writer.ids), "an event was lost"
    by_id: dict[str, set[str]] = {}
    for record in records:
        by_id.setdefault(str(record["headers"]["id"]), set()).add(identity(record))
    assert all(len(copies) == 1 for copies in by_id.values()), "a replay differed from the original"
    # Replays may repeat a batch, but an aggregate's events never go backwards to an older one first seen later.
    for aggregate in {r["key"] for r in records}:
        firsts: list[int] = []
        for event_id in (int(r["headers"]["id"]) for r in records if r["key"] == aggregate):
            if event_id not in firsts:
                firsts.append(event_id)
        assert firsts == sorted(firsts), f"aggregate {aggregate} published out of outbox order"


def test_sigterm_cleans_up_the_batch_kafka_acknowledges_during_shutdown(
    app_db: AppDb, tmp_path: Path, registry_url: str
) -> None:
    """A batch is in Kafka's hands when SIGTERM comes (the broker is frozen); the reading thread ends,
    the broker answers while the daemon flushes, and that last acknowledgement still cleans the batch up."""
    app_db.create_outbox()
    topic = f"{app_db.prefix}.order"
    register_order_schema(registry_url, topic)
    broker = EmbeddedBroker().start()
    config = app_config(tmp_path, broker.bootstrap_servers, registry_url, outbox_yaml(app_db))
    try:
        with DaemonThread(config) as daemon:
            app_db.insert("0", {"order_id": 0, "total": "1.00"})
            wait_for(lambda: app_db.count() == 0, what="the first event published and cleaned up")
            status = daemon.status("ob")
            broker.freeze()
            # One transaction, so one claim takes all nine: a claim of only the first rows would wait for
            # their acknowledgement, which the frozen broker never gives, and publish no more.
            with app_db.engine.begin() as conn:
                for n in range(1, 10):
                    app_db.insert(str(n), {"order_id": n, "total": "1.00"}, conn=conn)
            wait_for(lambda: status.events_published >= 10, what="the batch handed to the frozen broker")
            assert app_db.count() == 9
            thaw = threading.Timer(1.0, broker.freeze, args=(False,))
            thaw.start()
            assert daemon.stop() == 0
            thaw.join()
        assert app_db.count() == 0
        records = read_topic(broker.bootstrap_servers, registry_url, topic, expect=10)
        assert sorted(r["value"]["order_id"] for r in records) == list(range(10))
    finally:
        broker.stop()
