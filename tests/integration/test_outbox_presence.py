"""Daemons sharing an outbox (skip_locked) see each other: the ordering check runs only when another one claims."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from liberator.connectors.outbox.presence import SLOTS, Presence


@pytest.fixture(params=["postgresql", "mariadb"])
def engine(request: pytest.FixtureRequest) -> sa.Engine:
    url = request.getfixturevalue("pg_url" if request.param == "postgresql" else "mysql_url")
    return sa.create_engine(url)


def test_a_daemon_alone_sees_nobody_and_two_see_each_other(engine: sa.Engine) -> None:
    first, second = Presence(engine, "db.outbox"), Presence(engine, "db.outbox")
    elsewhere = Presence(engine, "db.other")
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


def test_a_lost_lock_session_is_an_error_not_solitude(engine: sa.Engine) -> None:
    presence = Presence(engine, "db.outbox")
    presence.register()
    try:
        assert presence._conn is not None
        with engine.connect() as killer:
            if engine.dialect.name == "postgresql":
                pid = presence._conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
                killer.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid})
            else:
                pid = presence._conn.execute(sa.text("SELECT CONNECTION_ID()")).scalar_one()
                killer.execute(sa.text(f"KILL {int(pid)}"))
        with pytest.raises(sa.exc.DBAPIError):
            presence.others()
    finally:
        presence.release()
    engine.dispose()


def test_mysql_daemons_past_the_slots_assume_company(mysql_url: str) -> None:
    engine = sa.create_engine(mysql_url, poolclass=sa.pool.NullPool)
    crowd = [Presence(engine, "db.outbox") for _ in range(SLOTS + 1)]
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
