"""The binlog source against a real MariaDB 10.11, driven in-process (read() generators, no broker)."""

from __future__ import annotations

import datetime as dt
import decimal
from typing import Any

import pytest

from liberator.connectors.mysql_binlog.position import BinlogPosition
from liberator.errors import FatalSourceError, LiberatorError
from liberator.events import ChangeEvent, Checkpoint
from liberator_testbed import MariaDBServer, MySQLInstance
from tests.integration.test_mysql_binlog_helpers import (  # noqa: F401 - _binlog_db, _mysql8_server: fixtures
    _binlog_db,
    _mysql8_server,
    changes,
    checkpoints,
    collect,
    make_source,
    numbers,
    read_events,
)
from tests.support import wait_for


def value_of(event: ChangeEvent) -> dict[str, Any]:
    assert isinstance(event.value, dict)
    return event.value


def after_images(events: list[ChangeEvent]) -> list[tuple[Any, Any]]:
    return [(e.key, value_of(e)["after"]) for e in events if isinstance(e.value, dict)]


def test_snapshot_resumed_mid_way_with_concurrent_writes_keeps_per_key_order(
    binlog_db: tuple[MySQLInstance, str],
) -> None:
    server, db = binlog_db
    server.execute(f"CREATE TABLE `{db}`.t (id INT PRIMARY KEY, version INT NOT NULL)")
    server.execute(f"INSERT INTO t SELECT i, 0 FROM ({numbers(300)}) AS s", database=db)

    def bump(ids: range) -> None:
        for i in ids:  # one transaction each, as an application would
            server.execute(f"UPDATE `{db}`.t SET version = version + 1 WHERE id = %s", (i,))

    source, _stop = make_source(server, [f"{db}.*"], snapshot_chunk=10)
    first: list[Any] = []
    for item in read_events(source, None):
        first.append(item)
        if len(first) == 50:
            bump(range(1, 300, 3))  # after the snapshot point: only the stream may show these
        if len(first) == 120:
            break
    source.close()
    # The crash: only what the last checkpoint among the first 100 items covers was acknowledged.
    acknowledged = max(i for i, item in enumerate(first[:100]) if isinstance(item, Checkpoint))
    stored = first[acknowledged].position
    assert isinstance(stored, BinlogPosition) and stored.snapshotting
    assert len(changes(first[:acknowledged])) >= 80
    bump(range(2, 300, 5))  # between the two runs
    server.execute(f"INSERT INTO `{db}`.t VALUES (301, 7)")

    source2, stop2 = make_source(server, [f"{db}.*"], snapshot_chunk=10)
    final = dict(server.execute(f"SELECT id, version FROM `{db}`.t"))
    seen: dict[int, int] = {}
    published = changes(first[:acknowledged])
    seen.update((key["id"], after["version"]) for key, after in after_images(published))

    def caught_up(out: list[Any]) -> bool:
        for event in changes(out[-1:]):
            if isinstance(event.value, dict) and value_of(event)["after"] is not None:
                seen[event.key["id"]] = value_of(event)["after"]["version"]
        return len(seen) >= len(final) and all(seen.get(k) == v for k, v in final.items())

    second = collect(read_events(source2, stored), stop2, caught_up, limit=2000)
    missing = {k: (v, seen.get(k)) for k, v in final.items() if seen.get(k) != v}
    assert not missing, list(missing.items())[:5]
    source2.close()
    published += changes(second)
    latest: dict[int, int] = {}
    for key, after in after_images(published):
        assert after["version"] >= latest.get(key["id"], -1), f"key {key} went back in time"
        latest[key["id"]] = after["version"]
    assert latest == final
    positions = [c.position for c in checkpoints(second) if isinstance(c.position, BinlogPosition)]
    runs = [p.snapshot for p in positions if p.snapshot is not None]
    assert runs and len(runs[0].runs) == 2  # the resumed snapshot is a second run at a newer point


@pytest.mark.parametrize("resume", ["gtid", "file"])
def test_resume_by_gtid_and_by_file_position(binlog_db: tuple[MySQLInstance, str], resume: str) -> None:
    server, db = binlog_db
    server.execute(f"CREATE TABLE `{db}`.t (id INT PRIMARY KEY, name VARCHAR(10))")
    source, stop = make_source(server, [f"{db}.t"], resume=resume)
    items = read_events(source, None)
    next(items)  # the stream's start point, stored before the snapshot reads anything
    next(items)  # the (empty) snapshot's end: the stream starts here
    for i in range(1, 6):
        server.execute(f"INSERT INTO `{db}`.t VALUES (%s, %s)", (i, f"n{i}"))
    got = collect(items, stop, lambda out: len(changes(out)) >= 5)
    source.close()
    # Positions only at transaction ends: every change carries None, a Checkpoint follows each commit.
    assert all(e.position is None for e in changes(got))
    third = got.index(changes(got)[2])
    stored = next(c.position for c in checkpoints(got[third:]))
    assert isinstance(stored, BinlogPosition) and (stored.gtid is not None)
    restored = BinlogPosition.from_json(stored.to_json())
    assert restored == stored

    source2, stop2 = make_source(server, [f"{db}.t"], snapshot="never", resume=resume)
    items2 = read_events(source2, restored)
    server.execute(f"INSERT INTO `{db}`.t VALUES (6, 'n6')")
    again = collect(items2, stop2, lambda out: len(changes(out)) >= 3)
    source2.close()
    assert [e.key["id"] for e in changes(again)] == [4, 5, 6]
    assert [value_of(e)["transaction"]["order"] for e in changes(again)] == [1, 1, 1]


TYPES_DDL = """CREATE TABLE `{db}`.t (
  id BIGINT UNSIGNED PRIMARY KEY, d65 DECIMAL(65,30), dt DATETIME(6), ts TIMESTAMP(6) NULL, da DATE, tm TIME(3),
  y YEAR, j JSON, e ENUM('a','b c'), st SET('x','y'), b BIT(10), bi BINARY(4), vb VARBINARY(10), bl BLOB,
  tx TEXT, g GEOMETRY, p POINT, u UUID, c CHAR(3) NOT NULL, f FLOAT, dd DOUBLE, ti TINYINT, mi MEDIUMINT UNSIGNED)"""
EXTREMES = (
    "%s, -12345678901234567890123456789012345.123456789012345678901234567891, '9999-12-31 23:59:59.999999', "
    "'2038-01-19 03:14:07.999999', '1000-01-01', '23:59:59.999', 2155, '{\"a\": [1, 2.5, \"x\"]}', 'b c', "
    "'x,y', b'1000000001', 'ab', 'xyz', x'00ff', 'héllo', ST_GeomFromText('POINT(1 2)', 4326), POINT(3,4), "
    "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'z', 1.5, 2.25, -128, 16777215"
)


def _type_rows(server: MySQLInstance, db: str, base: int) -> None:
    server.execute(f"INSERT INTO `{db}`.t VALUES ({EXTREMES})", (base + 18446744073709551000,))
    server.execute(f"INSERT INTO `{db}`.t (id, c) VALUES (%s, '')", (base + 1,))  # NULL everywhere
    conn = server.connect(database=db)
    with conn.cursor() as cur:  # zero dates need a permissive session
        cur.execute("SET SESSION sql_mode = ''")
        cur.execute("INSERT INTO t (id, dt, ts, da, y, c, st) VALUES (%s, 0, 0, 0, 0, 'q', '')", (base + 2,))
    conn.close()


def test_every_column_type_with_nulls_and_extremes(mariadb_server: MySQLInstance, mysql_database: str) -> None:
    db = mysql_database
    mariadb_server.execute(TYPES_DDL.format(db=db))
    _type_rows(mariadb_server, db, 0)  # read by the snapshot
    source, stop = make_source(mariadb_server, [f"{db}.t"])
    items = read_events(source, None)
    got = [next(items) for _ in range(5)]  # 3 snapshot rows, their chunk's checkpoint, the done checkpoint
    _type_rows(mariadb_server, db, 10)  # the same values again, through the binlog
    got += collect(items, stop, lambda out: len(changes(out)) >= 3)
    source.close()
    events = changes(got)
    snap = {e.key["id"] % 10: value_of(e)["after"] for e in events if value_of(e)["op"] == "r"}
    streamed = {e.key["id"] % 10: value_of(e)["after"] for e in events if value_of(e)["op"] == "c"}
    for row in (snap, streamed):
        for image in row.values():
            image.pop("id")
    assert snap == streamed  # snapshot and binlog give the same datum for the same row
    full = snap[18446744073709551000 % 10]
    assert full["d65"] == decimal.Decimal("-12345678901234567890123456789012345.123456789012345678901234567891")
    assert full["dt"] == dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC)
    assert full["ts"] == dt.datetime(2038, 1, 19, 3, 14, 7, 999999, tzinfo=dt.UTC)
    assert full["da"] == dt.date(1000, 1, 1) and full["y"] == 2155
    assert full["tm"] == (23 * 3600 + 59 * 60 + 59) * 1_000_000 + 999_000
    assert full["j"] == '{"a": [1, 2.5, "x"]}' and full["e"] == "b c" and full["st"] == ["x", "y"]
    assert full["b"] == "1000000001" and full["bi"] == b"ab\0\0" and full["vb"] == b"xyz" and full["bl"] == b"\0\xff"
    assert full["g"] == bytes.fromhex("0101000000000000000000f03f0000000000000040")  # WKB without the SRID
    assert full["u"] == "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11" and full["mi"] == 16777215 and full["ti"] == -128
    assert all(v is None for k, v in snap[1].items() if k != "c")
    zero = snap[2]
    assert (zero["dt"], zero["ts"], zero["da"], zero["y"], zero["st"]) == (None, None, None, 0, [])
    ids = sorted(e.key["id"] for e in events)
    assert ids[-1] == decimal.Decimal(18446744073709551010)  # unsigned BIGINT max region, exact


def test_excluded_columns_are_in_no_event_of_the_snapshot_or_the_stream(
    mariadb_server: MySQLInstance, mysql_database: str
) -> None:
    db = mysql_database
    mariadb_server.execute(f"CREATE TABLE `{db}`.u (id INT PRIMARY KEY, secret VARCHAR(20), name VARCHAR(10))")
    mariadb_server.execute(f"INSERT INTO `{db}`.u VALUES (1, 's1', 'a')")
    source, stop = make_source(mariadb_server, [f"{db}.u"], exclude={f"{db}.u": ["secret"]})
    try:
        items = read_events(source, None)
        got = []
        while not got or not isinstance(got[-1], Checkpoint) or got[-1].position.snapshotting:
            got.append(next(items))  # until the snapshot's done checkpoint
        mariadb_server.execute(f"INSERT INTO `{db}`.u VALUES (2, 's2', 'b')")
        mariadb_server.execute(f"UPDATE `{db}`.u SET secret = 's3', name = 'c' WHERE id = 2")
        mariadb_server.execute(f"DELETE FROM `{db}`.u WHERE id = 1")
        got += collect(items, stop, lambda out: len([e for e in changes(out) if e.value is not None]) >= 3)
    finally:
        source.close()
    events = [e for e in changes(got) if e.value is not None]  # tombstones have no value
    assert [(value_of(e)["op"], e.key["id"]) for e in events] == [("r", 1), ("c", 2), ("u", 2), ("d", 1)]
    images = [value_of(e)[side] for e in events for side in ("before", "after") if value_of(e)[side] is not None]
    assert images == [
        {"id": 1, "name": "a"},
        {"id": 2, "name": "b"},
        {"id": 2, "name": "b"},
        {"id": 2, "name": "c"},
        {"id": 1, "name": "a"},
    ]
    assert "secret" not in str(events[0].stream.value_schema)


@pytest.mark.parametrize(
    ("excluded", "message"), [(["id"], "key columns cannot be excluded"), (["nope"], "unknown columns")]
)
def test_a_wrong_exclude_stops_the_source_in_one_line(
    mariadb_server: MySQLInstance, mysql_database: str, excluded: list[str], message: str
) -> None:
    db = mysql_database
    mariadb_server.execute(f"CREATE TABLE `{db}`.u (id INT PRIMARY KEY, secret VARCHAR(20))")
    source, _stop = make_source(mariadb_server, [f"{db}.u"], exclude={f"{db}.u": excluded})
    try:
        assert any(message in p for p in source.check()), source.check()
        with pytest.raises(LiberatorError, match=message) as caught:
            list(read_events(source, None))
    finally:
        source.close()
    assert "\n" not in str(caught.value)


def test_time_is_a_signed_duration_in_snapshot_and_stream(mariadb_server: MySQLInstance, mysql_database: str) -> None:
    # TIME is -838:59:59 .. 838:59:59, not a time of day: signed microseconds (docs/types.md)
    db = mysql_database
    mariadb_server.execute(f"CREATE TABLE `{db}`.t (id INT PRIMARY KEY, tm TIME(6))")
    mariadb_server.execute(f"INSERT INTO `{db}`.t VALUES (1, '-838:59:59')")
    source, stop = make_source(mariadb_server, [f"{db}.t"])
    items = read_events(source, None)
    snapshot = [next(i for i in items if isinstance(i, ChangeEvent))]  # row 1, read by the snapshot
    mariadb_server.execute(f"INSERT INTO `{db}`.t VALUES (2, '-00:00:00.000001'), (3, '838:59:59')")
    got = snapshot + collect(items, stop, lambda out: len(changes(out)) >= 2)
    source.close()
    assert [value_of(e)["after"]["tm"] for e in changes(got)] == [-3_020_399_000_000, -1, 3_020_399_000_000]


def test_ddl_mid_stream_and_a_restart_before_it_decode_old_events(binlog_db: tuple[MySQLInstance, str]) -> None:
    server, db = binlog_db
    server.execute(f"CREATE TABLE `{db}`.t (id INT PRIMARY KEY, v VARCHAR(10))")
    source, stop = make_source(server, [f"{db}.t"])
    items = read_events(source, None)
    next(items)  # the stream's start point, stored before the snapshot reads anything
    next(items)  # the (empty) snapshot's end: the stream starts here
    server.execute(f"INSERT INTO `{db}`.t VALUES (1, 'a')")
    server.execute(f"ALTER TABLE `{db}`.t ADD COLUMN z INT")
    server.execute(f"INSERT INTO `{db}`.t VALUES (2, 'b', 5)")
    server.execute(f"ALTER TABLE `{db}`.t DROP COLUMN v")
    server.execute(f"INSERT INTO `{db}`.t VALUES (3, 6)")
    got = collect(items, stop, lambda out: len(changes(out)) >= 3)
    source.close()
    events = changes(got)
    assert [sorted(value_of(e)["after"]) for e in events] == [["id", "v"], ["id", "v", "z"], ["id", "z"]]
    assert len({id(e.stream) for e in events}) == 3  # a new stream (schema) per shape
    before_ddl = checkpoints(got)[0].position
    assert isinstance(before_ddl, BinlogPosition)
    # Restart before the first ALTER: information_schema already shows the final shape, the history does not.
    source2, stop2 = make_source(server, [f"{db}.t"], snapshot="never")
    again = changes(
        collect(
            read_events(source2, BinlogPosition.from_json(before_ddl.to_json())),
            stop2,
            lambda out: len(changes(out)) >= 2,
        )
    )
    source2.close()
    assert [value_of(e)["after"] for e in again] == [
        {"id": 2, "v": "b", "z": 5},
        {"id": 3, "z": 6},
    ]


def test_wrong_server_settings_privileges_and_purged_binlog(tmp_path: Any) -> None:
    with MariaDBServer() as server:  # private: settings are changed and binlogs purged
        server.create_database("shop")
        server.execute("CREATE TABLE shop.t (id INT PRIMARY KEY)")
        server.execute("SET GLOBAL binlog_format = 'MIXED'")
        server.execute("SET GLOBAL binlog_row_metadata = 'NO_LOG'")
        source, _ = make_source(server, ["shop.t"])
        problems = source.check()
        assert any("binlog_format is MIXED" in p and "binlog_format=ROW" in p for p in problems)
        assert any("binlog_row_metadata is NO_LOG" in p for p in problems)
        with pytest.raises(FatalSourceError, match="binlog_format"):
            next(read_events(source, None))
        source.close()
        server.execute("SET GLOBAL binlog_format = 'ROW'")
        server.execute("SET GLOBAL binlog_row_metadata = 'FULL'")

        server.create_user("reader", "pw", grants=("SELECT",))
        weak, _ = make_source(server, ["shop.t"])
        weak.cfg = weak.cfg.model_copy(update={"url": server.url(user="reader", password="pw", driver=None)})  # type: ignore[attr-defined]
        assert any("REPLICATION SLAVE" in p and "GRANT" in p for p in weak.check())

        source, stop = make_source(server, ["shop.t"])
        items = read_events(source, None)
        next(items)
        server.execute("INSERT INTO shop.t VALUES (1)")
        stored = checkpoints(collect(items, stop, lambda out: len(checkpoints(out)) >= 1))[0].position
        source.close()
        server.execute("FLUSH BINARY LOGS")
        newest = server.execute("SHOW BINARY LOGS")[-1][0]

        def purged() -> bool:  # a dump thread still closing keeps its file: MariaDB then skips it quietly
            server.execute(f"PURGE BINARY LOGS TO '{newest}'")
            return bool(server.execute("SHOW BINARY LOGS")[0][0] == newest)

        wait_for(purged, timeout=20, what="the old binlog to be purged")
        again, _ = make_source(server, ["shop.t"], snapshot="never")
        with pytest.raises(FatalSourceError, match="purged") as caught:
            next(read_events(again, stored))
        again.close()
        assert "liberator offsets reset" in str(caught.value) and "\n" not in str(caught.value)
