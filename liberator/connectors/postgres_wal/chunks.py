"""Primary-key chunks of a table, read as the server's text: what the initial snapshot and the backfills share.

Rows come back as text (psycopg's text loader for every column type of the table) and are parsed by the same
parsers as streamed values, so a row reads the same whether it was snapshotted or streamed.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.string import TextLoader

from liberator.connectors.postgres_wal.tables import TableState, split_name


def load_as_text(conn: psycopg.Connection[Any], name: str) -> None:
    """Make `conn` return the columns of table `name` as the server's text (once per connection and table)."""
    schema, table = split_name(name)
    rows = conn.execute(
        "SELECT DISTINCT atttypid FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
        (sql.Identifier(schema, table).as_string(None),),
    ).fetchall()
    for (oid,) in rows:
        conn.adapters.register_loader(int(oid), TextLoader)


class ChunkQuery:
    """`SELECT columns FROM table [WHERE (key) > (after)] [AND (key) <= (upto)] [AND (where)] ORDER BY key`.

    Key values are passed as the server's text and cast back to the key columns' types, so a key read from a
    row goes into the next query exactly as it was.
    """

    def __init__(self, state: TableState, where: str | None = None) -> None:
        table = state.table
        self.state = state
        self.where = where
        self.columns = sql.SQL(", ").join(sql.Identifier(c.name) for c in table.columns)
        self.keys = sql.SQL(", ").join(sql.Identifier(k) for k in table.key)
        self.casts = sql.SQL(", ").join(sql.SQL("%s::" + table.column(k).db_type) for k in table.key)
        self.source = sql.Identifier(*split_name(state.name))

    def rows(self, *, after: bool, upto: bool = False, limit: int | None = None) -> sql.Composed:
        """The chunk's SELECT: parameters are the `after` key's values, then the `upto` key's (when asked)."""
        return sql.SQL("SELECT {} FROM {}{} ORDER BY {}{}").format(
            self.columns, self.source, self._conditions(after, upto), self.keys, _limit(limit)
        )

    def boundaries(self, *, after: bool, chunk: int, count: int) -> sql.Composed:
        """The keys that end each of the next `count` chunks of `chunk` rows (fewer near the table's end).

        Reads only the key columns (an index-only scan of the primary key, in the best case)."""
        inner = sql.SQL("SELECT {} FROM {}{} ORDER BY {} LIMIT {}").format(
            self.keys, self.source, self._conditions(after, False), self.keys, sql.Literal(chunk * count)
        )
        return sql.SQL(
            "SELECT {} FROM (SELECT {}, row_number() OVER (ORDER BY {}) AS liberator_n FROM ({}) AS chunk) AS numbered "
            "WHERE mod(liberator_n, {}) = 0 ORDER BY liberator_n"
        ).format(self.keys, self.keys, self.keys, inner, sql.Literal(chunk))

    def _conditions(self, after: bool, upto: bool) -> sql.Composable:
        conditions: list[sql.Composable] = []
        if after:
            conditions.append(sql.SQL("({}) > ({})").format(self.keys, self.casts))
        if upto:
            conditions.append(sql.SQL("({}) <= ({})").format(self.keys, self.casts))
        if self.where is not None:
            # With the key's placeholders psycopg reads %s, so a literal % is written %%; without them it reads none.
            where_sql = self.where.replace("%", "%%") if after or upto else self.where
            conditions.append(sql.SQL("(" + where_sql + ")"))
        return sql.SQL(" WHERE ") + sql.SQL(" AND ").join(conditions) if conditions else sql.SQL("")


def _limit(limit: int | None) -> sql.Composable:
    return sql.SQL("") if limit is None else sql.SQL(" LIMIT {}").format(sql.Literal(limit))
