"""Idle captured tables: the binlog source's stored position keeps moving with the server's other traffic
(throttled by `heartbeat`), a position left pending when the server falls silent is handed over at the
server's next heartbeat event, and a restart resumes after the other tables' writes instead of re-reading them.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from liberator.connectors.mysql_binlog.position import BinlogPosition, Coord, MariaDBGtidPos
from liberator.events import ChangeEvent, Checkpoint
from liberator.offsets.file import FileOffsetStore
from liberator_testbed import MySQLInstance
from tests.integration.test_mysql_binlog_helpers import (  # noqa: F401 - _binlog_db, _mysql8_server: fixtures
    _binlog_db,
    _mysql8_server,
    make_source,
    read_events,
    source_yaml,
)
from tests.support import DaemonThread, app_config, wait_for


def _binlog_end(server: MySQLInstance) -> Coord:
    try:
        row = server.execute("SHOW BINARY LOG STATUS")[0]  # MySQL 8.2+
    except Exception:  # MariaDB and older MySQL only know the old name
        row = server.execute("SHOW MASTER STATUS")[0]
    return Coord(str(row[0]), int(row[1]))


def _stored(offsets: Path) -> BinlogPosition | None:
    stored = FileOffsetStore(offsets, "test").load_all().get("cdc")
    return None if stored is None else BinlogPosition.from_json(stored.position)


def _coord(checkpoint: Checkpoint) -> Coord:
    assert isinstance(checkpoint.position, BinlogPosition)
    return checkpoint.position.coord


def _tables(server: MySQLInstance, db: str, other_db: str) -> None:
    server.execute(f"CREATE TABLE `{db}`.captured (id INT PRIMARY KEY, v INT)")
    server.execute(f"CREATE TABLE `{db}`.noise (id INT AUTO_INCREMENT PRIMARY KEY, v INT)")
    server.execute(f"CREATE TABLE `{other_db}`.noise (id INT AUTO_INCREMENT PRIMARY KEY, v INT)")


def test_other_tables_traffic_moves_the_stored_position_and_a_restart_resumes_after_it(
    binlog_db: tuple[MySQLInstance, str], tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    server, db = binlog_db
    other_db = f"{db[:55]}_o"  # a database the source does not read at all (filtered by schema)
    server.create_database(other_db)
    try:
        _tables(server, db, other_db)
        offsets = tmp_path / "offsets.json"
        source = source_yaml(server, f"[{db}.captured]", db, "    snapshot: never\n")  # heartbeat: 200ms
        config = app_config(tmp_path, kafka_bootstrap, registry_url, source)
        seen_while_writing: set[Coord] = set()

        def write() -> None:  # busy uncaptured tables, in the captured table's database and in another one
            deadline = time.monotonic() + 1.5
            while time.monotonic() < deadline:
                server.execute(f"INSERT INTO `{db}`.noise (v) VALUES (1)")
                server.execute(f"INSERT INTO `{other_db}`.noise (v) VALUES (2)")
                stored = _stored(offsets)
                if stored is not None:
                    seen_while_writing.add(stored.coord)

        with DaemonThread(config) as daemon:
            wait_for(
                lambda: bool(daemon.daemon.runners) and daemon.daemon.runners[0].source.phase == "streaming",
                what="the source to stream",
            )
            start = _binlog_end(server)
            writer = threading.Thread(target=write)
            writer.start()
            writer.join()
            end = _binlog_end(server)
            gtid_end = server.execute("SELECT @@gtid_binlog_pos")[0][0] if server.is_mariadb else None
            # The last writes are handed over at the server's heartbeat once it falls silent.
            wait_for(lambda: (p := _stored(offsets)) is not None and end <= p.coord, timeout=10, what="the stored end")
            status = daemon.status("cdc")
            assert status.events_published == 0, "uncaptured tables must publish nothing"
            assert status.state == "running", status.error
            daemon.stop()
        assert len({c for c in seen_while_writing if start < c}) >= 2, (
            f"the stored position must move while the other tables are busy, not only afterwards: {seen_while_writing}"
        )
        resumed_from = _stored(offsets)
        assert resumed_from is not None and resumed_from.coord == end
        if gtid_end is not None:
            assert resumed_from.gtid == MariaDBGtidPos.parse(gtid_end)

        # A restart reads from the stored position: with heartbeat 0 every transaction end it reads would
        # be a Checkpoint, so re-read uncaptured writes would show up before the new captured row.
        reader, stop = make_source(server, [f"{db}.captured"], snapshot="never", heartbeat=0.0)
        items: list[Any] = []

        def consume() -> None:
            for item in read_events(reader, resumed_from):
                items.append(item)
                if isinstance(item, Checkpoint) and any(isinstance(i, ChangeEvent) for i in items):
                    stop.set()
                    break
            reader.close()

        consumer = threading.Thread(target=consume, daemon=True)
        consumer.start()
        wait_for(lambda: reader.phase == "streaming", what="the restarted source to stream")
        server.execute(f"INSERT INTO `{db}`.captured VALUES (1, 10)")
        consumer.join(15)
        assert not consumer.is_alive(), f"no change from the captured table after the restart: {items}"
        first_change = next(i for i, item in enumerate(items) if isinstance(item, ChangeEvent))
        reread = items[:first_change]
        assert reread == [], f"the restart re-read {len(reread)} transactions before its position: {reread[:2]}"
        event = items[first_change]
        assert event.value["after"] == {"id": 1, "v": 10} and event.value["op"] == "c"
        assert resumed_from.coord < _coord(items[-1])
    finally:
        server.drop_database(other_db)


def test_a_position_pending_when_the_server_falls_silent_comes_with_its_heartbeat(
    binlog_db: tuple[MySQLInstance, str],
) -> None:
    server, db = binlog_db
    server.execute(f"CREATE TABLE `{db}`.captured (id INT PRIMARY KEY, v INT)")
    server.execute(f"CREATE TABLE `{db}`.noise (id INT AUTO_INCREMENT PRIMARY KEY, v INT)")
    source, stop = make_source(server, [f"{db}.captured"], snapshot="never", heartbeat=1.0)
    checkpoints: list[tuple[float, Coord]] = []  # (when it arrived, where it stands)
    changes: list[ChangeEvent] = []

    def consume() -> None:
        for item in read_events(source, None):
            if isinstance(item, Checkpoint):
                checkpoints.append((time.monotonic(), _coord(item)))
            else:
                changes.append(item)
            if stop.is_set():
                break
        source.close()

    consumer = threading.Thread(target=consume, daemon=True)
    consumer.start()
    try:
        wait_for(lambda: source.phase == "streaming", what="the source to stream")
        # Several quick commits to an uncaptured table: whichever of them comes within `heartbeat` of the
        # previous checkpoint is only kept pending, and nothing else happens on the server afterwards.
        for v in range(5):
            server.execute(f"INSERT INTO `{db}`.noise (v) VALUES (%s)", (v,))
        end = _binlog_end(server)
        written = time.monotonic()

        def reached_end() -> bool:
            return any(end <= coord for _, coord in checkpoints)

        wait_for(reached_end, timeout=8, what="a checkpoint at the binlog's end while the server is idle")
        at, last = next((t, coord) for t, coord in checkpoints if end <= coord)
        assert last == end
        assert at - written < 5, "the server heartbeats every second; the pending position must not wait longer"
        assert changes == []
        # With nothing new on the server the position stays put: no further checkpoints, the source alive.
        # Absence over time has no event to wait for: over 1.5 s (heartbeats each second) nothing may come.
        # A slow machine only shortens what is observed; it cannot make this fail falsely.
        time.sleep(1.5)
        assert [coord for _, coord in checkpoints if end < coord] == []
        assert consumer.is_alive()
    finally:
        stop.set()
        consumer.join(10)
    assert not consumer.is_alive(), "stop must end the stream within a heartbeat"
