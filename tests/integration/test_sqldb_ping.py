"""Pooled connections pinged only after sitting idle (`sqldb.create_engine(ping_after_idle=...)`), against real
PostgreSQL and MariaDB: no round trip for a connection used moments ago, a dead idle one replaced unseen."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from liberator import sqldb
from tests.support import wait_for

IDLE = 0.2


@pytest.fixture(params=["postgresql", "mariadb"])
def url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("pg_url" if request.param == "postgresql" else "mysql_url"))


@pytest.fixture
def engine(url: str) -> Iterator[sa.Engine]:
    engine = sqldb.create_engine(url, ping_after_idle=IDLE, pool_size=1)
    yield engine
    engine.dispose()


class _Pings:
    """Counts the dialect's pings (the real ones still run)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.count = 0
        ping = engine.dialect.do_ping

        def counted(dbapi_connection: Any) -> bool:
            self.count += 1
            return ping(dbapi_connection)

        engine.dialect.do_ping = counted  # type: ignore[method-assign]


def _session_id(conn: sa.Connection) -> int:
    pid = "SELECT pg_backend_pid()" if conn.dialect.name == "postgresql" else "SELECT CONNECTION_ID()"
    return int(conn.execute(sa.text(pid)).scalar_one())


def test_a_connection_used_moments_ago_is_not_pinged(engine: sa.Engine) -> None:
    pings = _Pings(engine)
    for _ in range(20):
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1")).scalar_one()
    assert pings.count == 0


def test_an_idle_connection_the_server_dropped_is_replaced_at_checkout(engine: sa.Engine, url: str) -> None:
    pings = _Pings(engine)
    with engine.connect() as conn:
        victim = _session_id(conn)
    returned = time.monotonic()
    killer = sa.create_engine(url)
    try:
        with killer.connect() as other:
            if other.dialect.name == "postgresql":
                other.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": victim})
                alive = "SELECT count(*) FROM pg_stat_activity WHERE pid = :p"
            else:
                other.execute(sa.text(f"KILL {victim}"))
                alive = "SELECT count(*) FROM information_schema.processlist WHERE id = :p"
            wait_for(lambda: other.execute(sa.text(alive), {"p": victim}).scalar_one() == 0, what="the session gone")
    finally:
        killer.dispose()
    time.sleep(max(0.0, IDLE - (time.monotonic() - returned)))  # the connection has now sat idle IDLE seconds
    with engine.connect() as conn:
        assert _session_id(conn) != victim, "a fresh connection replaced the dead one"
    assert pings.count == 1
