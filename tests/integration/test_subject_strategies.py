"""Subject name strategies (schema_registry.key_subject / value_subject): each registers under the name
Confluent's strategy of that name gives, and consumers decode the records as before (by schema id)."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from liberator.errors import ConfigError
from liberator.registry.client import RegistryClient
from liberator.registry.subjects import record_fullname, subject_name
from liberator_testbed import unique_name
from tests.support import DaemonThread, app_config, cli, read_records, read_topic


def test_subject_names_follow_confluents_strategies() -> None:
    record = {"type": "record", "name": "Value", "namespace": "shop.orders", "fields": []}
    assert subject_name("topic", "t", record, "value") == "t-value"
    assert subject_name("record", "t", record, "value") == "shop.orders.Value"
    assert subject_name("topic_record", "t", record, "key") == "t-shop.orders.Value"
    assert record_fullname({"type": "record", "name": "a.B", "namespace": "x", "fields": []}) == "a.B"
    with pytest.raises(ConfigError, match="key_subject: topic"):
        subject_name("record", "t", "string", "key")


@pytest.mark.parametrize(("key", "value"), [("topic_record", "record"), ("record", "topic_record")])
def test_the_daemon_registers_under_the_chosen_strategies(
    key: str, value: str, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path}/legacy.db")
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL)"))
        conn.execute(sa.text("INSERT INTO items VALUES (1, 'one'), (2, 'two')"))
    engine.dispose()
    prefix = unique_name("subj")
    source = (
        f"  - name: legacy\n    type: query\n    url: sqlite:///{tmp_path}/legacy.db\n    tables: [items]\n"
        f'    cursor: [id]\n    poll_interval: 100ms\n    topic: "{prefix}.{{table}}"\n'
    )
    config = app_config(tmp_path, kafka_bootstrap, registry_url, source)
    text = config.read_text().replace(
        f"schema_registry:\n  url: {registry_url}\n",
        f"schema_registry:\n  url: {registry_url}\n  key_subject: {key}\n  value_subject: {value}\n",
    )
    config.write_text(text)
    topic = f"{prefix}.items"
    with DaemonThread(config):
        records = read_topic(kafka_bootstrap, registry_url, topic, expect=2)
        raw = read_records(kafka_bootstrap, topic, expect=2)
    assert sorted(r["key"]["id"] for r in records) == [1, 2]
    registry = RegistryClient(registry_url)
    message = raw[0]
    schemas = {
        "key": registry.get_schema(int.from_bytes((message.key() or b"")[1:5], "big")),
        "value": registry.get_schema(int.from_bytes((message.value() or b"")[1:5], "big")),
    }
    subjects = set(registry.subjects())
    assert f"{topic}-key" not in subjects and f"{topic}-value" not in subjects
    for part, strategy in (("key", key), ("value", value)):
        fullname = record_fullname(schemas[part])
        expected = fullname if strategy == "record" else f"{topic}-{fullname}"
        latest = registry.latest(str(expected))
        assert latest is not None, f"no subject {expected} for the {part}"
        assert record_fullname(latest[2]) == fullname


def _query_config(tmp_path: Path, bootstrap: str, registry_url: str, prefix: str) -> Path:
    source = (
        f"  - name: legacy\n    type: query\n    url: sqlite:///{tmp_path}/legacy.db\n    tables: [items]\n"
        f'    cursor: [id]\n    poll_interval: 100ms\n    topic: "{prefix}.{{table}}"\n'
    )
    return app_config(tmp_path, bootstrap, registry_url, source)


def test_schemas_check_refuses_a_breaking_migration_naming_table_field_and_rule(
    tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    """What a DBA runs in CI after applying a migration to a staging copy, before the deploy."""
    engine = sa.create_engine(f"sqlite:///{tmp_path}/legacy.db")
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE items (id INTEGER PRIMARY KEY, qty INTEGER NOT NULL)"))
        conn.execute(sa.text("INSERT INTO items VALUES (1, 5)"))
    prefix = unique_name("check")
    config = _query_config(tmp_path, kafka_bootstrap, registry_url, prefix)
    with DaemonThread(config):  # version 1 of each subject, as a running daemon registers it
        read_topic(kafka_bootstrap, registry_url, f"{prefix}.items", expect=1)
    unchanged = cli("schemas", str(config), "--check")
    assert unchanged.returncode == 0, unchanged.stderr
    assert "all 2 schemas are compatible" in unchanged.stdout

    with engine.begin() as conn:  # a compatible migration: a new nullable column
        conn.execute(sa.text("ALTER TABLE items ADD COLUMN note TEXT"))
    compatible = cli("schemas", str(config), "--check")
    assert compatible.returncode == 0, compatible.stderr

    with engine.begin() as conn:  # a breaking one: qty becomes text
        conn.execute(sa.text("CREATE TABLE items2 (id INTEGER PRIMARY KEY, qty TEXT NOT NULL, note TEXT)"))
        conn.execute(sa.text("INSERT INTO items2 SELECT id, CAST(qty AS TEXT), note FROM items"))
        conn.execute(sa.text("DROP TABLE items"))
        conn.execute(sa.text("ALTER TABLE items2 RENAME TO items"))
    engine.dispose()
    breaking = cli("schemas", str(config), "--check")
    assert breaking.returncode == 1, breaking.stdout
    line = next(line for line in breaking.stderr.splitlines() if "refused" in line)
    assert "table items" in line and "qty" in line and "BACKWARD" in line, line
    latest = RegistryClient(registry_url).latest(f"{prefix}.items-value")
    assert latest is not None and latest[1] == 1, "the check registered nothing"
