"""The daemon's instance slot and the sinks' static membership ids derived from it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from liberator.instance import InstanceSlot, kafka_id
from liberator.sinkrunner import group_instance_id
from liberator.sinks.sql.config import SqlSinkConfig


def sink(**fields: object) -> SqlSinkConfig:
    return SqlSinkConfig.model_validate({"name": "replica", "url": "sqlite://", "topics": ["t"], **fields})


def test_two_daemons_of_one_config_on_a_host_hold_different_slots_and_a_restart_takes_the_same(
    tmp_path: Path,
) -> None:
    first = InstanceSlot("shop", tmp_path)
    second = InstanceSlot("shop", tmp_path)
    other_app = InstanceSlot("billing", tmp_path)
    assert (first.number, second.number, other_app.number) == (0, 1, 0)
    first.close()  # the first daemon stops; its restart gets its slot back, not a third one
    restarted = InstanceSlot("shop", tmp_path)
    assert restarted.id == first.id and restarted.number == 0
    for slot in (second, other_app, restarted):
        slot.close()


def test_a_daemon_killed_with_sigkill_leaves_its_slot_free(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, pathlib; from liberator.instance import InstanceSlot; "
            f"s = InstanceSlot('shop', pathlib.Path({str(tmp_path)!r})); print(s.number, flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "0"
    assert InstanceSlot("shop", tmp_path).number == 1  # held by the child
    holder.kill()
    holder.wait(10)
    assert InstanceSlot("shop", tmp_path).number == 0


def test_the_group_instance_id_is_derived_overridable_and_can_be_turned_off() -> None:
    assert group_instance_id("shop", sink(), "db-host.example-0") == "liberator-shop-replica-db-host.example-0"
    assert group_instance_id("shop", sink(group_instance_id="replica-pod-7"), "h-0") == "replica-pod-7"
    assert group_instance_id("shop", sink(static_membership=False), "h-0") is None
    assert kafka_id("a b/c:d" + "x" * 300) == ("a_b_c_d" + "x" * 300)[:249]
