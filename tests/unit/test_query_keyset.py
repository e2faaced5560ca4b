"""The query source's pure parts: cursor values as event times, and the keyset condition per dialect."""

from __future__ import annotations

import datetime as dt
import decimal

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite

from liberator import keyset
from liberator.instants import epoch_ms, epoch_us

UTC_PLUS_2 = dt.timezone(dt.timedelta(hours=2))


@pytest.mark.parametrize(
    ("value", "micros"),
    [
        (dt.datetime(2024, 1, 1, 3, 4, 5, 678901), 1704078245678901),  # naive: read as UTC
        (dt.datetime(2024, 1, 1, 5, 4, 5, 678901, tzinfo=UTC_PLUS_2), 1704078245678901),  # the instant
        (dt.datetime(1960, 1, 1, 0, 0, 0, 500), -315619199999500),
        (dt.date(2024, 1, 2), 1704153600000000),
        ("2024-01-01 03:04:05.678901", 1704078245678901),  # SQLite keeps timestamps as text
        ("not a time", None),
        (42, None),  # a numeric cursor has no time
        (decimal.Decimal("4.5"), None),
    ],
)
def test_cursor_values_as_event_times(value: object, micros: int | None) -> None:
    assert epoch_us(value) == micros
    assert epoch_ms(value) == (None if micros is None else micros // 1000)  # floored, before 1970 too


def _sql(condition: sa.ColumnElement[bool], dialect: sa.Dialect) -> str:
    return str(condition.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))


COLS = [sa.column("updated_at"), sa.column("id"), sa.column("n")]


def test_row_values_where_the_planner_reads_them_as_one_index_range() -> None:
    for dialect in (postgresql.dialect(), sqlite.dialect()):  # type: ignore[no-untyped-call]
        assert _sql(keyset.after(COLS[:2], ["t", 7], dialect.name), dialect) == "(updated_at, id) > ('t', 7)"


def test_spelled_out_with_a_leading_range_where_it_does_not() -> None:
    dialect = mysql.dialect()
    assert _sql(keyset.after(COLS[:2], ["t", 7], "mariadb"), dialect) == (
        "updated_at >= 't' AND (updated_at > 't' OR updated_at = 't' AND id > 7)"
    )
    assert _sql(keyset.after(COLS, ["t", 7, 1], "mysql"), dialect) == (
        "updated_at >= 't' AND (updated_at > 't' OR updated_at = 't' AND (id > 7 OR id = 7 AND n > 1))"
    )
    assert _sql(keyset.after(COLS[:1], [7], "mysql"), dialect) == "updated_at > 7"


@pytest.mark.parametrize("after", [(1, 1), (1, 2), (2, 0), (2, 9), (3, 1)])
def test_both_forms_select_the_same_rows(after: tuple[int, int]) -> None:
    """The spelled-out form means what the row-value comparison means (checked by SQLite on every pair)."""
    engine = sa.create_engine("sqlite://")
    table = sa.table("t", sa.column("a"), sa.column("b"))
    with engine.connect() as conn:
        conn.execute(sa.text("CREATE TABLE t (a INTEGER, b INTEGER)"))
        conn.execute(sa.text("INSERT INTO t VALUES (:a, :b)"), [{"a": a, "b": b} for a in range(4) for b in range(3)])
        exprs = [table.c.a, table.c.b]

        def rows(dialect: str) -> list[tuple[int, int]]:
            query = sa.select(*exprs).where(keyset.after(exprs, list(after), dialect)).order_by(*exprs)
            return [(r[0], r[1]) for r in conn.execute(query)]

        assert (
            rows("mariadb")
            == rows("sqlite")
            == sorted(p for p in [(a, b) for a in range(4) for b in range(3)] if p > after)
        )


def test_up_to_is_spelled_out_with_a_leading_range_too() -> None:
    assert _sql(keyset.up_to(COLS[:2], ["t", 7], "mariadb"), mysql.dialect()) == (
        "updated_at <= 't' AND (updated_at < 't' OR updated_at = 't' AND id <= 7)"
    )
    assert _sql(keyset.up_to(COLS[:2], ["t", 7], "postgresql"), postgresql.dialect()) == "(updated_at, id) <= ('t', 7)"  # type: ignore[no-untyped-call]
    assert _sql(keyset.up_to(COLS[:1], [7], "mysql"), mysql.dialect()) == "updated_at <= 7"


@pytest.mark.parametrize("end", [(0, 0), (1, 1), (1, 2), (2, 0), (3, 2)])
def test_up_to_selects_the_rows_a_row_value_comparison_does(end: tuple[int, int]) -> None:
    """`up_to` is `<=` as row values, in both forms (checked by SQLite on every pair): a page's last row is in it."""
    engine = sa.create_engine("sqlite://")
    table = sa.table("t", sa.column("a"), sa.column("b"))
    pairs = [(a, b) for a in range(4) for b in range(3)]
    with engine.connect() as conn:
        conn.execute(sa.text("CREATE TABLE t (a INTEGER, b INTEGER)"))
        conn.execute(sa.text("INSERT INTO t VALUES (:a, :b)"), [{"a": a, "b": b} for a, b in pairs])
        exprs = [table.c.a, table.c.b]

        def rows(dialect: str) -> list[tuple[int, int]]:
            query = sa.select(*exprs).where(keyset.up_to(exprs, list(end), dialect)).order_by(*exprs)
            return [(r[0], r[1]) for r in conn.execute(query)]

        assert rows("mariadb") == rows("sqlite") == [p for p in pairs if p <= end]


def test_the_spelled_out_text_form_and_the_key_value_each_placeholder_takes() -> None:
    """The binlog source's chunk conditions (text with PyMySQL's %s): the same expansion as `after`."""
    assert keyset.spelled_text(["`a`"], ">") == ("`a` > %s", [0])
    assert keyset.spelled_text(["`a`", "`b`"], ">") == (
        "(`a` >= %s AND (`a` > %s OR (`a` = %s AND `b` > %s)))",
        [0, 0, 0, 1],
    )
    assert keyset.spelled_text(["`a`", "`b`", "`c`"], "<=") == (
        "(`a` <= %s AND (`a` < %s OR (`a` = %s AND (`b` < %s OR (`b` = %s AND `c` <= %s)))))",
        [0, 0, 0, 1, 1, 2],
    )


@pytest.mark.parametrize("op", [">", ">=", "<", "<="])
def test_the_spelled_out_text_selects_what_the_row_comparison_does(op: keyset.Comparison) -> None:
    """Every comparison on every pair of a 3-column key, by SQLite (which reads row values too)."""
    engine = sa.create_engine("sqlite://")
    points = [(a, b, c) for a in range(3) for b in range(3) for c in range(3)]
    with engine.connect() as conn:
        conn.execute(sa.text("CREATE TABLE t (a INTEGER, b INTEGER, c INTEGER)"))
        conn.execute(sa.text("INSERT INTO t VALUES (:a, :b, :c)"), [dict(zip("abc", p, strict=True)) for p in points])
        condition, order = keyset.spelled_text(["a", "b", "c"], op)
        raw = conn.connection.driver_connection
        assert raw is not None
        for bound in points:
            spelled = raw.execute(
                f"SELECT a, b, c FROM t WHERE {condition.replace('%s', '?')} ORDER BY a, b, c",
                [bound[i] for i in order],
            )
            rows = raw.execute(f"SELECT a, b, c FROM t WHERE (a, b, c) {op} (?, ?, ?) ORDER BY a, b, c", bound)
            assert spelled.fetchall() == rows.fetchall(), (op, bound)
