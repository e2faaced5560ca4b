"""A stored position that stays put while Kafka keeps acknowledging events is said once, in the log, /health
and /metrics, and said to be over once it moves again.

The stall is made real by breaking the offsets file under the running daemon (a directory where the file
was): every store fails, events keep being acknowledged, the stored position cannot move.
"""

from __future__ import annotations

import logging
import shutil
import sqlite3
from pathlib import Path

import pytest

from liberator.embedded.ports import free_port
from tests.support import DaemonThread, app_config, health, metrics_text, wait_for, with_http


def _insert(db: Path, first: int, last: int) -> None:
    with sqlite3.connect(db) as conn:
        conn.executemany(
            "INSERT INTO items (id, name, updated_at) VALUES (?, ?, strftime('%Y-%m-%d %H:%M:%f', 'now'))",
            [(i, f"item {i}") for i in range(first, last + 1)],
        )


def test_a_stalled_position_is_warned_about_once_and_cleared_when_it_moves(
    tmp_path: Path, kafka_bootstrap: str, registry_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "legacy.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, updated_at DATETIME NOT NULL)")
    _insert(db, 1, 3)
    source = (
        f"  - name: legacy\n    type: query\n    url: sqlite:///{db}\n    tables: [items]\n"
        f"    cursor: [updated_at, id]\n    poll_interval: 100ms\n    safety_delay: 0s\n"
        f'    topic: "stall-{free_port()}.{{table}}"\n'
    )
    offsets = tmp_path / "offsets.json"
    offsets_yaml = f"offsets:\n  store: file\n  path: {offsets}\n  flush_interval: 200ms\n  stall_warning: 2s\n"
    config = app_config(tmp_path, kafka_bootstrap, registry_url, source, offsets=offsets_yaml)
    port = free_port()
    with_http(config, port)
    caplog.set_level(logging.INFO, logger="liberator")

    def source_health() -> dict[str, object]:
        answer = health(port)
        return {} if answer is None else {"status": answer["status"], **answer["sources"]["legacy"]}

    with DaemonThread(config) as daemon:
        wait_for(lambda: daemon.positions_settled("legacy"), what="the first rows' position stored")
        assert source_health()["position_stalled"] is False
        saved = offsets.read_text()
        offsets.unlink()
        offsets.mkdir()  # every store fails from now on
        _insert(db, 4, 6)
        wait_for(lambda: source_health().get("position_stalled") is True, what="/health to say stalled")
        stalled = source_health()
        assert stalled["status"] == "degraded" and stalled["events_acked"] == 6
        assert float(str(stalled["position_unchanged_seconds"])) >= 2
        assert 'liberator_position_stalled{app="test",source="legacy",type="query"} 1.0' in metrics_text(port)
        warnings = [r.getMessage() for r in caplog.records if "has not moved for" in r.getMessage()]
        assert len(warnings) == 1 and "Kafka acknowledged 3 events since" in warnings[0], warnings

        shutil.rmtree(offsets)
        offsets.write_text(saved)  # the store works again: the position moves
        wait_for(lambda: source_health().get("position_stalled") is False, what="/health to say not stalled")
        assert source_health()["status"] == "ok"
        assert 'liberator_position_stalled{app="test",source="legacy",type="query"} 0.0' in metrics_text(port)
        assert any("the stored position moves again after" in r.getMessage() for r in caplog.records)
    assert [r.getMessage() for r in caplog.records].count(warnings[0]) == 1
