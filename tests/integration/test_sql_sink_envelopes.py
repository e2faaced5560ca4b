"""Change envelopes, state values, deletes, insert mode and evolution, on PostgreSQL, MariaDB and SQLite.

Events are made from a real table with liberator.envelope and DatumConverter, as the CDC sources make them;
the source table is changed by SQL alongside, so at the end the sink's table must equal it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from liberator.envelope import Op
from tests.integration.legacy_db import LegacyDb
from tests.integration.sql_sink_support import TopicWriter, count, sink_entry, table_rows
from tests.support import DaemonThread, app_config, wait_for

NO_SOURCES = "  []\nsinks:\n"


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def legacy(request: pytest.FixtureRequest, tmp_path: Path) -> LegacyDb:
    if request.param == "sqlite":
        return LegacyDb(f"sqlite:///{tmp_path}/legacy.db", "sqlite")
    url = request.getfixturevalue("pg_url" if request.param == "postgresql" else "mysql_url")
    return LegacyDb(url, request.param)


def test_change_envelope_applies_after_images_and_deletes(
    legacy: LegacyDb, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    legacy.create_orders()
    topic = f"{legacy.prefix}.orders"
    writer = TopicWriter(kafka_bootstrap, registry_url, topic, legacy.url, "orders", "change")
    for i in range(1, 21):
        legacy.insert_order(i, total=f"{i}.50")
        writer.send(Op.read if i <= 10 else Op.create, i)
    for i in range(1, 6):  # several events per key in one batch collapse to the last
        for qty in (2, 3, 4):
            legacy.run(f"UPDATE orders SET qty = {qty}, total = NULL WHERE id = {i}")
            writer.send(Op.update, i)
    for i in (6, 7, 8):
        before = writer.row(i)
        legacy.run(f"DELETE FROM orders WHERE id = {i}")
        writer.send(Op.delete, i, before=before)
    writer.flush()
    sinks = sink_entry(legacy, f"[{topic}]", "    create: true\n") + sink_entry(
        legacy, f"[{topic}]", "    create: true\n    mode: insert\n", name="log", table="log_{table}"
    )
    config = app_config(tmp_path, kafka_bootstrap, registry_url, NO_SOURCES + sinks)
    with DaemonThread(config) as daemon:
        wait_for(
            lambda: (
                count(legacy.url, "sink_orders") == 17
                and table_rows(legacy.url, "sink_orders") == table_rows(legacy.url, "orders")
            ),
            what="the sink table equal to the source",
        )
        # insert mode appends every c/u/r event (the deletes then remove their key's rows)
        wait_for(lambda: count(legacy.url, "log_orders") == 20 + 15 - 3, what="the insert-mode log")
        legacy.insert_order(99)
        writer.send(Op.create, 99)
        writer.flush()
        wait_for(lambda: count(legacy.url, "sink_orders") == 18, what="a later event")
        status = daemon.sink_status("replica")
        assert status.state == "running"
    assert daemon.exit_code == 0


def test_state_values_tombstones_and_evolution(
    legacy: LegacyDb, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    legacy.create_orders()
    topic = f"{legacy.prefix}.orders"
    writer = TopicWriter(kafka_bootstrap, registry_url, topic, legacy.url, "orders", "state")
    for i in range(1, 11):
        legacy.insert_order(i)
        writer.send(Op.create, i)
    legacy.run("DELETE FROM orders WHERE id = 3")
    writer.send(Op.delete, 3)  # state envelope: a tombstone only
    writer.flush()
    config = app_config(
        tmp_path,
        kafka_bootstrap,
        registry_url,
        NO_SOURCES + sink_entry(legacy, f"[{topic}]", "    create: true\n    evolve: true\n"),
    )
    with DaemonThread(config):
        wait_for(lambda: table_rows(legacy.url, "sink_orders") == table_rows(legacy.url, "orders"), what="state")
        legacy.run("ALTER TABLE orders ADD note VARCHAR(40)")
        legacy.run("UPDATE orders SET note = 'new field' WHERE id = 2")
        writer.refresh()
        writer.send(Op.update, 2)
        writer.flush()
        wait_for(lambda: table_rows(legacy.url, "sink_orders") == table_rows(legacy.url, "orders"), what="evolved")


def test_a_missing_table_without_create_stops_the_sink_with_one_line(
    legacy: LegacyDb, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    legacy.create_orders()
    topic = f"{legacy.prefix}.orders"
    writer = TopicWriter(kafka_bootstrap, registry_url, topic, legacy.url, "orders", "state")
    legacy.insert_order(1)
    writer.send(Op.create, 1)
    writer.flush()
    config = app_config(tmp_path, kafka_bootstrap, registry_url, NO_SOURCES + sink_entry(legacy, f"[{topic}]"))
    with DaemonThread(config) as daemon:
        assert daemon.wait(40) == 1
    error = daemon.sink_status("replica").error
    assert error is not None and "\n" not in error
    assert "sink_orders does not exist" in error and "create: true" in error
