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
    if len(exprs) != len(values):
        raise ValueError(f"a keyset of {len(exprs)} columns cannot follow {len(values)} values")
    binds = [sa.literal(v) for v in values]
    if dialect in _ROW_VALUES or len(exprs) == 1:
        return sa.tuple_(*exprs) > sa.tuple_(*binds) if len(exprs) > 1 else exprs[0] > binds[0]
    # From the last column outwards: c_i > v_i OR (c_i = v_i AND <the rest>).
    condition: sa.ColumnElement[bool] = exprs[-1] > binds[-1]
    for expr, bind in zip(reversed(exprs[:-1]), reversed(binds[:-1]), strict=True):
        condition = sa.or_(expr > bind, sa.and_(expr == bind, condition))
    return sa.and_(exprs[0] >= binds[0], condition)
