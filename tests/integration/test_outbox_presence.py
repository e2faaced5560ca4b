"""Daemons sharing an outbox (skip_locked) see each other: the ordering check runs only when another one claims."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from liberator.connectors.outbox.presence import NEWCOMER_MARGIN, SLOTS, Presence
from tests.support import wait_for


@pytest.fixture(params=["postgresql", "mariadb"])
def engine(request: pytest.FixtureRequest) -> sa.Engine:
    url = request.getfixturevalue("pg_url" if request.param == "postgresql" else "mysql_url")
    return sa.create_engine(url)


def test_a_daemon_alone_sees_nobody_and_two_see_each_other(engine: sa.Engine) -> None:
    # fresh_for=0: every question goes to the server, so each answer is about that moment
    first, second = Presence(engine, "db.outbox", fresh_for=0), Presence(engine, "db.outbox", fresh_for=0)
    elsewhere = Presence(engine, "db.other", fresh_for=0)
    try:
        first.register()
        elsewhere.register()  # another table's daemon is no company
        assert not first.others()
        second.register()
        assert first.others() and second.others()
        second.release()
        assert not first.others()
    finally:
        for presence in (first, second, elsewhere):
            presence.release()
    engine.dispose()


def test_an_unregistered_daemon_assumes_company(engine: sa.Engine) -> None:
    assert Presence(engine, "db.outbox").others()
    engine.dispose()


def test_an_answer_lasts_and_a_newcomer_waits_until_every_earlier_one_has_expired(engine: sa.Engine) -> None:
    fresh_for = 1.0
    first, second = Presence(engine, "db.outbox", fresh_for), Presence(engine, "db.outbox", fresh_for)
    intruder = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    try:
        started = time.monotonic()
        first.register()  # nobody else yet: no wait
        assert not first.others()
        assert time.monotonic() - started < fresh_for
        # A lock taken behind the protocol's back (no newcomer's wait) shows what an answer's lifetime is:
        # the answer from before it stands until it expires, then the server's next one counts it.
        if engine.dialect.name == "postgresql":
            key = first._key
            intruder.execute(sa.text("SELECT pg_advisory_lock_shared(:k, 0)"), {"k": key})
        else:
            intruder.execute(sa.text("SELECT GET_LOCK(:n, 0)"), {"n": first._names[1]})
        assert first._answer is not None
        answered = first._answer[0]
        assert first.others() is False or time.monotonic() - answered >= fresh_for, "the answer did not last"
        wait_for(first.others, timeout=10 * fresh_for, interval=0.05, what="the answer to expire")
        intruder.invalidate()  # the session ends, and its lock with it (a pool would keep both)
        wait_for(lambda: not first.others(), timeout=10 * fresh_for, interval=0.05, what="the intruder to leave")
        # A newcomer that finds company waits past every answer given before it registered.
        assert not first.others()
        asked = time.monotonic()
        second.register()
        assert time.monotonic() - asked >= fresh_for + NEWCOMER_MARGIN
        assert first.others(), "an answer from before the newcomer registered outlived its wait"
    finally:
        intruder.invalidate()
        first.release()
        second.release()
    engine.dispose()


def test_a_lost_lock_session_is_an_error_not_solitude(engine: sa.Engine) -> None:
    # An answer would last a minute: the server's word on the socket that it ended the session comes first.
    presence = Presence(engine, "db.outbox", fresh_for=60)
    presence.register()
    try:
        assert not presence.others()
        assert presence._conn is not None
        with engine.connect() as killer:
            if engine.dialect.name == "postgresql":
                pid = presence._conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
                killer.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid})
            else:
                pid = presence._conn.execute(sa.text("SELECT CONNECTION_ID()")).scalar_one()
                killer.execute(sa.text(f"KILL {int(pid)}"))

        def raises() -> bool:
            try:
                presence.others()
            except sa.exc.DBAPIError:
                return True
            return False

        wait_for(raises, timeout=10, interval=0.02, what="others() to raise for the lost lock session")
    finally:
        presence.release()
    engine.dispose()


def test_mysql_daemons_past_the_slots_assume_company(mysql_url: str) -> None:
    engine = sa.create_engine(mysql_url, poolclass=sa.pool.NullPool)
    crowd = [Presence(engine, "db.outbox", fresh_for=0) for _ in range(SLOTS + 1)]
    try:
        for presence in crowd:
            presence.register()
        late = crowd[-1]
        for presence in crowd[:-1]:
            presence.release()
        assert late.others()  # it holds no slot: it cannot know, so it checks
    finally:
        for presence in crowd:
            presence.release()
    engine.dispose()
