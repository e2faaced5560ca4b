"""The keyset condition "after this cursor" in the form each database reads as one index range.

`(c0, c1) > (v0, v1)` is what the condition means. PostgreSQL and SQLite compare row values with an index
on (c0, c1) as a range. MySQL and MariaDB do not: they scan the whole index for it (EXPLAIN: type index, not
range), so a page late in the table reads every row before it. Spelled out as `c0 >= v0 AND (c0 > v0 OR
(c0 = v0 AND c1 > v1))`, the leading `c0 >= v0` is a range on the index and the rest filters its first rows;
databases without row values at all (SQL Server) read that form too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

# Dialects whose planners turn a row-value comparison into an index range (checked with EXPLAIN in tests).
_ROW_VALUES = frozenset({"postgresql", "sqlite"})


def after(exprs: Sequence[sa.ColumnElement[Any]], values: Sequence[object], dialect: str) -> sa.ColumnElement[bool]:
    """`exprs` (as a row) > `values`, for `dialect`."""
    return _compare(exprs, values, dialect, before=False)


def up_to(exprs: Sequence[sa.ColumnElement[Any]], values: Sequence[object], dialect: str) -> sa.ColumnElement[bool]:
    """`exprs` (as a row) <= `values`, for `dialect`: the end of a page whose last row is known."""
    return _compare(exprs, values, dialect, before=True)


def _compare(
    exprs: Sequence[sa.ColumnElement[Any]], values: Sequence[object], dialect: str, *, before: bool
) -> sa.ColumnElement[bool]:
    if len(exprs) != len(values):
        raise ValueError(f"a keyset of {len(exprs)} columns cannot follow {len(values)} values")
    binds = [sa.literal(v) for v in values]

    def beyond(expr: Any, bind: Any) -> sa.ColumnElement[bool]:
        return expr < bind if before else expr > bind  # type: ignore[no-any-return]

    if dialect in _ROW_VALUES or len(exprs) == 1:
        if len(exprs) == 1:
            return exprs[0] <= binds[0] if before else exprs[0] > binds[0]
        row, bound = sa.tuple_(*exprs), sa.tuple_(*binds)
        return row <= bound if before else row > bound
    # From the last column outwards: c_i > v_i OR (c_i = v_i AND <the rest>) (< and <= for up_to).
    last: sa.ColumnElement[bool] = exprs[-1] <= binds[-1] if before else exprs[-1] > binds[-1]
    condition = last
    for expr, bind in zip(reversed(exprs[:-1]), reversed(binds[:-1]), strict=True):
        condition = sa.or_(beyond(expr, bind), sa.and_(expr == bind, condition))
    lead = exprs[0] <= binds[0] if before else exprs[0] >= binds[0]
    return sa.and_(lead, condition)
