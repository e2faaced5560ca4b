"""`deletes: reconcile` on the query source: hard deletes, which polling cannot see, become tombstones.

The topic folded by key equals the table afterwards, under a writer that deletes, re-inserts and inserts
while the source runs; a key deleted while the daemon was stopped is found after the restart (the set of
live keys is re-read from the topic); and no key is ever tombstoned twice or while its row exists."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.integration.legacy_db import LegacyDb
from tests.support import DaemonThread, app_config, fold_by_key, read_records, read_topic, wait_for


@pytest.fixture(params=["postgresql", "mariadb", "sqlite"])
def legacy(request: pytest.FixtureRequest, tmp_path: Path) -> LegacyDb:
    if request.param == "sqlite":
        return LegacyDb(f"sqlite:///{tmp_path}/app.db", "sqlite")
    kind = "postgresql" if request.param == "postgresql" else "mariadb"
    return LegacyDb(str(request.getfixturevalue("pg_url" if kind == "postgresql" else "mysql_url")), kind)


def _config(legacy: LegacyDb, tmp_path: Path, kafka_bootstrap: str, registry_url: str) -> Path:
    source = (
        f'  - name: legacy\n    topic: "{legacy.prefix}.{{table}}"\n    type: query\n    url: {legacy.url}\n'
        "    tables: [orders]\n    cursor: [updated_at, id]\n    poll_interval: 50ms\n    safety_delay: 0s\n"
        "    batch_size: 7\n    deletes: reconcile\n    reconcile_interval: 300ms\n"
    )
    return app_config(tmp_path, kafka_bootstrap, registry_url, source)


def _table_ids(legacy: LegacyDb) -> set[int]:
    return {row[0] for row in legacy.rows("SELECT id FROM orders")}


def _topic_matches_table(legacy: LegacyDb, kafka_bootstrap: str, registry_url: str, topic: str) -> bool:
    return set(fold_by_key(read_topic(kafka_bootstrap, registry_url, topic))) == _table_ids(legacy)


def test_vanished_rows_become_tombstones_and_the_topic_folds_to_the_table(
    legacy: LegacyDb, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    legacy.create_orders()
    for i in range(1, 21):
        legacy.insert_order(i)
    topic = f"{legacy.prefix}.orders"
    config = _config(legacy, tmp_path, kafka_bootstrap, registry_url)
    with DaemonThread(config) as daemon:
        wait_for(lambda: len(read_topic(kafka_bootstrap, registry_url, topic)) >= 20, what="the snapshot")
        legacy.run("DELETE FROM orders WHERE id IN (3, 4, 5, 17)")
        with legacy.engine.begin() as conn:  # deleted and back in one transaction: never seen missing
            conn.execute(sa.text("DELETE FROM orders WHERE id = 7"))
            conn.execute(
                sa.text(
                    f"INSERT INTO orders (id, customer, total, qty, updated_at) VALUES (7, 'again', 1, 1, {legacy.now})"
                )
            )
        legacy.insert_order(21)
        wait_for(
            lambda: _topic_matches_table(legacy, kafka_bootstrap, registry_url, topic),
            timeout=60,
            what="the topic folded by key to equal the table",
        )
        assert daemon.status("legacy").state == "running", daemon.status("legacy").error

    legacy.run("DELETE FROM orders WHERE id IN (10, 21)")  # while no daemon runs
    with DaemonThread(config) as daemon:
        wait_for(
            lambda: _topic_matches_table(legacy, kafka_bootstrap, registry_url, topic),
            timeout=60,
            what="the deletes made while stopped, tombstoned after the restart",
        )
        assert daemon.status("legacy").state == "running", daemon.status("legacy").error

    tombstones = Counter(m.key() for m in read_records(kafka_bootstrap, topic) if m.value() is None)
    assert len(tombstones) == 6 and set(tombstones.values()) == {1}, "one tombstone per deleted key"
    records = read_topic(kafka_bootstrap, registry_url, topic)
    assert {r["key"]["id"] for r in records if r["value"] is None} == {3, 4, 5, 10, 17, 21}
    assert fold_by_key(records).keys() == _table_ids(legacy) == set(range(1, 21)) - {3, 4, 5, 10, 17}
