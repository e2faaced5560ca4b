"""Subject name strategies (schema_registry.key_subject / value_subject): each registers under the name
Confluent's strategy of that name gives, and consumers decode the records as before (by schema id)."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from liberator.errors import ConfigError
from liberator.registry.client import RegistryClient
from liberator.registry.subjects import record_fullname, subject_name
from liberator.testbed import unique_name
from tests.support import DaemonThread, app_config, read_records, read_topic


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
