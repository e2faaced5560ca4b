"""The rule for streamed changes a re-snapshot already covers (liberator.resnapshot)."""

from __future__ import annotations

import pytest

from liberator.envelope import Op
from liberator.resnapshot import publish_covered


class Lookup:
    def __init__(self, present: bool) -> None:
        self.present = present
        self.calls = 0

    def __call__(self) -> bool:
        self.calls += 1
        return self.present


@pytest.mark.parametrize("op", [Op.create, Op.update, Op.truncate])
@pytest.mark.parametrize("present", [True, False])
def test_inserts_and_updates_stay_skipped_without_a_lookup(op: Op, present: bool) -> None:
    # The newer read holds them: publishing them after it would put an older version after a newer one.
    lookup = Lookup(present)
    assert not publish_covered(op, lookup)
    assert lookup.calls == 0


def test_a_delete_of_a_key_absent_now_is_published() -> None:
    # The interrupted first read may have published the row; every later change of the key follows.
    lookup = Lookup(present=False)
    assert publish_covered(Op.delete, lookup)
    assert lookup.calls == 1


def test_a_delete_of_a_key_present_now_stays_skipped() -> None:
    # The newer read has the row, or its re-insert after that read is streamed: a delete would hide it.
    lookup = Lookup(present=True)
    assert not publish_covered(Op.delete, lookup)
    assert lookup.calls == 1
