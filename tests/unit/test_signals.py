"""Debezium-style signal rows -> snapshot requests (liberator.snapshots.signal_requests)."""

from __future__ import annotations

import json

import pytest

from liberator.snapshots import signal_requests


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


@pytest.mark.parametrize(
    ("kind", "data", "reason"),
    [
        ("stop-snapshot", "{}", "type 'stop-snapshot' is not supported"),
        ("execute-snapshot", "not json", "not JSON"),
        ("execute-snapshot", "{}", '"data-collections"'),
        ("execute-snapshot", '{"data-collections": ["t"], "type": "blocking"}', "only incremental"),
    ],
)
def test_what_cannot_be_done_says_why(kind: str, data: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        signal_requests("s9", kind, data)
