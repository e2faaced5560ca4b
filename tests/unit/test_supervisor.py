"""The Supervisor that runs every source and sink: transient vs fatal, backoff, and what /health shows."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import pytest

from liberator.errors import FatalSourceError, TransientSourceError
from liberator.metrics import Metrics, SinkStatus
from liberator.supervisor import Backoff, Supervisor


class Work:
    """Attempts that do what a script says, one step per attempt; the pauses are recorded, not waited."""

    def __init__(self, steps: list[Callable[[Supervisor], bool]]) -> None:
        self.steps = steps
        self.pauses: list[float] = []
        self.log: list[str] = []
        self.stop = threading.Event()
        self.status = SinkStatus("replica", "sql")
        self.supervisor = Supervisor(
            self.status,
            logging.getLogger("test.supervisor"),
            self.stop,
            transient=(TransientSourceError,),
            pause=self.pause,
        )

    def pause(self, seconds: float) -> None:
        self.log.append(f"pause {seconds:g} ({self.status.state}: {self.status.error})")
        self.pauses.append(seconds)

    def attempt(self) -> bool:
        self.log.append(f"attempt ({self.status.state})")
        return self.steps.pop(0)(self.supervisor)

    def after(self) -> None:
        self.log.append("released")

    def run(self) -> None:
        self.supervisor.run(self.attempt, after_attempt=self.after)


def lost(_: Supervisor) -> bool:
    raise TransientSourceError("db: connection lost")


def stopped(_: Supervisor) -> bool:
    return False


def test_transient_errors_retry_with_backoff_and_the_reason_shows_until_the_work_goes_on() -> None:
    work = Work([lost, lost, lost, stopped])
    work.run()
    assert work.pauses == [1, 2, 4]
    assert work.log[:4] == [
        "attempt (running)",
        "pause 1 (retrying: db: connection lost)",
        "released",  # after the pause: what an attempt holds is released once the retry begins
        "attempt (retrying)",  # a retry lasts until the work says it goes on, not until the next attempt
    ]
    assert work.status.retries == 3
    assert work.status.state == "stopped"


def test_recovered_clears_the_error_and_the_next_outage_starts_its_backoff_again() -> None:
    def reads_again_then_loses_it(supervisor: Supervisor) -> bool:
        assert supervisor.recovered()
        assert (work.status.state, work.status.error) == ("running", None)
        raise TransientSourceError("db: connection lost again")

    work = Work([lost, lost, reads_again_then_loses_it, stopped])
    work.run()
    assert work.pauses == [1, 2, 1]
    assert work.status.retries == 3
    assert not work.supervisor.recovered(), "nothing to recover from when it is not retrying"


def test_a_fatal_error_fails_at_once_with_its_line_and_an_unexpected_one_says_it_is_a_bug() -> None:
    def refused(_: Supervisor) -> bool:
        raise FatalSourceError("the schema change is incompatible; fix it and restart")

    work = Work([lost, refused])
    work.run()
    assert work.pauses == [1]
    assert work.status.state == "failed"
    assert work.status.error == "the schema change is incompatible; fix it and restart"
    assert work.log[-1] == "released"

    def broken(_: Supervisor) -> bool:
        raise KeyError("op")

    work = Work([broken])
    work.run()
    assert work.status.state == "failed"
    assert work.status.error == "unexpected KeyError: 'op'; this is a bug, please report it with the log"


def test_finished_work_and_a_stop_before_any_attempt() -> None:
    work = Work([lambda _: True])
    work.run()
    assert work.status.state == "finished"

    work = Work([])
    work.stop.set()
    work.run()
    assert work.status.state == "stopped" and work.log == []


def test_health_shows_what_the_supervisor_keeps() -> None:
    metrics = Metrics("app")
    status = metrics.sink("replica", "sql")
    status.state = "running"
    supervisor = Supervisor(status, logging.getLogger("test"), threading.Event(), transient=())
    supervisor.retrying("target: database is locked")
    shown = metrics.health()
    assert shown["status"] == "degraded"
    assert shown["sinks"]["replica"]["state"] == "retrying" and shown["sinks"]["replica"]["retries"] == 1
    assert shown["sinks"]["replica"]["error"] == "target: database is locked"
    supervisor.recovered()
    shown = metrics.health()
    assert shown["status"] == "ok" and shown["sinks"]["replica"]["error"] is None


def test_the_retry_is_said_once_with_its_wait(caplog: pytest.LogCaptureFixture) -> None:
    status = SinkStatus("replica", "sql")
    supervisor = Supervisor(status, logging.getLogger("test.said"), threading.Event(), transient=())
    with caplog.at_level(logging.WARNING, "test.said"):
        supervisor.retrying("cannot store the position: offsets topic unavailable", Backoff(0.5))
    assert caplog.messages == ["cannot store the position: offsets topic unavailable; retrying in 0.5s"]


def test_backoff_doubles_up_to_its_cap() -> None:
    backoff = Backoff()
    assert [backoff.next() for _ in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    backoff.reset()
    assert backoff.next() == 1
