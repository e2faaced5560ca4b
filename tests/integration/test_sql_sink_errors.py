"""Bad records are never skipped silently: dead-lettered with the reason, or the sink stops with one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from liberator.envelope import Op
from tests.integration.legacy_db import LegacyDb
from tests.integration.sql_sink_support import TopicWriter, count, sink_entry, table_rows
from tests.support import DaemonThread, app_config, read_records, wait_for

NO_SOURCES = "  []\nsinks:\n"


@pytest.fixture(params=["sqlite", "postgresql"])
def legacy(request: pytest.FixtureRequest, tmp_path: Path) -> LegacyDb:
    if request.param == "sqlite":
        return LegacyDb(f"sqlite:///{tmp_path}/legacy.db", "sqlite")
    return LegacyDb(request.getfixturevalue("pg_url"), request.param)


def _writer_with_bad_records(legacy: LegacyDb, bootstrap: str, registry: str) -> TopicWriter:
    """Rows 1-3, garbage bytes, row 4 (refused by the target's CHECK), row 5."""
    legacy.create_orders()
    legacy.run(
        "CREATE TABLE sink_orders (id INTEGER PRIMARY KEY, customer VARCHAR(50) NOT NULL, "
        f"total NUMERIC(10, 2), qty INTEGER NOT NULL CHECK (qty < 100), updated_at {legacy.ts} NOT NULL)"
    )
    writer = TopicWriter(bootstrap, registry, f"{legacy.prefix}.orders", legacy.url, "orders", "state")
    for i in (1, 2, 3):
        legacy.insert_order(i)
        writer.send(Op.create, i)
    writer.send_raw(writer.key_encoder.encode({"id": 77}), b"not avro at all")
    legacy.insert_order(4, qty=500)
    writer.send(Op.create, 4)
    legacy.insert_order(5)
    writer.send(Op.create, 5)
    writer.flush()
    return writer


def _records(bootstrap: str, topic: str) -> list[tuple[bytes | None, dict[str, bytes]]]:
    found = [(m.value(), {k: v for k, v in m.headers() or []}) for m in read_records(bootstrap, topic)]
    return sorted(found, key=lambda r: int(r[1]["liberator.offset"]))  # type: ignore[return-value]


def test_dead_letter_keeps_the_original_bytes_and_the_reason(
    legacy: LegacyDb, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    writer = _writer_with_bad_records(legacy, kafka_bootstrap, registry_url)
    dlq = f"{legacy.prefix}.dead"
    extra = f"    on_error: dead_letter\n    dead_letter_topic: {dlq}\n"
    config = app_config(
        tmp_path, kafka_bootstrap, registry_url, NO_SOURCES + sink_entry(legacy, f"[{writer.topic}]", extra)
    )
    with DaemonThread(config) as daemon:
        wait_for(lambda: count(legacy.url, "sink_orders") == 4, what="the four good rows")
        wait_for(lambda: daemon.sink_status("replica").dead_lettered == 2, what="two dead letters")
        assert daemon.sink_status("replica").state == "running"
    assert [r[0] for r in table_rows(legacy.url, "sink_orders")] == [1, 2, 3, 5]
    dead = _records(kafka_bootstrap, dlq)
    assert len(dead) == 2 and dead[0][0] == b"not avro at all"
    assert "Confluent wire format" in dead[0][1]["liberator.error"].decode()
    assert dead[0][1]["liberator.offset"] == b"3"
    assert dead[1][1]["liberator.offset"] == b"4" and b"refused" in dead[1][1]["liberator.error"]


def test_stop_applies_what_came_before_and_names_the_record(
    legacy: LegacyDb, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    writer = _writer_with_bad_records(legacy, kafka_bootstrap, registry_url)
    config = app_config(tmp_path, kafka_bootstrap, registry_url, NO_SOURCES + sink_entry(legacy, f"[{writer.topic}]"))
    with DaemonThread(config) as daemon:
        assert daemon.wait(40) == 1
    error = daemon.sink_status("replica").error
    assert error is not None and "\n" not in error
    assert f"bad record {writer.topic}[0]@3" in error and "on_error: dead_letter" in error
    assert [r[0] for r in table_rows(legacy.url, "sink_orders")] == [1, 2, 3]


def test_a_column_that_cannot_hold_the_field_stops_the_sink(
    legacy: LegacyDb, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    legacy.create_orders()
    legacy.run(
        f"CREATE TABLE sink_orders (id INTEGER PRIMARY KEY, customer {'BLOB' if legacy.kind == 'sqlite' else 'BYTEA'}, "
        f"total NUMERIC(10, 2), qty INTEGER NOT NULL, updated_at {legacy.ts} NOT NULL)"
    )
    writer = TopicWriter(kafka_bootstrap, registry_url, f"{legacy.prefix}.orders", legacy.url, "orders", "state")
    legacy.insert_order(1)
    writer.send(Op.create, 1)
    writer.flush()
    extra = "    evolve: true\n"
    config = app_config(
        tmp_path, kafka_bootstrap, registry_url, NO_SOURCES + sink_entry(legacy, f"[{writer.topic}]", extra)
    )
    with DaemonThread(config) as daemon:
        assert daemon.wait(40) == 1
    error = daemon.sink_status("replica").error
    assert error is not None and "\n" not in error
    assert "column customer" in error and "cannot hold field customer" in error
    assert count(legacy.url, "sink_orders") == 0


def test_a_value_too_long_for_its_column_is_refused_not_cut(
    pg_url: str, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    """PostgreSQL takes a batch as arrays: the column's own length still refuses a value, as it does one row's."""
    legacy = LegacyDb(pg_url, "postgresql")
    legacy.create_orders()
    legacy.run(
        "CREATE TABLE sink_orders (id INTEGER PRIMARY KEY, customer VARCHAR(4) NOT NULL, "
        f"total NUMERIC(10, 2), qty INTEGER NOT NULL, updated_at {legacy.ts} NOT NULL)"
    )
    writer = TopicWriter(kafka_bootstrap, registry_url, f"{legacy.prefix}.orders", legacy.url, "orders", "state")
    for i in (1, 12345, 2):  # customer c12345 is too long for VARCHAR(4)
        legacy.insert_order(i)
        writer.send(Op.create, i)
    writer.flush()
    dlq = f"{legacy.prefix}.dead"
    extra = f"    on_error: dead_letter\n    dead_letter_topic: {dlq}\n"
    config = app_config(
        tmp_path, kafka_bootstrap, registry_url, NO_SOURCES + sink_entry(legacy, f"[{writer.topic}]", extra)
    )
    with DaemonThread(config) as daemon:
        wait_for(lambda: daemon.sink_status("replica").dead_lettered == 1, what="one dead letter")
        wait_for(lambda: count(legacy.url, "sink_orders") == 2, what="the two rows that fit")
    assert [r[:2] for r in table_rows(legacy.url, "sink_orders")] == [(1, "c1"), (2, "c2")]
    dead = _records(kafka_bootstrap, dlq)
    assert len(dead) == 1 and dead[0][1]["liberator.offset"] == b"1"
    assert b"too long" in dead[0][1]["liberator.error"]
