"""A sink that subscribes before its topic exists starts consuming within seconds of the topic appearing,
whatever the start order: here the daemon's own source creates the topic with its first row, after the
sink (by name or by pattern) has subscribed."""

from __future__ import annotations

from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from tests.integration.legacy_db import LegacyDb
from tests.integration.sql_sink_support import count, sink_yaml, source_yaml
from tests.support import DaemonThread, app_config, wait_for


@pytest.mark.parametrize("subscription", ["name", "pattern"])
def test_a_sink_subscribed_before_its_topic_exists_applies_rows_within_seconds(
    tmp_path: Path, kafka_bootstrap: str, registry_url: str, subscription: str
) -> None:
    legacy = LegacyDb(f"sqlite:///{tmp_path}/legacy.db", "sqlite")
    legacy.create_orders()  # empty: the source creates its topic with the first row
    topic = f"{legacy.prefix}.orders"
    topics = f"[{topic}]" if subscription == "name" else f"'^{legacy.prefix}\\..*'"
    config = app_config(
        tmp_path,
        kafka_bootstrap,
        registry_url,
        source_yaml(legacy, "[orders]") + sink_yaml(legacy, topics, "    create: true\n"),
    )
    with DaemonThread(config) as daemon:
        sinks = daemon.daemon.metrics.sinks
        wait_for(lambda: "replica" in sinks and sinks["replica"].state == "running", what="the sink subscribed")
        assert topic not in AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(timeout=10).topics
        for i in range(1, 6):
            legacy.insert_order(i)
        # Well under librdkafka's default 5 min between metadata refreshes; the join takes ~3 s on Tansu.
        wait_for(lambda: count(legacy.url, "sink_orders") == 5, timeout=30, what="the rows applied by the sink")
