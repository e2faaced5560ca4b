"""The tests' shared wait: "does not exist yet" is "not yet", any other error fails at once."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
import pymysql  # type: ignore[import-untyped]
import pytest
import sqlalchemy as sa
from confluent_kafka import KafkaError, KafkaException

from tests.support import NotYet, not_there_yet, wait_for


def _sqlite_error(tmp_path: Path, statement: str) -> Exception:
    engine = sa.create_engine(f"sqlite:///{tmp_path}/t.db")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(statement))
    except sa.exc.DBAPIError as exc:
        return exc
    finally:
        engine.dispose()
    raise AssertionError("the statement did not fail")


def test_missing_tables_topics_files_and_listeners_are_not_there_yet(tmp_path: Path) -> None:
    missing = [
        _sqlite_error(tmp_path, "SELECT count(*) FROM sink_orders"),
        psycopg.errors.UndefinedTable('relation "sink_orders" does not exist'),
        pymysql.err.ProgrammingError(1146, "Table 'shop.sink_orders' doesn't exist"),
        KafkaException(KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART)),
        KafkaException(KafkaError(KafkaError.GROUP_ID_NOT_FOUND)),
        FileNotFoundError(2, "No such file or directory", str(tmp_path / "offsets.json")),
        ConnectionRefusedError(111, "Connection refused"),
        NotYet("source cdc has no runner yet"),
    ]
    assert [e for e in missing if not not_there_yet(e)] == []


def test_real_errors_are_not_mistaken_for_not_yet(tmp_path: Path) -> None:
    real = [
        _sqlite_error(tmp_path, "SELEC 1"),
        psycopg.errors.UndefinedColumn('column "qty" does not exist'),
        pymysql.err.OperationalError(1045, "Access denied for user 'cdc'"),
        KafkaException(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED)),
        KeyError("legacy"),
        PermissionError(13, "Permission denied"),
    ]
    assert [e for e in real if not_there_yet(e)] == []


def test_a_condition_that_raises_not_yet_is_retried_until_it_holds(tmp_path: Path) -> None:
    marker = tmp_path / "later.txt"
    calls = 0

    def appears_on_the_third_look() -> str:
        nonlocal calls
        calls += 1
        if calls == 3:
            marker.write_text("here")
        return marker.read_text()

    assert wait_for(appears_on_the_third_look, timeout=10, interval=0.01) == "here"
    assert calls == 3


def test_a_real_error_fails_the_wait_at_once() -> None:
    started = time.monotonic()
    with pytest.raises(ZeroDivisionError):
        wait_for(lambda: 1 / 0, timeout=30)
    assert time.monotonic() - started < 1


def test_the_timeout_names_what_and_the_last_not_yet_error(tmp_path: Path) -> None:
    def never() -> str:
        return (tmp_path / "never.json").read_text()

    with pytest.raises(AssertionError, match=r"timed out after 0.3s waiting for the offsets file.*FileNotFoundError"):
        wait_for(never, timeout=0.3, interval=0.05, what="the offsets file")


def test_a_false_condition_times_out_without_an_error_to_report() -> None:
    with pytest.raises(AssertionError) as caught:
        wait_for(lambda: False, timeout=0.2, interval=0.05, what="nothing")
    assert str(caught.value) == "timed out after 0.2s waiting for nothing"


def test_an_error_from_an_earlier_look_is_not_reported_as_the_reason(tmp_path: Path) -> None:
    marker = tmp_path / "state.txt"

    def exists_but_not_ready() -> bool:
        if marker.exists():
            return marker.read_text() == "ready"
        marker.write_text("starting")
        raise FileNotFoundError(2, "No such file or directory", str(marker))

    with pytest.raises(AssertionError) as caught:
        wait_for(exists_but_not_ready, timeout=0.3, interval=0.05, what="the state to be ready")
    assert str(caught.value) == "timed out after 0.3s waiting for the state to be ready"
