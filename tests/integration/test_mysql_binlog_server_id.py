"""A binlog reader whose server_id another replica takes over stops with one line saying so (not a raw 4052,
and not a retry that would kick the other one off in turn); `check` names a server_id another daemon holds."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from pymysqlreplication import BinLogStreamReader

from liberator.errors import FatalSourceError
from liberator_testbed import MySQLInstance
from tests.integration.test_mysql_binlog_helpers import make_source, read_events
from tests.support import wait_for


def test_a_replica_taking_over_the_server_id_stops_the_source_with_the_reason(
    mariadb_server: MySQLInstance, mysql_database: str
) -> None:
    db = mysql_database
    mariadb_server.execute(f"CREATE TABLE `{db}`.t (id INT PRIMARY KEY)")
    source, stop = make_source(mariadb_server, [f"{db}.t"])
    items: list[Any] = []
    failure: list[BaseException] = []

    def read() -> None:
        try:
            for item in read_events(source, None):
                items.append(item)
        except BaseException as exc:  # reported below
            failure.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    mariadb_server.execute(f"INSERT INTO `{db}`.t VALUES (1)")
    wait_for(lambda: any(getattr(i, "key", None) == {"id": 1} for i in items), what="the source to stream")
    config = source.config
    other = BinLogStreamReader(
        connection_settings=mariadb_server.connection_settings(),
        server_id=config.server_id,  # type: ignore[attr-defined]
        blocking=True,
        is_mariadb=True,
        auto_position="0-1-1",
    )
    try:
        next(iter(other))  # connected: the server drops the source's stream
        wait_for(lambda: not reader.is_alive(), what="the source to stop")
    finally:
        other.close()
        stop.set()
        source.close()
    assert failure and isinstance(failure[0], FatalSourceError), failure
    message = str(failure[0])
    assert "another replica connected with the same server_id" in message and "4052" not in message


def test_check_names_a_server_id_another_daemon_holds(mariadb_server: MySQLInstance, mysql_database: str) -> None:
    db = mysql_database
    mariadb_server.execute(f"CREATE TABLE `{db}`.t (id INT PRIMARY KEY)")
    first, first_stop = make_source(mariadb_server, [f"{db}.t"])
    items = read_events(first, None)
    next(items)  # reading: it holds its server_id
    try:
        second, _ = make_source(mariadb_server, [f"{db}.t"], server_id=first.config.server_id)  # type: ignore[attr-defined]
        problems = second.check()
        assert any("is in use on this server: another daemon holds it" in p for p in problems), problems
        with pytest.raises(FatalSourceError, match="another daemon holds it"):
            next(read_events(second, None))
        second.close()
    finally:
        first_stop.set()
        first.close()
