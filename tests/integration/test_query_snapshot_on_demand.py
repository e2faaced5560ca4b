"""Snapshots on demand on the query source, through `liberator snapshot` and the daemon's admin endpoint:
a table read again while polling goes on (the topic folded by key equals the table, updated rows end with
their newest version), `--where`, refusals, `--status`, `--cancel`, and a backfill resumed from the stored
position after a restart (not from the start of the table)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from liberator.embedded.ports import free_port
from tests.integration.legacy_db import LegacyDb
from tests.support import (
    DaemonThread,
    app_config,
    cli,
    fold_by_key,
    read_topic,
    snapshot_cli,
    snapshots_idle,
    wait_for,
    with_http,
)

ROWS = 40


@pytest.fixture(params=["postgresql", "mariadb"])
def legacy(request: pytest.FixtureRequest) -> LegacyDb:
    kind = str(request.param)
    legacy = LegacyDb(str(request.getfixturevalue("pg_url" if kind == "postgresql" else "mysql_url")), kind)
    legacy.create_orders()
    for i in range(1, ROWS + 1):
        legacy.insert_order(i)
    return legacy


def _config(legacy: LegacyDb, tmp_path: Path, kafka_bootstrap: str, registry_url: str) -> tuple[Path, str]:
    source = (
        f'  - name: legacy\n    topic: "{legacy.prefix}.{{table}}"\n    type: query\n    url: {legacy.url}\n'
        "    tables: [orders]\n    cursor: [updated_at, id]\n    poll_interval: 50ms\n    safety_delay: 0s\n"
        "    batch_size: 7\n"
    )
    path = app_config(tmp_path, kafka_bootstrap, registry_url, source)
    with_http(path, free_port())
    return path, f"{legacy.prefix}.orders"


def _records(kafka_bootstrap: str, registry_url: str, topic: str) -> list[dict[str, Any]]:
    return read_topic(kafka_bootstrap, registry_url, topic)


def _snapshot(config: Path, *args: str) -> str:
    return snapshot_cli(config, "legacy", *args)


def _idle(config: Path) -> bool:
    return snapshots_idle(config, "legacy")


def test_a_table_is_read_again_while_polling_goes_on(
    legacy: LegacyDb, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    config, topic = _config(legacy, tmp_path, kafka_bootstrap, registry_url)
    with DaemonThread(config):
        wait_for(lambda: len(_records(kafka_bootstrap, registry_url, topic)) == ROWS, what="the initial snapshot")
        said = _snapshot(config, "--table", "orders")
        assert "queued" in said, said
        for i in range(1, 11):  # a writer changes rows while the table is read again
            legacy.run(f"UPDATE orders SET qty = 100 + id, updated_at = {legacy.now} WHERE id = {i}")
        wait_for(lambda: len(_records(kafka_bootstrap, registry_url, topic)) >= 2 * ROWS + 10, what="every record")
        wait_for(lambda: _idle(config), what="the snapshot to finish")
    records = _records(kafka_bootstrap, registry_url, topic)
    assert len(records) == 2 * ROWS + 10, "each row once more, and each update once"
    folded = fold_by_key(records)
    assert {k: v["qty"] for k, v in folded.items()} == {i: (100 + i if i <= 10 else 1) for i in range(1, ROWS + 1)}


def test_where_refusals_status_and_cancel(
    legacy: LegacyDb, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    config, topic = _config(legacy, tmp_path, kafka_bootstrap, registry_url)
    with DaemonThread(config):
        wait_for(lambda: len(_records(kafka_bootstrap, registry_url, topic)) == ROWS, what="the initial snapshot")
        _snapshot(config, "--table", "orders", "--where", "id <= 5")
        wait_for(lambda: len(_records(kafka_bootstrap, registry_url, topic)) == ROWS + 5, what="the 5 rows")
        assert [r["key"]["id"] for r in _records(kafka_bootstrap, registry_url, topic)[ROWS:]] == [1, 2, 3, 4, 5]

        unknown = _snapshot(config, "--table", "nope").split()[1]
        broken = _snapshot(config, "--table", "orders", "--where", "no_such_column = 1").split()[1]

        def both_refused() -> str | None:
            status = _snapshot(config, "--status")
            return status if unknown in status and broken in status else None

        status = wait_for(both_refused, what="both refusals in --status")
        assert "no captured table 'nope'" in status and "does not run on" in status, status

        assert cli("pause", str(config), "--source", "legacy").returncode == 0
        queued = _snapshot(config, "--table", "orders").split()[1]
        assert f"{queued}  queued" in _snapshot(config, "--status")
        assert "cancelled" in _snapshot(config, "--cancel", queued)
        assert cli("resume", str(config), "--source", "legacy").returncode == 0
        wait_for(lambda: "cancelled before it started" in _snapshot(config, "--status"), what="the cancel")
        gone = cli("snapshot", str(config), "--source", "legacy", "--cancel", "nosuchid")
        assert gone.returncode == 1 and "no snapshot 'nosuchid'" in gone.stderr
    assert len(_records(kafka_bootstrap, registry_url, topic)) == ROWS + 5, "nothing from the cancelled one"


def test_a_backfill_resumes_from_its_stored_position_after_a_restart(
    legacy: LegacyDb, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    config, topic = _config(legacy, tmp_path, kafka_bootstrap, registry_url)
    with DaemonThread(config) as daemon:
        wait_for(lambda: len(_records(kafka_bootstrap, registry_url, topic)) == ROWS, what="the initial snapshot")
        wait_for(lambda: daemon.positions_settled("legacy"), what="the position stored")
    # As if the daemon had died after publishing the backfill's rows up to id 25 and storing that position.
    shown = json.loads(cli("offsets", "show", str(config)).stdout)
    position = shown["legacy"]["position"]
    position["backfills"] = [{"id": "resume1", "stream": "orders", "where": None, "after": [25], "rows": 25}]
    done = cli("offsets", "set", str(config), "--source", "legacy", json.dumps(position))
    assert done.returncode == 0, done.stderr
    with DaemonThread(config):
        wait_for(lambda: len(_records(kafka_bootstrap, registry_url, topic)) == ROWS + 15, what="the rest of it")
        wait_for(lambda: _idle(config), what="the backfill to finish")
    assert [r["key"]["id"] for r in _records(kafka_bootstrap, registry_url, topic)[ROWS:]] == list(range(26, 41))


def _signal(legacy: LegacyDb, signal_id: str, data: dict[str, Any]) -> None:
    text = json.dumps(data).replace("'", "''")
    legacy.run(f"INSERT INTO liberator_signal VALUES ('{signal_id}', 'execute-snapshot', '{text}')")


def _only(condition: str) -> dict[str, Any]:
    return {
        "data-collections": ["orders"],
        "additional-conditions": [{"data-collection": "orders", "filter": condition}],
    }


def test_rows_of_the_signal_table_are_taken_once_each_across_a_restart(
    legacy: LegacyDb, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    legacy.run("CREATE TABLE liberator_signal (id varchar(64) PRIMARY KEY, type varchar(32) NOT NULL, data text)")
    config, topic = _config(legacy, tmp_path, kafka_bootstrap, registry_url)
    config.write_text(
        config.read_text().replace("    batch_size: 7\n", "    batch_size: 7\n    signal_table: liberator_signal\n")
    )
    with DaemonThread(config) as daemon:
        wait_for(lambda: len(_records(kafka_bootstrap, registry_url, topic)) == ROWS, what="the initial snapshot")
        _signal(legacy, "s1", _only("id <= 5"))
        wait_for(lambda: len(_records(kafka_bootstrap, registry_url, topic)) == ROWS + 5, what="rows 1-5 again")
        _signal(legacy, "s2", {"data-collections": ["orders"], "type": "blocking"})
        wait_for(lambda: "s2  refused  this source does not take blocking" in _snapshot(config, "--status"), what="no")
        wait_for(lambda: _idle_but_refused(config) and daemon.positions_settled("legacy"), what="the position stored")
    _signal(legacy, "s3", _only("id > 35"))  # while the daemon is stopped
    with DaemonThread(config):
        wait_for(lambda: len(_records(kafka_bootstrap, registry_url, topic)) == ROWS + 10, what="rows 36-40 again")
        _signal(legacy, "s4", _only("id = 1"))
        wait_for(lambda: len(_records(kafka_bootstrap, registry_url, topic)) == ROWS + 11, what="row 1 again")
    again = _records(kafka_bootstrap, registry_url, topic)[ROWS:]
    # s1 is not taken again after the restart: its rows would come before 36-40.
    assert [r["key"]["id"] for r in again] == [1, 2, 3, 4, 5, 36, 37, 38, 39, 40, 1]


def _idle_but_refused(config: Path) -> bool:
    return not any(word in _snapshot(config, "--status") for word in ("queued ", "running ", "waiting "))


def test_a_missing_signal_table_is_one_problem_line_with_its_ddl(
    legacy: LegacyDb, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    config, _topic = _config(legacy, tmp_path, kafka_bootstrap, registry_url)
    config.write_text(config.read_text().replace("    batch_size: 7\n", "    batch_size: 7\n    signal_table: nope\n"))
    result = cli("check", str(config))
    assert result.returncode == 1
    problems = [line for line in result.stdout.splitlines() if line.startswith("problem: ")]
    assert len(problems) == 1, result.stdout
    assert "cannot read signal table nope" in problems[0] and "CREATE TABLE nope (id varchar(64)" in problems[0]
