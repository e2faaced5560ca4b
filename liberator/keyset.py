"""Keyset conditions ("after this cursor", "up to this key") in the form each database reads as one index range.

`(c0, c1) > (v0, v1)` is what the condition means. PostgreSQL and SQLite compare row values with an index
on (c0, c1) as a range. MySQL and MariaDB do not: they scan the whole index for it (EXPLAIN: type index, not
range), so a page late in the table reads every row before it. Spelled out as `c0 >= v0 AND (c0 > v0 OR
(c0 = v0 AND c1 > v1))`, the leading `c0 >= v0` is a range on the index and the rest filters its first rows;
databases without row values at all (SQL Server) read that form too. The query source builds it with
SQLAlchemy (`after`, `up_to`), the binlog source's chunks as text (`spelled_text`); both from `spelled`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal, TypeVar

import sqlalchemy as sa

# Dialects whose planners turn a row-value comparison into an index range (checked with EXPLAIN in tests).
_ROW_VALUES = frozenset({"postgresql", "sqlite"})

Comparison = Literal[">", ">=", "<", "<="]
_STRICT = {">": ">", ">=": ">", "<": "<", "<=": "<"}
_LEADING = {">": ">=", ">=": ">=", "<": "<=", "<=": "<="}

T = TypeVar("T")


def row_values(dialect: str) -> bool:
    """Whether `dialect` reads a row-value comparison as an index range."""
    return dialect in _ROW_VALUES


def spelled(
    width: int,
    op: Comparison,
    compare: Callable[[int, str], T],
    both: Callable[[T, T], T],
    either: Callable[[T, T], T],
) -> T:
    """The row comparison `(c0 .. c[width-1]) op (v0 ..)` spelled out column by column, with a leading range.

    `compare(i, o)` makes `c_i o v_i`; `both` and `either` join two conditions by AND and OR."""
    if width == 1:
        return compare(0, op)
    # From the last column outwards: c_i > v_i OR (c_i = v_i AND <the rest>).
    condition = compare(width - 1, op)
    for i in reversed(range(width - 1)):
        condition = either(compare(i, _STRICT[op]), both(compare(i, "="), condition))
    return both(compare(0, _LEADING[op]), condition)


def after(exprs: Sequence[sa.ColumnElement[Any]], values: Sequence[object], dialect: str) -> sa.ColumnElement[bool]:
    """`exprs` (as a row) > `values`, for `dialect`."""
    return _condition(exprs, values, dialect, ">")


def up_to(exprs: Sequence[sa.ColumnElement[Any]], values: Sequence[object], dialect: str) -> sa.ColumnElement[bool]:
    """`exprs` (as a row) <= `values`, for `dialect`: the end of a page whose last row is known."""
    return _condition(exprs, values, dialect, "<=")


_OPERATORS: dict[str, Callable[[Any, Any], sa.ColumnElement[bool]]] = {
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    "=": lambda a, b: a == b,
}


def _condition(
    exprs: Sequence[sa.ColumnElement[Any]], values: Sequence[object], dialect: str, op: Comparison
) -> sa.ColumnElement[bool]:
    if len(exprs) != len(values):
        raise ValueError(f"a keyset of {len(exprs)} columns cannot follow {len(values)} values")
    binds = [sa.literal(v) for v in values]
    if row_values(dialect) or len(exprs) == 1:
        if len(exprs) == 1:
            return _OPERATORS[op](exprs[0], binds[0])
        return _OPERATORS[op](sa.tuple_(*exprs), sa.tuple_(*binds))
    return spelled(len(exprs), op, lambda i, o: _OPERATORS[o](exprs[i], binds[i]), lambda a, b: sa.and_(a, b), sa.or_)


def spelled_text(columns: Sequence[str], op: Comparison) -> tuple[str, list[int]]:
    """`(columns) op (%s, ...)` spelled out for a database without row-value ranges (MySQL, MariaDB), as text
    with `%s` placeholders, and which key value each placeholder takes (by place in the key).

    `columns` are quoted already."""

    def compare(i: int, o: str) -> tuple[str, list[int]]:
        return f"{columns[i]} {o} %s", [i]

    def join(word: str) -> Callable[[tuple[str, list[int]], tuple[str, list[int]]], tuple[str, list[int]]]:
        return lambda a, b: (f"({a[0]} {word} {b[0]})", a[1] + b[1])

    return spelled(len(columns), op, compare, join("AND"), join("OR"))
