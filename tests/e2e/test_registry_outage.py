"""A registry that stops answering while a source must register a new schema: the source retries, and once
the registry is back every event arrives and positions are stored again (the slot moves on).

The private registry is frozen with SIGSTOP (a hung registry: the connection stays open, nothing answers)
and thawed with SIGCONT. The registry client gives up on a request after its timeout, so the schema
registration after the ALTER TABLE fails, the source is reopened, and the event is read again.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from liberator_testbed import EmbeddedRegistry
from tests.integration.postgres_wal_support import WalDb
from tests.support import DaemonThread, app_config, read_topic, wait_for

pytestmark = pytest.mark.e2e


def _wal_source(db: WalDb) -> str:
    return (
        f"  - name: wal\n    type: postgres_wal\n    url: {db.url}\n    tables: [orders]\n"
        f"    slot: {db.tag}\n    publication: {db.tag}\n"
        f'    topic: "{db.tag}.{{schema}}.{{table}}"\n    status_interval: 500ms\n'
    )


def test_registry_outage_during_a_schema_change_leaves_no_position_behind(
    pg_url: str, tmp_path: Path, kafka_bootstrap: str
) -> None:
    db = WalDb(pg_url)
    db.run("CREATE TABLE orders (id int PRIMARY KEY, total int NOT NULL)")
    db.run("INSERT INTO orders VALUES (1, 10)")
    topic = f"{db.tag}.public.orders"
    with EmbeddedRegistry() as registry:
        config = app_config(tmp_path, kafka_bootstrap, registry.url, _wal_source(db))
        offsets = tmp_path / "offsets.json"
        with DaemonThread(config) as daemon:
            wait_for(lambda: "wal" in daemon.daemon.metrics.sources, what="the source to start")
            status = daemon.status("wal")
            wait_for(lambda: status.events_acked >= 1, what="the snapshot row acknowledged")
            wait_for(lambda: daemon.positions_settled("wal"), what="the snapshot's position stored")
            before = json.loads(offsets.read_text())["sources"]["wal"]["position"]
            slot_before = db.slot()["confirmed_flush_lsn"]

            registry.freeze()
            db.run("ALTER TABLE orders ADD COLUMN note text")
            db.run("INSERT INTO orders VALUES (2, 20, 'during the outage')")
            wait_for(lambda: status.retries >= 1, timeout=60, what="the registration to time out")
            assert status.state == "retrying" and "did not answer in time" in (status.error or "")
            registry.freeze(False)

            for i in range(3, 6):
                db.run(f"INSERT INTO orders VALUES ({i}, {i * 10}, 'after')")
            wait_for(lambda: status.events_acked >= 5, timeout=60, what="every event acknowledged")
            # Everything acknowledged must become a stored position, and the slot must follow it.
            wait_for(lambda: daemon.positions_settled("wal"), timeout=30, what="the position stored again")
            after = json.loads(offsets.read_text())["sources"]["wal"]["position"]
            assert after != before
            wait_for(lambda: db.slot()["confirmed_flush_lsn"] > slot_before, what="the slot confirmed further")
            assert status.state == "running" and status.error is None, "the retry is over: no stale error"
            assert daemon.stop() == 0
        records = read_topic(kafka_bootstrap, registry.url, topic)
    ids = {r["key"]["id"] for r in records}
    assert ids == {1, 2, 3, 4, 5}, "nothing lost across the registry outage"
    assert {r["value"]["after"]["note"] for r in records if r["key"]["id"] == 2} == {"during the outage"}
