"""The outbox source against real PostgreSQL, MariaDB and SQLite, a real broker and the registry."""

from __future__ import annotations

import datetime as dt
import decimal
import threading
import time
from collections.abc import Generator
from pathlib import Path
from typing import cast

import pytest
import sqlalchemy as sa

from liberator.avro import AvroEncoder, frame
from liberator.capture import ChangeBatch
from liberator.config import AppConfig, load_config
from liberator.events import ChangeEvent, SourceItem
from liberator.outbox import OutboxRouting
from liberator.registry.client import RegistryClient
from liberator.runtime import build_source
from tests.integration.test_outbox_support import (
    ORDER_SCHEMA,
    AppDb,
    app_db,
    outbox_yaml,
    read_raw,
    register_order_schema,
)
from tests.support import DaemonThread, app_config, read_dead_letters, read_topic, wait_for

__all__ = ["app_db"]


def test_routing_keys_headers_and_json_payloads(
    app_db: AppDb, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    app_db.create_outbox(extra_columns="headers VARCHAR(200)")
    topic = f"{app_db.prefix}.order"
    register_order_schema(registry_url, topic)
    at = dt.datetime(2024, 5, 6, 7, 8, 9, 123000)
    first = app_db.insert("17", {"order_id": 17, "total": "12.50"}, occurred_at=at, headers='{"trace": "abc"}')
    second = app_db.insert("18", {"order_id": 18, "total": 3, "note": "gift"}, event_type="OrderShipped")
    third = app_db.insert("17", {"order_id": 17, "total": "0.99"}, event_type="OrderPaid")
    config = app_config(
        tmp_path, kafka_bootstrap, registry_url, outbox_yaml(app_db, "    columns: {headers: headers}\n")
    )
    with DaemonThread(config):
        records = read_topic(kafka_bootstrap, registry_url, topic, expect=3)
        wait_for(lambda: app_db.count() == 0, what="the published rows to be deleted")
    assert len(records) == 3
    by_id = {r["headers"]["id"]: r for r in records}
    assert set(by_id) == {str(first), str(second), str(third)}
    one = by_id[str(first)]
    assert one["key"] == "17"
    assert one["headers"] == {"id": str(first), "event_type": "OrderPlaced", "aggregate_type": "order", "trace": "abc"}
    assert one["value"] == {"order_id": 17, "total": "12.50", "note": None}
    assert one["timestamp"] == "2024-05-06T07:08:09.123+00:00"  # naive occurred_at read as UTC
    assert by_id[str(second)]["value"] == {"order_id": 18, "total": "3.00", "note": "gift"}
    # One aggregate's events keep their outbox order (same key, same partition).
    seventeen = [r for r in records if r["key"] == "17"]
    assert [r["headers"]["event_type"] for r in seventeen] == ["OrderPlaced", "OrderPaid"]
    assert decimal.Decimal(seventeen[1]["value"]["total"]) == decimal.Decimal("0.99")


def test_default_routing_matches_the_documented_table() -> None:
    routing = OutboxRouting()
    assert routing.topic == "outbox.event.{aggregate_type}"
    assert routing.columns.id == "id" and routing.columns.payload == "payload"


def test_avro_payloads_are_checked_and_published_unchanged(
    app_db: AppDb, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    app_db.create_outbox(payload="avro", extra_columns="schema_id INTEGER")
    topic = f"{app_db.prefix}.order"
    schema_id = register_order_schema(registry_url, topic)
    encoder = AvroEncoder(ORDER_SCHEMA, schema_id)
    good = encoder.encode({"order_id": 1, "total": decimal.Decimal("4.20"), "note": None})
    app_db.insert("1", good, schema_id=schema_id)
    app_db.insert("2", frame(987654, good[5:]))  # a schema id the registry does not have
    app_db.insert("3", good, schema_id=schema_id + 1)  # the row says another schema than its bytes
    app_db.insert("4", good[:-3])  # truncated: does not decode
    later = app_db.insert("1", good, event_type="OrderPaid")
    extra = "    payload: avro\n    columns: {schema_id: schema_id}\n    on_error: dead_letter\n"
    config = app_config(tmp_path, kafka_bootstrap, registry_url, outbox_yaml(app_db, extra))
    with DaemonThread(config):
        published = read_raw(kafka_bootstrap, topic, expect=2)
        dead = read_dead_letters(kafka_bootstrap, f"{app_db.prefix}.dead.ob", expect=3)
        wait_for(lambda: app_db.count() == 0, what="every row, good or bad, to be cleaned up")
    assert [value for value, _ in published] == [good, good]
    assert published[1][1]["id"] == str(later).encode()
    reasons = {r["value"]["after"]["aggregate_id"]: r["headers"]["liberator.error"] for r in dead}
    assert "schema id 987654 is not in the schema registry" in reasons["2"]
    assert f"carries schema id {schema_id} but schema_id says {schema_id + 1}" in reasons["3"]
    assert "does not decode" in reasons["4"]
    assert all(r["headers"]["liberator.source"] == "ob" and r["headers"]["liberator.table"] == "outbox" for r in dead)


def test_invalid_json_goes_to_the_dead_letter_topic_with_the_original_row(
    app_db: AppDb, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    app_db.create_outbox()
    # A plain text payload column: JSONB and MariaDB's JSON would refuse the broken row at INSERT.
    app_db.run(
        {
            "postgresql": "ALTER TABLE outbox ALTER COLUMN payload TYPE TEXT",
            "mariadb": "ALTER TABLE outbox MODIFY payload LONGTEXT NOT NULL",
            "sqlite": "SELECT 1",
        }[app_db.kind]
    )
    topic = f"{app_db.prefix}.order"
    register_order_schema(registry_url, topic)
    app_db.insert("1", {"order_id": 1, "total": "1.00"})
    broken = app_db.insert("2", "{not json")
    wrong = app_db.insert("3", {"order_id": "three", "total": "1.00"})
    typo = app_db.insert("4", {"order_id": 4, "total": "1.00", "nots": "x"})
    app_db.insert("5", {"order_id": 5, "total": "1.00"})
    config = app_config(tmp_path, kafka_bootstrap, registry_url, outbox_yaml(app_db, "    on_error: dead_letter\n"))
    with DaemonThread(config):
        good = read_topic(kafka_bootstrap, registry_url, topic, expect=2)
        dead = read_dead_letters(kafka_bootstrap, f"{app_db.prefix}.dead.ob", expect=3)
        wait_for(lambda: app_db.count() == 0, what="the outbox to be emptied")
    assert [r["value"]["order_id"] for r in good] == [1, 5]
    by_id = {str(r["key"]["id"]): r for r in dead}
    assert "is not valid JSON" in by_id[str(broken)]["headers"]["liberator.error"]
    assert by_id[str(broken)]["value"]["after"]["payload"] == "{not json"  # the raw values, as JSON text
    assert (
        "payload.order_id: expected an integer (long), got 'three'" in by_id[str(wrong)]["headers"]["liberator.error"]
    )
    assert "payload.nots: record OrderEvent has no such field" in by_id[str(typo)]["headers"]["liberator.error"]
    row = by_id[str(typo)]["value"]["after"]
    assert row["aggregate_id"] == "4" and row["event_type"] == "OrderPlaced"


def test_invalid_row_under_stop_halts_exactly_there(
    app_db: AppDb, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    app_db.create_outbox()
    topic = f"{app_db.prefix}.order"
    register_order_schema(registry_url, topic)
    app_db.insert("1", {"order_id": 1, "total": "1.00"})
    bad = app_db.insert("2", {"order_id": 2})
    app_db.insert("3", {"order_id": 3, "total": "1.00"})
    config = app_config(tmp_path, kafka_bootstrap, registry_url, outbox_yaml(app_db))
    with DaemonThread(config) as daemon:
        sources = daemon.daemon.metrics.sources
        wait_for(lambda: "ob" in sources and sources["ob"].state == "failed", what="the source to stop")
        error = daemon.status("ob").error
    assert "\n" not in error
    assert f"outbox row id={bad} (order/2) cannot be published: payload.total: required field" in error
    assert "fix or delete that row" in error and "on_error: dead_letter or skip" in error
    # The row before it was published and cleaned up; the bad one and everything after it wait.
    assert [r["value"]["order_id"] for r in read_topic(kafka_bootstrap, registry_url, topic)] == [1]
    assert app_db.count() == 2


def _claims_nothing_for_a_while(config: AppConfig, registry_url: str, seconds: float = 1.0) -> bool:
    """Whether a second source, reading the same outbox for `seconds`, publishes nothing (the rows are claimed)."""
    stop = threading.Event()
    other = build_source(config.sources[0], "other", stop, RegistryClient(registry_url))
    items = cast(Generator[SourceItem, None, None], other.read(None))
    deadline = time.monotonic() + seconds  # the scenario: a claim would come within a poll or two
    try:
        for item in items:
            if isinstance(item, ChangeBatch):
                return False
            if time.monotonic() > deadline:
                return True
        return True
    finally:
        stop.set()
        items.close()
        other.close()


def test_a_batch_kafka_acknowledges_after_the_read_ended_is_cleaned_up_and_held_until_then(
    app_db: AppDb, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    """What shutdown does: the reading loop ends, the runtime drains the producer and hears Kafka's last
    acknowledgement (`delivered`), then closes the source."""
    app_db.create_outbox()
    register_order_schema(registry_url, f"{app_db.prefix}.order")
    for n in range(3):
        app_db.insert(str(n), {"order_id": n, "total": "1.00"})
    config = load_config(app_config(tmp_path, kafka_bootstrap, registry_url, outbox_yaml(app_db)))
    stop = threading.Event()
    source = build_source(config.sources[0], "test", stop, RegistryClient(registry_url))
    items = cast(Generator[SourceItem, None, None], source.read(None))
    batch = next(item for item in items if isinstance(item, ChangeBatch))
    assert len(batch) == 3 and all(isinstance(e, ChangeEvent) for e in batch.items)
    stop.set()
    items.close()
    # Still claimed: a second daemon finds nothing to publish (SKIP LOCKED). On SQLite the runner's lease keeps
    # a second daemon out (liberator.lease; test_outbox_concurrency runs two there).
    if app_db.kind != "sqlite":
        assert _claims_nothing_for_a_while(config, registry_url), "a second source claimed rows being published"
    assert app_db.count() == 3
    assert batch.position is not None
    source.delivered(batch.position)
    source.close()  # the cleanups handed over (skip_locked commits them on a worker) are done by then
    assert app_db.count() == 0


def test_a_batch_not_acknowledged_when_the_source_closes_is_let_go_and_published_again(
    app_db: AppDb, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    app_db.create_outbox()
    register_order_schema(registry_url, f"{app_db.prefix}.order")
    for n in range(3):
        app_db.insert(str(n), {"order_id": n, "total": "1.00"})
    config = load_config(app_config(tmp_path, kafka_bootstrap, registry_url, outbox_yaml(app_db)))
    stop = threading.Event()
    source = build_source(config.sources[0], "test", stop, RegistryClient(registry_url))
    items = cast(Generator[SourceItem, None, None], source.read(None))
    next(item for item in items if isinstance(item, ChangeBatch))
    stop.set()
    items.close()
    source.close()
    assert app_db.count() == 3
    assert not _claims_nothing_for_a_while(config, registry_url, seconds=10), "the closed source kept its claim"


def test_batches_are_cleaned_up_once_kafka_has_them_not_once_the_position_is_stored(
    app_db: AppDb, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    """The table says what is left, so the cleanup need not wait for the offset flush: six batches,
    one in flight at a time, with positions stored only every 60 s, are all gone in seconds."""
    app_db.create_outbox()
    topic = f"{app_db.prefix}.order"
    register_order_schema(registry_url, topic)
    for n in range(30):
        app_db.insert(str(n % 3), {"order_id": n, "total": "1.00"})
    slow = f"offsets:\n  store: file\n  path: {tmp_path}/offsets.json\n  flush_interval: 60s\n"
    extra = "    batch_size: 5\n    max_in_flight: 1\n"
    config = app_config(tmp_path, kafka_bootstrap, registry_url, outbox_yaml(app_db, extra), offsets=slow)
    with DaemonThread(config) as daemon:
        wait_for(lambda: app_db.count() == 0, timeout=20, what="every batch cleaned up")
        assert daemon.status("ob").positions_stored == 0
    assert [r["value"]["order_id"] for r in read_topic(kafka_bootstrap, registry_url, topic, expect=30)] == list(
        range(30)
    )


def _unlocked(db: AppDb) -> int:
    """How many outbox rows no transaction holds (what another daemon's claim would get now)."""
    with db.engine.connect() as conn:
        if db.kind == "mariadb":
            conn = conn.execution_options(isolation_level="READ COMMITTED")
        rows = conn.execute(sa.text("SELECT id FROM outbox FOR UPDATE SKIP LOCKED")).all()
        conn.rollback()
    return len(rows)


class _Claims:
    """Counts the claims (SELECT ... SKIP LOCKED) that returned, on every engine but the application's:
    once one returned, its rows are locked (what comes after it in a claim takes no row locks)."""

    def __init__(self, app: sa.Engine) -> None:
        self.app = app
        self.done = 0
        sa.event.listen(sa.engine.Engine, "after_cursor_execute", self._seen)

    def _seen(self, conn: sa.Connection, _cursor: object, sql: str, *_args: object) -> None:
        if conn.engine is not self.app and "SKIP LOCKED" in sql:
            self.done += 1

    def remove(self) -> None:
        sa.event.remove(sa.engine.Engine, "after_cursor_execute", self._seen)


def test_the_next_claim_is_taken_while_the_current_batch_is_published(
    app_db: AppDb, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    """skip_locked: after a full claim the next one starts on a worker, so while the runtime publishes the
    yielded batch (here: the generator waits at its yield) the next batch's rows get locked, and the batches
    still come out in outbox order."""
    if app_db.kind == "sqlite":
        pytest.skip("SQLite has no row locks: one leader claims in turn")
    app_db.create_outbox()
    register_order_schema(registry_url, f"{app_db.prefix}.order")
    for n in range(7):
        app_db.insert(str(n % 2), {"order_id": n, "total": "1.00"})
    config = load_config(
        app_config(tmp_path, kafka_bootstrap, registry_url, outbox_yaml(app_db, "    batch_size: 3\n"))
    )
    stop = threading.Event()
    source = build_source(config.sources[0], "test", stop, RegistryClient(registry_url))
    claims = _Claims(app_db.engine)
    items = cast(Generator[SourceItem, None, None], source.read(None))
    try:
        first = next(item for item in items if isinstance(item, ChangeBatch))
        # The generator is suspended at its yield: only a claim on another thread can lock rows now.
        wait_for(lambda: claims.done == 2, timeout=10, what="the next batch claimed ahead")
        assert _unlocked(app_db) == 1
        second = next(item for item in items if isinstance(item, ChangeBatch))
        wait_for(lambda: claims.done == 3, timeout=10, what="the last row claimed ahead")
        assert _unlocked(app_db) == 0
        third = next(item for item in items if isinstance(item, ChangeBatch))
        published = [e for batch in (first, second, third) for e in batch.items]
        ids = [int(dict(cast(ChangeEvent, e).headers)["id"]) for e in published]
        assert ids == sorted(ids) and len(ids) == 7
    finally:
        claims.remove()
        stop.set()
        items.close()
        source.close()
    assert _unlocked(app_db) == 7, "every claim, the one ahead included, was let go on close"
