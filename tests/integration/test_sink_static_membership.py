"""A sink joins its consumer group as a static member whose group.instance.id is the same after a restart.

The test broker (Tansu) completes a join in about half of session.timeout.ms whatever the membership, so
the fast rejoin itself is shown on a real Kafka (tests/e2e/test_sink_static_rejoin.py); here: the id is
in the consumer settings the sink runs with, the broker's group description shows it, and a restarted
daemon uses the same one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from confluent_kafka import ConsumerGroupState  # type: ignore[attr-defined]
from confluent_kafka.admin import AdminClient  # type: ignore[attr-defined]

from tests.integration.legacy_db import LegacyDb
from tests.integration.sql_sink_support import TopicWriter, sink_entry
from tests.support import DaemonThread, app_config, wait_for

NO_SOURCES = "  []\nsinks:\n"


def group_members(bootstrap: str, group: str) -> list[Any]:
    """The group's members as the broker describes them, once the group is stable. Tansu answers a stable
    group with no members at all (it does not describe them); a real Kafka lists each with its
    group.instance.id."""
    admin = AdminClient({"bootstrap.servers": bootstrap})

    def stable() -> Any:
        description = admin.describe_consumer_groups([group])[group].result(10)
        return description if description.state == ConsumerGroupState.STABLE else None

    return list(wait_for(stable, timeout=60, what=f"group {group} to be stable").members)


def test_a_restarted_sink_rejoins_with_the_same_group_instance_id(
    tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    legacy = LegacyDb(f"sqlite:///{tmp_path}/target.db", "sqlite")
    legacy.create_orders()
    writer = TopicWriter(kafka_bootstrap, registry_url, f"{legacy.prefix}.orders", legacy.url, "orders", "state")
    config = app_config(tmp_path, kafka_bootstrap, registry_url, NO_SOURCES + sink_entry(legacy, f"[{writer.topic}]"))
    group = f"{legacy.prefix}-replica"
    seen = []
    for _run in range(2):
        with DaemonThread(config) as daemon:
            wait_for(lambda: daemon.sink_status("replica").assigned, timeout=60, what="the sink's assignment")
            member_id = daemon.daemon.sink_runners[0].settings["group.instance.id"]
            assert member_id.startswith("liberator-test-replica-")
            members = group_members(kafka_bootstrap, group)
            assert [m.group_instance_id for m in members] in ([member_id], [])  # [] where the broker hides them
            seen.append(member_id)
    assert seen[0] == seen[1]
