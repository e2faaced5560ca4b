"""A CDC source whose stored position is gone (offsets file removed, offsets topic deleted) but that evidently
ran before (postgres_wal: its slot exists; mysql_binlog: its topic holds records) refuses to start over
silently: exit 1 with one line naming the choice. `run --from-scratch` snapshots again deliberately."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from liberator.embedded.ports import free_port
from tests.e2e.cdc_targets import Target, _cdc_target  # noqa: F401 - _cdc_target: the fixture
from tests.support import (
    TopicFold,
    app_config,
    fold_differences,
    health,
    start_daemon_process,
    terminate,
    wait_for,
)

ROWS = 300


def _source_health(port: int) -> dict[str, object]:
    doc = health(port) or {}
    sources: dict[str, dict[str, object]] = doc.get("sources", {})
    return sources.get("cdc", {})


def _delete_topic(bootstrap: str, topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.delete_topics([topic]).values():
        future.result(timeout=30)
    wait_for(lambda: topic not in admin.list_topics(timeout=5).topics, what=f"topic {topic} to be deleted")


@pytest.mark.parametrize("store", ["file", "kafka"])
def test_lost_offsets_stop_the_source_with_the_choice_and_from_scratch_snapshots_again(
    cdc_target: Target, store: str, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    target = cdc_target
    target.fill(ROWS)
    port = free_port()
    offsets_topic = f"offsets-{uuid.uuid4().hex[:10]}"
    where = f"path: {tmp_path}/offsets.json" if store == "file" else f"topic: {offsets_topic}"
    offsets = f"offsets:\n  store: {store}\n  {where}\n  flush_interval: 200ms\nhttp:\n  listen: 127.0.0.1:{port}\n"
    config = app_config(tmp_path, kafka_bootstrap, registry_url, target.source, offsets=offsets)
    log = tmp_path / "daemon.log"

    process = start_daemon_process(config, log)
    try:
        target.transaction([("UPDATE acc SET v = v + 1 WHERE id <= 10", ())])
        with TopicFold(kafka_bootstrap, registry_url, target.topic, "v") as fold:
            wait_for(lambda: fold.rows() == target.table(), what="the first run to publish the table")
        # Everything acknowledged is stored: the position moved past the snapshot.
        wait_for(lambda: _source_health(port).get("in_flight") == 0 and _source_health(port).get("position"))
    finally:
        assert terminate(process) == 0, log.read_text()[-3000:]

    if store == "file":
        (tmp_path / "offsets.json").unlink()
    else:
        _delete_topic(kafka_bootstrap, offsets_topic)
    target.transaction([("UPDATE acc SET v = v + 1 WHERE id <= 20", ()), ("INSERT INTO acc VALUES (1000, 5)", ())])

    lost = tmp_path / "lost.log"
    process = start_daemon_process(config, lost)
    try:
        assert process.wait(60) == 1, lost.read_text()[-3000:]
    finally:
        if process.poll() is None:  # it started over instead of stopping
            process.kill()
            process.wait(10)
    evidence = f"topic {target.topic} already holds records"
    if target.slot:
        evidence = f"replication slot {target.slot} exists"
    line = f"source cdc: no stored position, but {evidence} (the offsets store was lost or reset?); "
    assert line in lost.read_text(), lost.read_text()[-3000:]
    assert "--from-scratch" in lost.read_text() and "offsets set CONFIG --source cdc" in lost.read_text()
    assert "Traceback" not in lost.read_text()

    process = start_daemon_process(config, log, "--from-scratch")
    try:
        table = target.table()
        with TopicFold(kafka_bootstrap, registry_url, target.topic, "v") as fold:
            try:
                wait_for(lambda: fold.rows() == table, timeout=60, interval=0.5, what="the topic to fold to the table")
            except AssertionError:
                raise AssertionError(f"topic != table: {fold_differences(fold.rows(), table)}") from None
    finally:
        assert terminate(process) == 0, log.read_text()[-3000:]
    text = log.read_text()
    assert "source cdc starts from scratch (--from-scratch)" in text
    if target.slot:
        assert f"dropped replication slot {target.slot} (--from-scratch)" in text
