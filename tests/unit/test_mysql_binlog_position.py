"""Binlog positions: coordinates, MySQL GTID sets, MariaDB GTID positions, snapshot progress, JSON round trips."""

from __future__ import annotations

import datetime as dt
import decimal
import json
from dataclasses import replace

import pytest

from liberator.connectors.mysql_binlog.history import ColumnSpec, SchemaHistory, TableDef
from liberator.connectors.mysql_binlog.position import (
    BinlogPosition,
    Coord,
    MariaDBGtidPos,
    MySQLGtidSet,
    SnapshotRun,
    SnapshotState,
    gtid_from_json,
    gtid_to_json,
)
from liberator.connectors.mysql_binlog.stream import _Skip
from liberator.snapshots import Backfill

U1 = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
U2 = "4f22fb58-71ca-11e1-9e33-c80aa9429562"


# --- coordinates -------------------------------------------------------------------------------------


def test_coordinates_order_by_file_number_then_offset() -> None:
    assert Coord("binlog.999999", 900) < Coord("binlog.1000000", 4)  # numeric, not text, order
    assert Coord("binlog.000002", 4) < Coord("binlog.000002", 5)
    assert Coord("binlog.000002", 5) <= Coord("binlog.000002", 5)
    assert not Coord("binlog.000003", 4) <= Coord("binlog.000002", 99999)
    assert str(Coord("binlog.000002", 120)) == "binlog.000002:120"


@pytest.mark.parametrize("bad", [None, ["binlog.000001"], ["binlog.000001", "4"], [1, 4], {"file": "x"}])
def test_coordinate_json_refuses_anything_but_file_and_offset(bad: object) -> None:
    with pytest.raises(ValueError, match="not a binlog coordinate"):
        Coord.from_json(bad)


# --- MySQL GTID sets ---------------------------------------------------------------------------------


def test_mysql_gtid_set_parses_merges_and_prints_canonically() -> None:
    text = f"{U2.upper()}:1-3,\n{U1}:1-5:7:6:9-10, {U1}:11"
    parsed = MySQLGtidSet.parse(text)
    # UUIDs lower-cased and sorted; 1-5, 6, 7 and 9-10, 11 become 1-7 and 9-11.
    assert str(parsed) == f"{U1}:1-7:9-11,{U2}:1-3"
    assert MySQLGtidSet.parse(str(parsed)) == parsed
    assert str(MySQLGtidSet.parse("")) == "" and MySQLGtidSet.parse(" ") == MySQLGtidSet()


def test_mysql_gtid_set_add_fills_gaps_and_starts_new_sources() -> None:
    state = MySQLGtidSet.parse(f"{U1}:1-5:7")
    assert str(state.add(f"{U1}:6")) == f"{U1}:1-7"
    assert str(state.add(f"{U1}:9")) == f"{U1}:1-5:7:9"
    assert str(state.add(f"{U1}:3")) == f"{U1}:1-5:7"  # already contained: unchanged
    grown = state.add(f"{U2.upper()}:1")
    assert str(grown) == f"{U1}:1-5:7,{U2}:1"
    assert str(MySQLGtidSet().add(f"{U2}:42")) == f"{U2}:42"


def test_mysql_gtid_set_containment_is_per_source_and_per_interval() -> None:
    have = MySQLGtidSet.parse(f"{U1}:1-10,{U2}:1-3")
    assert have.contains(MySQLGtidSet.parse(f"{U1}:1-10"))
    assert have.contains(MySQLGtidSet.parse(f"{U1}:2-4:8,{U2}:3"))
    assert have.contains(MySQLGtidSet())
    assert not have.contains(MySQLGtidSet.parse(f"{U1}:9-11"))  # reaches past the end
    assert not have.contains(MySQLGtidSet.parse(f"{U2}:1-3:5"))
    assert not have.contains(MySQLGtidSet.parse("5a33fc69-71ca-11e1-9e33-c80aa9429562:1"))  # unknown source
    # The purged-binlog check: the stored set must contain everything the server purged.
    assert not MySQLGtidSet.parse(f"{U1}:1-5").contains(MySQLGtidSet.parse(f"{U1}:1-6"))


@pytest.mark.parametrize("bad", [f"{U1}", f"{U1}:x-3", f"{U1}:1-y"])
def test_mysql_gtid_set_refuses_malformed_members(bad: str) -> None:
    with pytest.raises(ValueError):
        MySQLGtidSet.parse(bad)


# --- MariaDB GTID positions --------------------------------------------------------------------------


def test_mariadb_gtid_position_keeps_the_last_gtid_per_domain() -> None:
    state = MariaDBGtidPos.parse("1-2-7, 0-1-42")
    assert str(state) == "0-1-42,1-2-7"
    assert str(state.add("0-1-43")) == "0-1-43,1-2-7"
    assert str(state.add("0-3-44")) == "0-3-44,1-2-7"  # a new server in domain 0 replaces the domain's entry
    assert str(state.add("5-1-1")) == "0-1-42,1-2-7,5-1-1"
    assert MariaDBGtidPos.parse("") == MariaDBGtidPos() and str(MariaDBGtidPos()) == ""
    assert MariaDBGtidPos.parse("0-1-5,0-1-9") == MariaDBGtidPos.parse("0-1-9")  # the last one of a domain wins
    with pytest.raises(ValueError):
        MariaDBGtidPos.parse("0-1")


def test_gtid_states_round_trip_through_json_with_their_flavour() -> None:
    mysql = MySQLGtidSet.parse(f"{U1}:1-5")
    mariadb = MariaDBGtidPos.parse("0-1-42")
    for state in (mysql, mariadb, None):
        assert gtid_from_json(json.loads(json.dumps(gtid_to_json(state)))) == state
    assert gtid_to_json(mariadb) == {"mariadb": "0-1-42"} and gtid_to_json(mysql) == {"mysql": f"{U1}:1-5"}
    for bad in ({"oracle": "1"}, "0-1-42", {"mysql": "a", "mariadb": "b"}):
        with pytest.raises(ValueError, match="not a GTID state"):
            gtid_from_json(bad)


# --- whole positions ---------------------------------------------------------------------------------


def _history() -> SchemaHistory:
    columns = (
        ColumnSpec("id", "int", False, unsigned=True, size=64, db_type="BIGINT UNSIGNED"),
        ColumnSpec("amount", "decimal", True, precision=10, scale=2, db_type="DECIMAL(10,2)"),
        ColumnSpec("state", "enum", True, symbols=("a", "b c"), db_type="ENUM('a','b c')"),
    )
    return SchemaHistory().with_table(TableDef("shop", "orders", columns, ("id",), origin="binlog"))


def test_a_position_with_history_and_snapshot_progress_round_trips_through_json() -> None:
    key = (decimal.Decimal("12.50"), dt.datetime(2024, 1, 2, 3, 4, 5, 6), b"\x00\xff", "text", 18446744073709551615)
    state = SnapshotState(
        ("shop.orders", "shop.lines"),
        (SnapshotRun(0, None, Coord("binlog.000001", 400)), SnapshotRun(1, key, Coord("binlog.000002", 4))),
        1,
        key,
    )
    position = BinlogPosition(Coord("binlog.000002", 4), MariaDBGtidPos.parse("0-1-9"), _history(), state)
    data = json.loads(json.dumps(position.to_json()))
    restored = BinlogPosition.from_json(data)
    assert restored == position
    assert restored.snapshotting and restored.snapshot is not None and restored.snapshot.after == key
    assert restored.schemas.get("shop.orders") == position.schemas.get("shop.orders")
    assert restored.describe() == "binlog.000002:4 (GTID 0-1-9)"
    finished = BinlogPosition(position.coord, None, snapshot=SnapshotState(state.tables, state.runs, 2, None, True))
    assert not BinlogPosition.from_json(json.loads(json.dumps(finished.to_json()))).snapshotting
    assert finished.describe() == "binlog.000002:4"


def test_positions_carry_snapshots_on_demand_and_read_the_older_form() -> None:
    older = {"file": "binlog.000003", "pos": 120, "gtid": {"mariadb": "0-1-9"}, "schemas": [], "snapshot": None}
    plain = BinlogPosition.from_json(older)  # as main stored it, before snapshots on demand
    assert plain.backfills == () and plain.to_json() == older, "a position without backfills is stored as before"
    backfill = Backfill("ab12", "shop.orders", "id > 2", (dt.date(2026, 1, 2), 7), 41)
    position = replace(plain, backfills=(backfill,))
    again = BinlogPosition.from_json(json.loads(json.dumps(position.to_json())))
    assert again == position and again.backfills[0].after == (dt.date(2026, 1, 2), 7)
    assert again.advanced(Coord("binlog.000003", 400), None).backfills == (backfill,), "moving keeps the backfills"


@pytest.mark.parametrize("bad", [{}, {"file": "binlog.000001"}, {"file": 3, "pos": 4}, {"file": "b.1", "pos": "4"}])
def test_a_stored_position_without_file_and_offset_is_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="needs `file`"):
        BinlogPosition.from_json(bad)


def test_history_replaces_a_table_and_forgets_a_dropped_one() -> None:
    history = _history()
    wider = TableDef("shop", "orders", (ColumnSpec("id", "int", False, size=32),), ("id",))
    assert history.with_table(wider).get("shop.orders") == wider
    assert history.without("shop.orders").get("shop.orders") is None
    assert SchemaHistory.from_json(json.loads(json.dumps(history.to_json()))) == history


# --- the resumed snapshot's filter on the stream -----------------------------------------------------


def test_changes_a_later_snapshot_run_already_read_are_skipped_until_the_stream_passes_its_point() -> None:
    first, later = Coord("binlog.000001", 100), Coord("binlog.000001", 900)
    # Run 1 read orders from the start; it crashed after key 50; run 2 went on after 50 at `later`.
    state = SnapshotState(("shop.orders", "shop.lines"), (SnapshotRun(0, None, first), SnapshotRun(0, (50,), later)))
    skip = _Skip(state)
    assert skip.until == later
    before_later = Coord("binlog.000001", 500)
    assert not skip.skip("shop.orders", (10,), before_later)  # read by run 1 only: the stream must show it
    assert skip.skip("shop.orders", (60,), before_later)  # run 2 read it at `later`, with this change in it
    assert skip.skip("shop.lines", (1,), before_later)  # a later table: read by run 2 as well
    assert not skip.skip("shop.orders", (60,), Coord("binlog.000001", 901))  # after run 2's point: new
    assert not skip.skip("other.table", (60,), before_later)
