"""One captured table, view or query: its shape as the database has it, and keyset-paginated reads by cursor."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import sqlalchemy as sa

from liberator import keyset
from liberator.capture import CapturedTable, Catalogue
from liberator.connectors.query.config import QuerySourceConfig, TableEntry
from liberator.connectors.query.parallel import ParallelPages
from liberator.errors import SchemaError
from liberator.schema import DateType, DecimalType, IntType, TableSchema, TimestampType
from liberator.sqltypes import reflect_table


class TableReader:
    """One `tables:` entry: its captured table (from the source's catalogue) and the SQL that reads it.

    The catalogue owns what is published (columns after `exclude`, topic, schemas, versions); the reader
    owns how rows are read: the SELECT of the published columns in the captured order, the keyset pages by
    cursor (and by key for never-stamped rows), and where in a row the cursor values are.
    """

    def __init__(self, entry: TableEntry, config: QuerySourceConfig, catalogue: Catalogue, dialect: str) -> None:
        self.entry = entry
        self.config = config
        self.catalogue = catalogue
        self.dialect = dialect
        self.cursor_columns = list(entry.cursor or config.cursor)
        self.schema_name: str | None = None
        self.table_name = entry.table.rpartition(".")[2] if entry.table else str(entry.name)
        if entry.table and "." in entry.table:
            self.schema_name = entry.table.rpartition(".")[0]
        self.table: CapturedTable | None = None
        self.time_cursor = False  # the first cursor column is a timestamp/date (so the safety delay applies)
        self.cursor_nullable = False
        self._full: TableSchema | None = None
        self._sql_table: sa.FromClause | None = None
        self._columns: list[sa.ColumnElement[Any]] = []  # what the SELECT reads, in row order
        self.width = 0  # the published columns: the first `width` values of a row, in the captured order
        self.sliced = False  # rows hold more than the published values (cursor columns left out of the events)
        self.cursor_index: tuple[int, ...] = ()  # where each cursor column's value is in a row
        self.key_index: tuple[int, ...] = ()

    @property
    def name(self) -> str:
        """The stream's name in positions: stable across restarts."""
        return self.entry.name or str(self.entry.table)

    # -- reflection ---------------------------------------------------------------------------------

    def reflect(self, conn: sa.Connection) -> bool:
        """(Re)read the table's shape; True when what is published changed (a new captured version)."""
        inspector = sa.inspect(conn)
        schema = self.schema_name or inspector.default_schema_name
        if self.entry.query is not None:
            full = _reflect_query(conn, self.entry.query, self.table_name, self.entry.key or [], schema)
        else:
            full = reflect_table(conn, schema, self.table_name, self.entry.key)
        names = {c.name for c in full.columns}
        for column in self.cursor_columns:
            if column not in names:
                raise SchemaError(
                    f"{full.qualified_name} has no cursor column {column!r}; set `cursor:` for this table"
                )
        first = full.column(self.cursor_columns[0])
        if not isinstance(first.type, TimestampType | DateType | IntType | DecimalType):
            raise SchemaError(
                f"{full.qualified_name}.{self.cursor_columns[0]} cannot be a cursor: it must be a timestamp, "
                "a date or an increasing number"
            )
        if self.table is not None and full == self._full:
            return False  # unchanged: no need to ask the catalogue (another entry may share the table)
        topic = self.catalogue.topic_for(schema or "", self.table_name, self.entry.topic)
        table = self.catalogue.table(
            full,
            topic=topic,
            exclude=self.entry.exclude,
            rename=self.entry.rename,
            include=self.entry.include,
            mask=self.entry.mask,
            row_filter=self.entry.filter,
            on_error=self.entry.on_error,
            on_incompatible=self.entry.on_incompatible,
            route=self.entry.route,
            headers=self.entry.headers,
            hook=self.entry.hook,
        )
        changed = table is not self.table
        self._full, self.table = full, table
        self.time_cursor = isinstance(first.type, TimestampType | DateType)
        self.cursor_nullable = first.nullable
        if self.entry.query is not None:
            self._sql_table = (
                sa.text(self.entry.query).columns(*(sa.column(c.name) for c in full.columns)).subquery("q")
            )
        else:
            self._sql_table = sa.table(self.table_name, *(sa.column(c.name) for c in full.columns), schema=schema)
        published = list(table.columns)
        # Cursor columns left out of the events are read after the published ones.
        extra = [c for c in self.cursor_columns if c not in published]
        cols = self._sql_table.c
        self._columns = [cols[name] for name in (*published, *extra)]
        self.width = len(published)
        self.sliced = bool(extra)
        order = [*published, *extra]
        self.cursor_index = tuple(order.index(c) for c in self.cursor_columns)
        self.key_index = tuple(order.index(k) for k in table.shape.key)
        return changed

    # -- reads ------------------------------------------------------------------------------------

    def _cursor_exprs(self) -> list[sa.ColumnElement[Any]]:
        assert self._sql_table is not None
        cols = self._sql_table.c
        exprs: list[sa.ColumnElement[Any]] = []
        for index, name in enumerate(self.cursor_columns):
            expr: sa.ColumnElement[Any] = cols[name]
            if self.dialect == "sqlite" and index == 0 and self.time_cursor:
                # SQLite keeps timestamps as text and compares text: compare and store the raw text.
                expr = sa.type_coerce(expr, sa.String)
            exprs.append(expr)
        return exprs

    def select(self) -> sa.Select[Any]:
        """The published columns in the captured order, then any cursor column that is not published."""
        return sa.select(*self._columns)

    def values(self, row: Sequence[Any]) -> Sequence[Any]:
        """A row's published values, in the captured order."""
        return row[: self.width] if self.sliced else row

    def cursor_of(self, row: Sequence[Any]) -> tuple[object, ...]:
        return tuple(row[i] for i in self.cursor_index)

    def key_of(self, row: Sequence[Any]) -> tuple[object, ...]:
        return tuple(row[i] for i in self.key_index)

    def _ordered(
        self,
        query: sa.Select[Any],
        exprs: list[sa.ColumnElement[Any]],
        after: Sequence[object] | None,
        upper: object | None,
    ) -> sa.Select[Any]:
        """`query` limited to stamped rows after `after` (None: from the start) up to the timestamp `upper`."""
        if self.cursor_nullable:
            query = query.where(exprs[0].is_not(None))
        if after is not None:
            query = query.where(keyset.after(exprs, after, self.dialect))
        if upper is not None:
            query = query.where(exprs[0] <= sa.literal(upper))
        return query

    def page(self, after: Sequence[object] | None, upper: object | None, limit: int) -> sa.Select[Any]:
        """The next `limit` rows in cursor order after `after` (None: from the start), up to `upper`."""
        exprs = self._cursor_exprs()
        return self._ordered(self.select(), exprs, after, upper).order_by(*exprs).limit(limit)

    def span(self, after: Sequence[object] | None, end: Sequence[object], upper: object | None) -> sa.Select[Any]:
        """The rows in cursor order after `after` up to the cursor `end` (included), up to `upper`: a page whose
        last row was found first (page_ends). No LIMIT: a row written into the span since is read, not skipped."""
        exprs = self._cursor_exprs()
        query = self._ordered(self.select(), exprs, after, upper).where(keyset.up_to(exprs, end, self.dialect))
        return query.order_by(*exprs)

    def page_ends(
        self, conn: sa.Connection, after: Sequence[object] | None, upper: object | None, limit: int, count: int
    ) -> list[tuple[object, ...]]:
        """The cursors of the last rows of the next `count` full pages of `limit` (fewer near the end)."""
        exprs = self._cursor_exprs()
        return _page_ends(conn, exprs, lambda query: self._ordered(query, exprs, after, upper), limit, count)

    def pages_after(
        self,
        conn: sa.Connection,
        after: Sequence[object] | None,
        upper: object | None,
        limit: int,
        parallel: ParallelPages | None = None,
    ) -> Iterator[Sequence[Sequence[Any]]]:
        """Rows in cursor order after `after`, up to `upper`, a page of `limit` at a time (keyset, no OFFSET).

        With `parallel`, once a page came back full (the table is behind: a bulk read), the next pages are read
        a window of `parallel.workers` at a time; the rows and pages are those one reader would read."""
        behind = False
        while True:
            if behind and parallel is not None:
                reached = [after]
                spans = self._spans(conn, after, upper, limit, parallel.workers, reached)
                for rows in parallel.read(spans, fetch, conn):
                    if rows:
                        yield rows
                after = reached[0]
                # Less than a window was left: what follows the last full page is read as one page.
            rows = fetch(conn, self.page(after, upper, limit))
            if rows:
                yield rows
            if len(rows) < limit:
                return
            behind = True
            after = self.cursor_of(rows[-1])

    def _spans(
        self,
        conn: sa.Connection,
        after: Sequence[object] | None,
        upper: object | None,
        limit: int,
        count: int,
        reached: list[Sequence[object] | None],
    ) -> Iterator[sa.Select[Any]]:
        """The full pages after `after`, as spans found `count` at a time; `reached[0]`: where the last one ends."""
        while True:
            ends = self.page_ends(conn, after, upper, limit, count)
            for end in ends:
                yield self.span(after, end, upper)
                after = reached[0] = end
            if len(ends) < count:
                return

    def null_cursor_page(
        self, conn: sa.Connection, after: Sequence[object] | None, limit: int
    ) -> Sequence[Sequence[Any]]:
        """One page, in key order, of rows whose timestamp is NULL (legacy rows never stamped)."""
        assert self.table is not None and self._sql_table is not None
        cols = self._sql_table.c
        keys = [cols[k] for k in self.table.shape.key]
        query = self.select().where(self._cursor_exprs()[0].is_(None))
        if after is not None:
            query = query.where(keyset.after(keys, after, self.dialect))
        return fetch(conn, query.order_by(*keys).limit(limit))

    def key_pages(self, conn: sa.Connection, limit: int) -> Iterator[Sequence[Sequence[Any]]]:
        """Every row's key values in key order, a page of `limit` at a time (keyset on the primary key)."""
        assert self.table is not None and self._sql_table is not None
        cols = self._sql_table.c
        keys = [cols[k] for k in self.table.shape.key]
        after: Sequence[object] | None = None
        while True:
            query = sa.select(*keys)
            if after is not None:
                query = query.where(keyset.after(keys, after, self.dialect))
            rows = fetch(conn, query.order_by(*keys).limit(limit))
            if rows:
                yield rows
            if len(rows) < limit:
                return
            after = tuple(rows[-1])

    def _key_exprs(self) -> list[sa.ColumnElement[Any]]:
        assert self.table is not None and self._sql_table is not None
        cols = self._sql_table.c
        return [cols[k] for k in self.table.shape.key]

    def _matching(
        self,
        query: sa.Select[Any],
        keys: list[sa.ColumnElement[Any]],
        after: Sequence[object] | None,
        where: str | None,
    ) -> sa.Select[Any]:
        """`query` limited to the rows matching `where` (an operator's SQL condition) after the key `after`."""
        if where is not None:
            query = query.where(sa.text(f"({where})"))
        if after is not None:
            query = query.where(keyset.after(keys, after, self.dialect))
        return query

    def backfill_page(
        self, conn: sa.Connection, after: Sequence[object] | None, where: str | None, limit: int
    ) -> Sequence[Sequence[Any]]:
        """One page, in key order after `after`, of the rows matching `where` (an operator's SQL condition)."""
        keys = self._key_exprs()
        return fetch(conn, self._matching(self.select(), keys, after, where).order_by(*keys).limit(limit))

    def backfill_ends(
        self, conn: sa.Connection, after: Sequence[object] | None, where: str | None, limit: int, count: int
    ) -> list[tuple[object, ...]]:
        """The keys of the last rows of the next `count` full backfill pages of `limit` (fewer near the end)."""
        keys = self._key_exprs()
        return _page_ends(conn, keys, lambda query: self._matching(query, keys, after, where), limit, count)

    def backfill_span(self, after: Sequence[object] | None, end: Sequence[object], where: str | None) -> sa.Select[Any]:
        """The backfill's rows in key order after `after` up to the key `end` (included); no LIMIT (see span)."""
        keys = self._key_exprs()
        query = self._matching(self.select(), keys, after, where).where(keyset.up_to(keys, end, self.dialect))
        return query.order_by(*keys)


def _page_ends(
    conn: sa.Connection,
    exprs: list[sa.ColumnElement[Any]],
    conditions: Callable[[sa.Select[Any]], sa.Select[Any]],
    limit: int,
    count: int,
) -> list[tuple[object, ...]]:
    """The values of `exprs` at the last row of each of the next `count` full pages of `limit` rows in their
    order, among the rows `conditions` keep. One query reads those columns alone (an index-only range, in the
    best case), numbers them and keeps every `limit`-th."""
    labelled = [expr.label(f"liberator_c{index}") for index, expr in enumerate(exprs)]
    window = conditions(sa.select(*labelled)).order_by(*exprs).limit(limit * count).subquery("liberator_window")
    columns = list(window.c)
    number = sa.func.row_number().over(order_by=columns).label("liberator_n")
    numbered = sa.select(*columns, number).subquery("liberator_numbered")
    query = (
        sa.select(*(numbered.c[label.name] for label in labelled))
        .where(numbered.c.liberator_n % limit == 0)
        .order_by(numbered.c.liberator_n)
    )
    return [tuple(row) for row in fetch(conn, query)]


def fetch(conn: sa.Connection, query: sa.Select[Any]) -> Sequence[Sequence[Any]]:
    """The rows as the driver's tuples: the columns are untyped (no result processing to skip), and
    SQLAlchemy's Row objects cost about 1 µs a row on top of psycopg's fetch."""
    result = conn.execute(query)
    try:
        rows: Sequence[Sequence[Any]] = result.cursor.fetchall()
        return rows
    finally:
        result.close()


def _reflect_query(conn: sa.Connection, query: str, name: str, key: list[str], schema: str | None) -> TableSchema:
    """Type a SELECT's result by giving it an empty temporary home the dialect can reflect.

    Views keep the source columns' declared types on PostgreSQL and SQLite; MySQL has no temporary
    views, so a temporary table created from the query with no rows stands in.
    """
    dialect = conn.dialect.name
    temp = f"liberator_shape_{re.sub(r'[^A-Za-z0-9_]', '_', name)}"
    body = f"SELECT * FROM ({query}) AS liberator_q"
    if dialect == "postgresql":
        conn.execute(sa.text(f'CREATE OR REPLACE TEMPORARY VIEW "{temp}" AS {body}'))
        temp_schema = conn.execute(sa.text("SELECT nspname FROM pg_namespace WHERE oid = pg_my_temp_schema()")).scalar()
        table = reflect_table(conn, str(temp_schema), temp, key)
        conn.execute(sa.text(f'DROP VIEW IF EXISTS "{temp}"'))
    elif dialect == "sqlite":
        conn.execute(sa.text(f'DROP VIEW IF EXISTS temp."{temp}"'))
        conn.execute(sa.text(f'CREATE TEMPORARY VIEW "{temp}" AS {body}'))
        table = reflect_table(conn, "temp", temp, key)
        conn.execute(sa.text(f'DROP VIEW IF EXISTS temp."{temp}"'))
    elif dialect in ("mysql", "mariadb"):
        conn.execute(sa.text(f"DROP TEMPORARY TABLE IF EXISTS `{temp}`"))
        conn.execute(sa.text(f"CREATE TEMPORARY TABLE `{temp}` AS {body} LIMIT 0"))
        table = reflect_table(conn, None, temp, key)
        conn.execute(sa.text(f"DROP TEMPORARY TABLE IF EXISTS `{temp}`"))
    else:
        raise SchemaError(
            f"query {name}: typing a query is not supported on {dialect}; create a view and list it in `tables:`"
        )
    columns = tuple(c if c.name not in key else type(c)(c.name, c.type, False, c.db_type) for c in table.columns)
    return TableSchema(schema, name, columns, tuple(key))
