from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from liberator.checkpoint import Checkpointer
from liberator.positions import Position


@dataclass(frozen=True)
class Pos(Position):
    n: int

    def to_json(self) -> dict[str, Any]:
        return {"n": self.n}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Pos:
        return cls(int(data["n"]))


def test_slow_delivery_holds_back_later_positions() -> None:
    cp = Checkpointer()
    first = cp.add(Pos(1))
    second = cp.add(Pos(2))
    cp.ack(second)
    assert cp.committable() is None  # the first one is still in flight
    cp.ack(first)
    assert cp.committable() == Pos(2)
    assert cp.in_flight == 0


def test_items_without_position_do_not_move_the_checkpoint() -> None:
    cp = Checkpointer()
    begin = cp.add(None)  # inside a transaction: not resumable
    end = cp.add(Pos(10))
    cp.ack(begin)
    assert cp.committable() is None
    cp.ack(end)
    assert cp.committable() == Pos(10)


def test_checkpoint_markers_wait_for_earlier_deliveries() -> None:
    cp = Checkpointer()
    seq = cp.add(Pos(1))
    cp.add(Pos(2), acked=True)  # a heartbeat
    assert cp.committable() is None
    cp.ack(seq)
    assert cp.committable() == Pos(2)


def test_random_ack_order_never_commits_past_an_unacked_item() -> None:
    rng = random.Random(7)
    cp = Checkpointer()
    seqs = [cp.add(Pos(i)) for i in range(500)]
    order = seqs[:]
    rng.shuffle(order)
    acked: set[int] = set()
    for seq in order:
        cp.ack(seq)
        acked.add(seq)
        prefix = 0
        while prefix in acked:
            prefix += 1
        expected = Pos(prefix - 1) if prefix else None
        assert cp.committable() == expected


def test_failure_is_remembered() -> None:
    cp = Checkpointer()
    seq = cp.add(Pos(1))
    cp.fail(seq, "broker said no")
    assert cp.failure == "broker said no"
    assert cp.committable() is None


def test_on_advance_hears_each_new_committable_position_in_order() -> None:
    heard: list[Any] = []
    cp = Checkpointer(on_advance=heard.append)
    rng = random.Random(3)
    seqs = [cp.add(Pos(i)) for i in range(200)]
    rng.shuffle(seqs)
    for seq in seqs:
        cp.ack(seq)
        cp.ack(seq)  # a repeated acknowledgement moves nothing and is not heard again
    assert heard == sorted(heard, key=lambda p: p.n)
    assert len(heard) == len({p.n for p in heard})
    assert heard[-1] == Pos(199) == cp.committable()
    cp.add(None, acked=True)  # no position: nothing new to hear
    assert heard[-1] == Pos(199) and len(heard) == len({p.n for p in heard})


def test_a_withdrawn_item_holds_nothing_back() -> None:
    """An event whose produce raised was never queued: withdrawing it lets later positions through."""
    cp = Checkpointer()
    cp.ack(cp.add(Pos(1)))
    never_queued = cp.add(Pos(2))
    cp.withdraw(never_queued)
    assert cp.in_flight == 0 and cp.committable() == Pos(1)
    cp.ack(cp.add(Pos(2)))  # read again after the retry, published this time
    assert cp.committable() == Pos(2)


def test_withdrawing_behind_pending_items_advances_past_them_once_acknowledged() -> None:
    cp = Checkpointer()
    pending = cp.add(Pos(1))
    never_queued = cp.add(Pos(2))
    cp.withdraw(never_queued)
    cp.withdraw(never_queued)  # twice is harmless
    assert cp.committable() is None and cp.in_flight == 1
    cp.ack(pending)
    assert cp.committable() == Pos(1) and cp.in_flight == 0
