"""The stall detector and the acknowledgement watch, on a clock the test moves by hand."""

from __future__ import annotations

import logging

from liberator.metrics import SourceStatus
from liberator.watch import AckWatch, SourceWatch, StallDetector


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_position_that_stays_put_while_events_are_acknowledged_is_a_stall_once() -> None:
    clock = Clock()
    stall = StallDetector(300, clock=clock)
    clock.now += 299
    assert not stall.check(acked=11049)  # not yet long enough
    clock.now += 1
    assert stall.check(acked=11049) and stall.stalled
    assert stall.unchanged_seconds() == 300 and stall.acked_since_move(11049) == 11049
    clock.now += 600
    assert not stall.check(acked=20000), "said once per stall, not on every tick"
    assert stall.stalled
    assert stall.moved(acked=20000) == 900, "moving again ends it and says how long it lasted"
    assert not stall.stalled and stall.unchanged_seconds() == 0


def test_an_idle_source_is_not_stalled() -> None:
    clock = Clock()
    stall = StallDetector(300, acked=5, clock=clock)
    clock.now += 3600
    assert not stall.check(acked=5)  # nothing acknowledged since the position last moved
    assert stall.unchanged_seconds() == 3600
    assert stall.moved(acked=5) is None  # there was no stall to end


def test_acknowledgements_before_the_last_move_do_not_count() -> None:
    clock = Clock()
    stall = StallDetector(60, clock=clock)
    clock.now += 10
    stall.moved(acked=100)
    clock.now += 120
    assert not stall.check(acked=100)
    assert stall.check(acked=101)


def test_zero_turns_the_stall_warning_off() -> None:
    clock = Clock()
    stall = StallDetector(0, clock=clock)
    clock.now += 10**6
    assert not stall.check(acked=10**6) and not stall.stalled


def test_backpressure_begins_when_waiting_events_get_no_acknowledgement_and_ends_with_one() -> None:
    clock = Clock()
    acks = AckWatch(after=5, clock=clock)
    clock.now += 60
    assert acks.check(pending=0) is None  # idle for a minute: nothing waits, nothing wrong
    acks.progress()  # the first event after the quiet spell is published
    clock.now += 4.9
    assert acks.check(pending=1761) is None
    clock.now += 0.1
    assert acks.check(pending=1761) is True
    clock.now += 55
    assert acks.check(pending=1761) is None and acks.seconds() == 60
    acks.progress()  # the broker is back: an acknowledgement
    assert acks.check(pending=1500) is False and acks.seconds() == 0
    clock.now += 1
    assert acks.check(pending=0) is None


def test_steady_acknowledgements_under_load_are_not_backpressure() -> None:
    clock = Clock()
    acks = AckWatch(after=5, clock=clock)
    for _ in range(100):
        clock.now += 1
        acks.progress()
        assert acks.check(pending=20000) is None


def test_a_pause_is_no_stall_and_the_first_acknowledgements_after_it_are_not_one_either() -> None:
    clock = Clock()
    status = SourceStatus("pg", "postgres_wal")
    watch = SourceWatch(status, logging.getLogger("test.watch"), 300)
    watch.stall = StallDetector(300, clock=clock)
    status.paused = True
    status.events_published = status.events_acked = 500  # in flight when it paused, acknowledged since
    clock.now += 3600  # an hour paused: the position stays put by design
    watch.tick(0)
    assert not status.position_stalled
    status.paused = False
    watch.resumed()
    status.events_published = status.events_acked = 510  # reading again; not stored yet
    watch.tick(0)
    assert not status.position_stalled and status.position_unchanged_seconds == 0
    clock.now += 300  # a real stall after the resume is still one
    watch.tick(0)
    assert status.position_stalled
