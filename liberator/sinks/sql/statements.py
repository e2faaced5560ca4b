"""The statements a batch is written with: one per table, operation and row shape.

On PostgreSQL the rows of a group go as one array per column in one statement,
``INSERT .. SELECT * FROM unnest(%b::t1[], %b::t2[], ..) [ON CONFLICT ..]`` (as Debezium's JDBC sink does since
3.5): one round trip and one plan for the whole group, the arrays sent in binary, instead of executemany's
statement per row. Each array is cast to its column's base type by the catalog's own name (no typmod: `"bit"` is
not bit(1), `"varchar"` cuts nothing), so the INSERT's assignment cast applies the column's typmod and rules
exactly as it does to a single row's parameter: a value too long for VARCHAR(50) is refused, not cut. Columns
whose type liberator does not map (the database judges each value) or that are arrays themselves (unnest would
flatten them) keep executemany, as MySQL/MariaDB (whose driver sends one multi-row VALUES) and SQLite do.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite

from liberator.sinks.sql.tables import TargetTable

# The array format per Python class of a column's values: binary, except decimals (psycopg writes their text faster).
_TEXT_ARRAYS = (Decimal,)


class Statements:
    """The upserts, inserts and deletes of one sink's target, each made once per (table, columns)."""

    def __init__(self, engine: sa.Engine, mode: str) -> None:
        self.dialect = engine.dialect.name
        self.mode = mode
        self._preparer = engine.dialect.identifier_preparer
        self._made: dict[tuple[Any, ...], Any] = {}

    def write(
        self, conn: sa.Connection, table: TargetTable, columns: tuple[str, ...], rows: list[tuple[Any, ...]]
    ) -> int:
        """Upsert (mode upsert) or insert `rows`, the values of `columns`; the rows changed."""
        if self.dialect == "postgresql" and all(table.casts.get(c) for c in columns):
            arrays = [list(values) for values in zip(*rows, strict=True)]
            result = conn.exec_driver_sql(self._unnest(table, columns, arrays), tuple(arrays))
        else:
            statement = self._upsert(table, columns) if self.mode == "upsert" else self._insert(table, columns)
            result = conn.execute(statement, [dict(zip(columns, row, strict=True)) for row in rows])
        return result.rowcount if result.rowcount and result.rowcount > 0 else len(rows)

    def delete(self, conn: sa.Connection, table: TargetTable, keys: list[tuple[Any, ...]]) -> int:
        result = conn.execute(self._delete(table), [dict(zip(table.key, key, strict=True)) for key in keys])
        return result.rowcount if result.rowcount and result.rowcount > 0 else len(keys)

    # -- PostgreSQL: unnest ---------------------------------------------------------------------------

    def _unnest(self, table: TargetTable, columns: tuple[str, ...], arrays: Sequence[list[Any]]) -> str:
        formats = tuple("t" if _first_class(values) in _TEXT_ARRAYS else "b" for values in arrays)
        cache_key = ("unnest", table.schema, table.name, columns, table.key, formats)
        sql: str | None = self._made.get(cache_key)
        if sql is None:
            quote = self._ident
            names = ", ".join(quote(c) for c in columns)
            arrays_sql = ", ".join(
                f"%{f}::{str(table.casts[c]).replace('%', '%%')}[]" for c, f in zip(columns, formats, strict=True)
            )
            target = quote(table.name) if not table.schema else f"{quote(table.schema)}.{quote(table.name)}"
            sql = f"INSERT INTO {target} ({names}) SELECT * FROM unnest({arrays_sql})"
            if self.mode == "upsert":
                keys = ", ".join(quote(k) for k in table.key)
                rest = [c for c in columns if c not in table.key]
                if rest:
                    updates = ", ".join(f"{quote(c)} = excluded.{quote(c)}" for c in rest)
                    sql += f" ON CONFLICT ({keys}) DO UPDATE SET {updates}"
                else:
                    sql += f" ON CONFLICT ({keys}) DO NOTHING"
            self._made[cache_key] = sql
        return sql

    def _ident(self, name: str) -> str:
        # psycopg reads % as the start of a placeholder: in a name of the SQL written here it is doubled
        return self._preparer.quote(name).replace("%", "%%")

    # -- every dialect: SQLAlchemy Core, executemany ----------------------------------------------------

    def _sql_table(self, table: TargetTable, columns: Sequence[str]) -> sa.TableClause:
        return sa.table(table.name, *(sa.column(c) for c in columns), schema=table.schema)

    def _insert(self, table: TargetTable, columns: tuple[str, ...]) -> Any:
        cache_key = ("insert", table.schema, table.name, columns)
        if cache_key not in self._made:
            self._made[cache_key] = sa.insert(self._sql_table(table, columns))
        return self._made[cache_key]

    def _delete(self, table: TargetTable) -> Any:
        cache_key = ("delete", table.schema, table.name, table.key)
        if cache_key not in self._made:
            sql = self._sql_table(table, table.key)
            self._made[cache_key] = sa.delete(sql).where(*(sql.c[k] == sa.bindparam(k) for k in table.key))
        return self._made[cache_key]

    def _upsert(self, table: TargetTable, columns: tuple[str, ...]) -> Any:
        cache_key = ("upsert", table.schema, table.name, columns, table.key)
        if cache_key in self._made:
            return self._made[cache_key]
        sql = self._sql_table(table, columns)
        rest = [c for c in columns if c not in table.key]
        stmt: Any
        if self.dialect in ("mysql", "mariadb"):
            stmt = mysql.insert(sql)
            updates = {c: stmt.inserted[c] for c in rest} or {table.key[0]: stmt.inserted[table.key[0]]}
            stmt = stmt.on_duplicate_key_update(updates)
        else:
            stmt = postgresql.insert(sql) if self.dialect == "postgresql" else sqlite.insert(sql)
            if rest:
                stmt = stmt.on_conflict_do_update(
                    index_elements=list(table.key), set_={c: stmt.excluded[c] for c in rest}
                )
            else:
                stmt = stmt.on_conflict_do_nothing(index_elements=list(table.key))
        self._made[cache_key] = stmt
        return stmt


def _first_class(values: list[Any]) -> type | None:
    for value in values:
        if value is not None:
            return type(value)
    return None
