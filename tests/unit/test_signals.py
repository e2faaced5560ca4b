"""Debezium-style signal rows -> snapshot requests (liberator.snapshots.signal_requests)."""

from __future__ import annotations

import json
import logging

import pytest

from liberator.snapshots import Backfill, SnapshotDesk, SnapshotRequest, signal_requests


def test_execute_snapshot_with_and_without_conditions() -> None:
    data = {
        "data-collections": ["public.a", "public.b", "public.c"],
        "type": "incremental",
        "additional-conditions": [{"data-collection": "public.b", "filter": "id > 10"}],
    }
    requests = signal_requests("s1", "execute-snapshot", json.dumps(data))
    assert [(r.id, r.tables, r.where) for r in requests] == [
        ("s1", ("public.a", "public.c"), None),
        ("s1-0", ("public.b",), "id > 10"),
    ]


def test_a_blocking_signal_asks_for_a_blocking_snapshot() -> None:
    data = {"data-collections": ["public.a"], "type": "BLOCKING"}
    (request,) = signal_requests("s2", "execute-snapshot", json.dumps(data))
    assert (request.id, request.tables, request.blocking) == ("s2", ("public.a",), True)
    (plain,) = signal_requests("s3", "execute-snapshot", json.dumps({"data-collections": ["public.a"]}))
    assert not plain.blocking


def test_a_blocking_backfill_round_trips_and_older_positions_read_as_incremental() -> None:
    blocking = Backfill("b1", "public.a", blocking=True)
    assert Backfill.from_json(blocking.to_json()) == blocking
    assert "blocking" not in Backfill("i1", "public.a").to_json()  # the stored format of main, unchanged
    assert not Backfill.from_json({"id": "i1", "stream": "public.a", "where": None, "after": None}).blocking


@pytest.mark.parametrize(
    ("kind", "data", "reason"),
    [
        ("stop-snapshot", "{}", "type 'stop-snapshot' is not supported"),
        ("execute-snapshot", "not json", "not JSON"),
        ("execute-snapshot", "{}", '"data-collections"'),
        ("execute-snapshot", '{"data-collections": ["t"], "type": "parallel"}', "not incremental or blocking"),
    ],
)
def test_what_cannot_be_done_says_why(kind: str, data: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        signal_requests("s9", kind, data)


def test_a_source_without_blocking_snapshots_refuses_a_blocking_request() -> None:
    desk = SnapshotDesk()
    desk.submit(SnapshotRequest(("public.a",), id="b1", blocking=True))
    desk.submit(SnapshotRequest(("public.a",), id="i1"))
    log = logging.getLogger("test")

    def accept(request: SnapshotRequest) -> tuple[list[Backfill], str | None]:
        return [Backfill(request.id, "public.a", blocking=request.blocking)], None

    backfills, changed = desk.intake((), accept, {"public.a"}, log)
    assert changed and [b.id for b in backfills] == ["i1"]
    assert "does not take blocking snapshots" in desk.status()["refused"]["b1"]
    desk.submit(SnapshotRequest(("public.a",), id="b2", blocking=True))
    backfills, _ = desk.intake(backfills, accept, {"public.a"}, log, blocking=True)
    assert [(b.id, b.blocking) for b in backfills] == [("i1", False), ("b2", True)]
