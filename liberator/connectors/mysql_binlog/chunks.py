"""The SQL of a backfill's primary-key chunks on MySQL/MariaDB: a span's rows, and where the next chunks end.

Key conditions are spelled out column by column (liberator.keyset): MySQL and MariaDB read a row-value
comparison `(k1, k2) > (v1, v2)` of a composite key as a scan of the whole index, the spelled-out form as a
range of it, so a chunk late in the table does not read every row before it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from liberator.connectors.mysql_binlog.checks import quote
from liberator.connectors.mysql_binlog.history import TableDef
from liberator.keyset import Comparison, spelled_text
from liberator.watermarks import Key, Span


class ChunkSql:
    """`SELECT columns FROM table [WHERE key > after] [AND key <= upto] [AND (where)] ORDER BY key [LIMIT n]`,
    with PyMySQL's `%s` placeholders and their values."""

    def __init__(self, definition: TableDef, columns: Sequence[str], where: str | None) -> None:
        self.definition = definition
        self.where = where
        self.columns = ", ".join(quote(c) for c in columns)
        self.keys = [quote(k) for k in definition.key]
        self.source = f"{quote(definition.database)}.{quote(definition.table)}"
        self.order_by = ", ".join(self.keys)

    def rows(self, span: Span) -> tuple[str, list[Any] | None]:
        """The span's rows in key order."""
        where, args = self._conditions(span.after, span.upto)
        limit = "" if span.limit is None else f" LIMIT {int(span.limit)}"
        return f"SELECT {self.columns} FROM {self.source}{where} ORDER BY {self.order_by}{limit}", args

    def boundaries(self, after: Key | None, chunk: int, count: int) -> tuple[str, list[Any] | None]:
        """The keys that end each of the next `count` chunks of `chunk` rows after `after` (fewer near the
        table's end): one query reading only the key columns (MySQL 8, MariaDB 10.2: window functions)."""
        where, args = self._conditions(after, None)
        inner = f"SELECT {self.order_by} FROM {self.source}{where} ORDER BY {self.order_by} LIMIT {int(chunk * count)}"
        query = (
            f"SELECT {self.order_by} FROM (SELECT {self.order_by}, ROW_NUMBER() OVER (ORDER BY {self.order_by}) "
            f"AS liberator_n FROM ({inner}) AS liberator_chunk) AS liberator_numbered "
            f"WHERE MOD(liberator_n, {int(chunk)}) = 0 ORDER BY liberator_n"
        )
        return query, args

    def _conditions(self, after: Key | None, upto: Key | None) -> tuple[str, list[Any] | None]:
        conditions: list[str] = []
        args: list[Any] = []
        bounds: tuple[tuple[Key | None, Comparison], ...] = ((after, ">"), (upto, "<="))
        for key, op in bounds:
            if key is not None:
                condition, order = self._compare(op, len(key))
                conditions.append(condition)
                args.extend(key[i] for i in order)
        if self.where is not None:
            # With the key's placeholders PyMySQL formats the query, so a literal % is written %%.
            conditions.append("(" + (self.where.replace("%", "%%") if args else self.where) + ")")
        where = " WHERE " + " AND ".join(conditions) if conditions else ""
        return where, args or None

    def _compare(self, op: Comparison, width: int) -> tuple[str, list[int]]:
        if width != len(self.keys):
            raise ValueError(
                f"a key of {width} values for {self.definition.qualified}, whose primary key has {len(self.keys)} "
                "columns"
            )
        return spelled_text(self.keys, op)
