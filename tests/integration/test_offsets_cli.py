"""`liberator offsets`: a damaged store is one line naming the fix, `reset` repairs it, `set` resumes a source."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from tests.integration.legacy_db import LegacyDb
from tests.support import DaemonThread, app_config, cli, read_topic, wait_for

_INFO = re.compile(r"^\d{4}-\d\d-\d\d [\d:,]+ INFO ")
GOOD_ENTRY = {"source": "legacy", "type": "query", "position": {"streams": {}}, "stored_at": "2026-01-01T00:00:00"}


@pytest.fixture
def legacy(tmp_path: Path) -> LegacyDb:
    db = LegacyDb(f"sqlite:///{tmp_path}/legacy.db", "sqlite")
    db.create_orders()
    for i in range(1, 6):
        db.insert_order(i)
    return db


def source_yaml(legacy: LegacyDb) -> str:
    return (
        f'  - name: legacy\n    topic: "{legacy.prefix}.{{table}}"\n    type: query\n    url: {legacy.url}\n'
        "    tables: [orders]\n    cursor: [id]\n    poll_interval: 100ms\n"
        f'  - name: other\n    topic: "{legacy.prefix}.other.{{table}}"\n    type: query\n    url: {legacy.url}\n'
        "    tables: [orders]\n    cursor: [id]\n    poll_interval: 100ms\n"
    )


def file_config(tmp_path: Path, legacy: LegacyDb) -> Path:
    return app_config(tmp_path, "127.0.0.1:1", "http://127.0.0.1:9", source_yaml(legacy))


def one_line_error(result: Any, *fragments: str) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    # `run` logs that it starts before it reads the store; every other line counts.
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip() and not _INFO.match(line)]
    assert len(lines) == 1, lines
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


WHOLE = [
    pytest.param(b"\x89PNG\r\n\x1a\n\x00\xff\xfe binary", "is not text", id="binary"),
    pytest.param(b'{"app": "test", "sources": {', "is not valid JSON", id="truncated"),
    pytest.param(b"[1, 2, 3]", "is not an offsets file", id="a-list"),
    pytest.param(b'{"app": "test", "sources": [1]}', "is not an offsets file", id="sources-a-list"),
]
ENTRY = [
    pytest.param("not an object", "a stored position is a JSON object, not a string", id="entry-a-string"),
    pytest.param({"source": "legacy", "type": "query"}, "it has no position, stored_at", id="entry-missing-fields"),
    pytest.param({**GOOD_ENTRY, "position": [1]}, "its position is a list", id="position-a-list"),
]


@pytest.mark.parametrize(("content", "reason"), WHOLE)
def test_an_unreadable_offsets_file_is_one_line_everywhere(
    tmp_path: Path, legacy: LegacyDb, content: bytes, reason: str
) -> None:
    config = file_config(tmp_path, legacy)
    offsets = tmp_path / "offsets.json"
    offsets.write_bytes(content)
    fix = "run `liberator offsets reset CONFIG` to move it aside"
    one_line_error(cli("offsets", "show", str(config)), f"offsets file {offsets} {reason}", fix)
    one_line_error(cli("run", str(config)), f"offsets file {offsets} {reason}", fix)
    problems = [line for line in cli("check", str(config)).stdout.splitlines() if "offsets" in line]
    assert len(problems) == 1 and problems[0].startswith(f"problem: offsets file {offsets} {reason}"), problems

    # --source cannot keep the other sources' positions: refused, the file left as it is.
    one_line_error(cli("offsets", "reset", str(config), "--source", "legacy"), "not --source")
    assert offsets.read_bytes() == content

    reset = cli("offsets", "reset", str(config))
    assert reset.returncode == 0, reset.stderr
    (aside,) = tmp_path.glob("offsets.json.corrupt-*")
    assert aside.read_bytes() == content, "the damaged file is kept for the operator"
    assert f"moved the unreadable {offsets} aside to {aside}" in reset.stdout
    assert "reset legacy" in reset.stdout and "reset other" in reset.stdout
    assert json.loads(cli("offsets", "show", str(config)).stdout) == {}


@pytest.mark.parametrize(("entry", "reason"), ENTRY)
def test_a_damaged_entry_spoils_only_its_source(tmp_path: Path, legacy: LegacyDb, entry: Any, reason: str) -> None:
    config = file_config(tmp_path, legacy)
    offsets = tmp_path / "offsets.json"
    other = {**GOOD_ENTRY, "source": "other"}
    offsets.write_text(json.dumps({"app": "test", "sources": {"legacy": entry, "other": other}}))
    fix = "run `liberator offsets reset CONFIG --source legacy`"
    one_line_error(cli("offsets", "show", str(config)), f"offsets file {offsets}: the position of source 'legacy'", fix)
    one_line_error(cli("run", str(config)), reason, "offsets set CONFIG --source legacy POSITION")

    reset = cli("offsets", "reset", str(config), "--source", "legacy")
    assert reset.returncode == 0, reset.stderr
    assert json.loads(cli("offsets", "show", str(config)).stdout) == {"other": other}


def kafka_config(tmp_path: Path, legacy: LegacyDb, bootstrap: str, registry: str) -> Path:
    offsets = f"offsets:\n  store: kafka\n  topic: {legacy.prefix}-offsets\n  flush_interval: 200ms\n"
    return app_config(tmp_path, bootstrap, registry, source_yaml(legacy), offsets=offsets)


@pytest.mark.parametrize("store", ["file", "kafka"])
def test_set_stores_a_position_the_next_run_resumes_from(
    tmp_path: Path, legacy: LegacyDb, kafka_bootstrap: str, registry_url: str, store: str
) -> None:
    if store == "kafka":
        config = kafka_config(tmp_path, legacy, kafka_bootstrap, registry_url)
    else:
        config = app_config(tmp_path, kafka_bootstrap, registry_url, source_yaml(legacy))
    position = {"streams": {"orders": {"cursor": [3]}}}
    result = cli("offsets", "set", str(config), "--source", "legacy", json.dumps(position))
    assert result.returncode == 0, result.stderr
    assert f"set legacy in {'Kafka topic' if store == 'kafka' else 'file'}" in result.stdout
    shown = json.loads(cli("offsets", "show", str(config)).stdout)
    assert shown["legacy"]["position"]["streams"]["orders"]["cursor"] == [3]

    # What `offsets show` prints for a source (the whole document) is accepted as it is, from stdin too.
    again = cli("offsets", "set", str(config), "--source", "legacy", "-", stdin=json.dumps(shown["legacy"]))
    assert again.returncode == 0, again.stderr

    with DaemonThread(config) as daemon:
        records = read_topic(kafka_bootstrap, registry_url, f"{legacy.prefix}.orders", expect=2)
        wait_for(lambda: daemon.status("legacy").positions_stored > 0, what="a stored position")
    assert [r["key"]["id"] for r in records] == [4, 5]
    assert [r["key"]["id"] for r in read_topic(kafka_bootstrap, registry_url, f"{legacy.prefix}.orders")] == [4, 5]


INVALID = [
    pytest.param('{"streams": ', "is not JSON", id="not-json"),
    pytest.param("[1, 2]", "it is not a JSON object", id="a-list"),
    pytest.param("{}", "missing 'streams'", id="missing-field"),
    pytest.param('{"streams": []}', "streams must be an object", id="wrong-shape"),
    pytest.param('{"streams": {"orders": {"cursor": [{"tag": 1}]}}}', "not a stored scalar", id="bad-scalar"),
    pytest.param(
        json.dumps({"source": "legacy", "type": "postgres_wal", "position": {"lsn": "0/1"}, "stored_at": "x"}),
        "is for a 'postgres_wal' source; source legacy is 'query'",
        id="another-type",
    ),
]


@pytest.mark.parametrize("store", ["file", "kafka"])
@pytest.mark.parametrize(("position", "reason"), INVALID)
def test_set_refuses_what_the_source_cannot_read(
    tmp_path: Path, legacy: LegacyDb, kafka_bootstrap: str, registry_url: str, store: str, position: str, reason: str
) -> None:
    config = (
        kafka_config(tmp_path, legacy, kafka_bootstrap, registry_url)
        if store == "kafka"
        else app_config(tmp_path, kafka_bootstrap, registry_url, source_yaml(legacy))
    )
    before = cli("offsets", "set", str(config), "--source", "legacy", '{"streams": {}}')
    assert before.returncode == 0, before.stderr
    shown = cli("offsets", "show", str(config)).stdout
    one_line_error(cli("offsets", "set", str(config), "--source", "legacy", position), reason)
    assert cli("offsets", "show", str(config)).stdout == shown, "nothing was stored"
    one_line_error(cli("offsets", "set", str(config), "--source", "nope", "{}"), "no source named 'nope'")


def test_a_damaged_kafka_record_is_one_line_and_reset_repairs_it(
    tmp_path: Path, legacy: LegacyDb, kafka_bootstrap: str, registry_url: str
) -> None:
    config = kafka_config(tmp_path, legacy, kafka_bootstrap, registry_url)
    assert cli("offsets", "set", str(config), "--source", "other", '{"streams": {}}').returncode == 0
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(f"{legacy.prefix}-offsets", key=b"test/legacy", value=b"\xff\x00 not json")
    assert producer.flush(30) == 0
    one_line_error(
        cli("offsets", "show", str(config)),
        f"offsets topic {legacy.prefix}-offsets: the position of source 'legacy'",
        "offsets reset CONFIG --source legacy",
    )
    assert cli("offsets", "reset", str(config), "--source", "legacy").returncode == 0
    assert set(json.loads(cli("offsets", "show", str(config)).stdout)) == {"other"}


def test_show_prints_each_sinks_committed_group_offsets_per_partition(
    tmp_path: Path, legacy: LegacyDb, kafka_bootstrap: str, registry_url: str
) -> None:
    from confluent_kafka import Consumer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    topic, group = f"{legacy.prefix}.orders", f"{legacy.prefix}-replica"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    for future in admin.create_topics([NewTopic(topic, 2, 1)]).values():
        future.result(30)
    sink = (
        f"sinks:\n  - name: replica\n    type: sql\n    url: sqlite:///{tmp_path}/target.db\n    topics: [{topic}]\n"
        f"    consumer: {{group_id: {group}}}\n"
    )
    config = app_config(tmp_path, kafka_bootstrap, registry_url, source_yaml(legacy) + sink)
    member = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group})
    member.commit(offsets=[TopicPartition(topic, 0, 12), TopicPartition(topic, 1, 30)], asynchronous=False)
    member.close()
    result = cli("offsets", "show", str(config))
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["sinks"] == {"replica": {"type": "sql", "group_id": group, "committed": {topic: {"0": 12, "1": 30}}}}
    assert set(shown) == {"sinks"}  # no source stored a position yet


def test_show_still_prints_the_positions_when_the_broker_does_not_answer_for_the_sinks(
    tmp_path: Path, legacy: LegacyDb
) -> None:
    sink = f"sinks:\n  - name: replica\n    type: sql\n    url: sqlite:///{tmp_path}/target.db\n    topics: [t]\n"
    config = app_config(tmp_path, "127.0.0.1:1", "http://127.0.0.1:9", source_yaml(legacy) + sink)
    assert cli("offsets", "set", str(config), "--source", "legacy", json.dumps(GOOD_ENTRY)).returncode == 0
    result = cli("offsets", "show", str(config))
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["legacy"]["position"] == {"streams": {}}
    error = shown["sinks"]["replica"]["error"]
    assert error.startswith("cannot read group liberator-test-replica's committed offsets from 127.0.0.1:1"), error
