"""Target tables: reflect, create from the Avro schema, evolve by adding columns, and refuse what cannot fit.

Created columns use the field's own `liberator.db_type` where the target accepts that spelling and the
created column maps back to the same Avro type (checked by reflecting the new table); every other column
gets a type mapped from the field's kind. Evolution only ever adds nullable columns or drops a NOT NULL;
a field whose type the existing column cannot hold stops the sink with one line naming both.
"""

from __future__ import annotations

import logging
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from liberator import sqldb
from liberator.avro import DURATION_MICROS, PROP_TYPE, record_schema
from liberator.config import DatabaseTimeouts
from liberator.dbconnect import DEFAULT_TIMEOUTS
from liberator.errors import SchemaError
from liberator.schema import Column, ColumnType, TableSchema
from liberator.sink import FatalSinkError
from liberator.sinks.sql.columns import FieldColumn, _Named, db_type_usable, fallback_type, field_columns, normalised
from liberator.sinks.sql.errors import classify as sqldb_error
from liberator.sinks.sql.values import RowOf, ToColumn, row_function, to_column
from liberator.sqltypes import neutral_type, reflect_table, type_label

log = logging.getLogger("liberator.sink.sql")


@dataclass(eq=False)
class Plan:
    """How the rows of one writer schema go into one table: `row(datum)` gives the values of `columns`."""

    columns: tuple[str, ...]
    key_index: tuple[int, ...]  # where the key columns are in `columns`
    row: RowOf

    def __post_init__(self) -> None:
        # The key of a row, the tuple of its key columns' values: an itemgetter is a C call per record
        index = self.key_index
        self.key_of: Callable[[tuple[Any, ...]], tuple[Any, ...]]
        if len(index) > 1:
            self.key_of = operator.itemgetter(*index)
        elif index:
            only = index[0]
            self.key_of = lambda row: (row[only],)
        else:
            self.key_of = lambda row: ()


@dataclass
class TargetTable:
    name: str
    schema: str | None
    key: tuple[str, ...]
    types: dict[str, ColumnType | None]  # column -> neutral type (None: a type liberator does not map)
    sql: sa.TableClause
    nullable: dict[str, bool] = field(default_factory=dict)  # column -> accepts NULL
    required: set[str] = field(default_factory=set)  # NOT NULL columns without a default
    plans: dict[int, Plan] = field(default_factory=dict)
    # PostgreSQL: each column's base type, as an array element cast for `unnest` (None: the column takes
    # executemany, see liberator.sinks.sql.statements); empty on other databases.
    casts: dict[str, str | None] = field(default_factory=dict)

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}" if self.schema else self.name


_PG_COLUMN_TYPES = sa.text(
    "SELECT a.attname, t.typname, n.nspname, t.typcategory FROM pg_catalog.pg_attribute a "
    "JOIN pg_catalog.pg_type t ON t.oid = a.atttypid JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace "
    "WHERE a.attrelid = to_regclass(:table) AND a.attnum > 0 AND NOT a.attisdropped"
)


def _pg_casts(
    conn: sa.Connection, schema: str | None, name: str, types: dict[str, ColumnType | None]
) -> dict[str, str | None]:
    """Each column's base type by its catalog name (quoted: no typmod default, `"bit"` is not bit(1)). None for
    array columns (unnest would flatten them) and for types liberator does not map, whose values the database
    judges with its assignment rules only (an explicit cast could take what an INSERT refuses)."""
    quote = conn.dialect.identifier_preparer.quote_identifier  # always quoted: the catalog's exact names
    qualified = quote(name) if schema is None else f"{quote(schema)}.{quote(name)}"
    casts: dict[str, str | None] = {}
    for column, type_name, type_schema, category in conn.execute(_PG_COLUMN_TYPES, {"table": qualified}):
        mapped = types.get(column) is not None and category != "A"
        casts[column] = f"{quote(type_schema)}.{quote(type_name)}" if mapped else None
    return casts


def _avro_of(column: str, ctype: ColumnType, nullable: bool) -> Any:
    table = TableSchema(None, "t", (Column(column, ctype, nullable),), ())
    return normalised(record_schema(table, table.columns, "R", "")["fields"][0]["type"])


def enum_type_name(fc: FieldColumn, table: str) -> str:
    """PostgreSQL enums keep their type name (the db_type of the column or of its array's items)."""
    base = fc.db_type.removesuffix("[]")
    return base if base.isidentifier() else f"{table}_{fc.column}"


def _created_avro(table: TargetTable, fc: FieldColumn) -> Any:
    ctype = table.types.get(fc.column)
    return None if ctype is None else _avro_of(fc.column, ctype, fc.nullable)


def _field_avro(fc: FieldColumn) -> Any:
    return normalised(["null", fc.avro] if fc.nullable else fc.avro)


_WIDER = {("long", "int"), ("double", "float"), ("double", "int")}  # (column, field)


def holds(column_avro: Any, field_avro: Any) -> bool:
    """Whether every value of `field_avro` fits a column whose own Avro type is `column_avro`."""
    if column_avro == field_avro:
        return True
    if isinstance(column_avro, list) or isinstance(field_avro, list):
        col = [b for b in column_avro if b != "null"] if isinstance(column_avro, list) else [column_avro]
        fld = [b for b in field_avro if b != "null"] if isinstance(field_avro, list) else [field_avro]
        if (
            isinstance(field_avro, list)
            and "null" in field_avro
            and not (isinstance(column_avro, list) and "null" in column_avro)
        ):
            return False
        return len(col) == 1 and len(fld) == 1 and holds(col[0], fld[0])
    if isinstance(column_avro, str) and isinstance(field_avro, str) and (column_avro, field_avro) in _WIDER:
        return True
    if isinstance(column_avro, dict) and isinstance(field_avro, dict):
        if column_avro.get("logicalType") == field_avro.get("logicalType") == "decimal":
            cp, cs = column_avro["precision"], column_avro.get("scale", 0)
            fp, fs = field_avro["precision"], field_avro.get("scale", 0)
            return bool(cs >= fs and cp - cs >= fp - fs)
        if column_avro.get("type") == "string" and field_avro.get("type") in ("string", "enum"):
            return not (column_avro.get("logicalType") or column_avro.get("liberator.type"))
    if column_avro == "long" and isinstance(field_avro, dict) and field_avro.get(PROP_TYPE) == DURATION_MICROS:
        return True  # a BIGINT outside MySQL holds a duration's microseconds
    return bool(column_avro == "string" and isinstance(field_avro, dict) and field_avro.get("type") == "enum")


class Tables:
    """The target tables of one sink, found or made once per (table, writer schema)."""

    def __init__(
        self,
        engine: sa.Engine,
        url: str,
        create: bool,
        evolve: bool,
        mode: str,
        timeouts: DatabaseTimeouts = DEFAULT_TIMEOUTS,
    ) -> None:
        self.engine = engine
        self.timeouts = timeouts
        self.url = url
        self.create = create
        self.evolve = evolve
        self.mode = mode
        self.dialect = engine.dialect.name
        self._tables: dict[tuple[str | None, str], TargetTable] = {}

    def plan(
        self,
        schema: str | None,
        name: str,
        schema_id: int,
        value_schema: dict[str, Any],
        key_columns: tuple[str, ...],
    ) -> tuple[TargetTable, Plan]:
        table = self._tables.get((schema, name))
        if table is not None and schema_id in table.plans:
            return table, table.plans[schema_id]
        fields = field_columns(value_schema, f"table {name}")
        by_column = {f.column: f for f in fields}
        missing_key = [k for k in key_columns if k not in by_column]
        if missing_key:
            raise FatalSinkError(
                f"table {name}: key column(s) {', '.join(missing_key)} are not fields of the records; "
                "set `key:` to columns the records carry"
            )
        try:
            table = self._reconcile(schema, name, fields, key_columns)
        except SQLAlchemyError as exc:
            raise sqldb_error(exc, self.url, f"table {name}", self.timeouts) from None
        converters: dict[str, tuple[str, str, ToColumn]] = {}  # by column: a later field of the same column wins
        for f in fields:
            converters[f.column] = (f.field, f.column, to_column(f.kind, self.dialect, table.types.get(f.column)))
        columns = tuple(converters)
        plan = Plan(columns, tuple(columns.index(k) for k in key_columns), row_function(list(converters.values())))
        table.plans[schema_id] = plan
        self._tables[(schema, name)] = table
        return table, plan

    def known(self, schema: str | None, name: str, key_columns: tuple[str, ...]) -> TargetTable:
        """A table for deletes only (tombstones): it must exist."""
        table = self._tables.get((schema, name))
        if table is None:
            with self.engine.connect() as conn:
                table = self._reflect(conn, schema, name, key_columns)
            if table is None:
                raise FatalSinkError(f"cannot delete from {name}: the table does not exist in {sqldb.redact(self.url)}")
            self._tables[(schema, name)] = table
        return table

    # -- reflection and DDL -------------------------------------------------------------------------

    def _reflect(self, conn: sa.Connection, schema: str | None, name: str, key: tuple[str, ...]) -> TargetTable | None:
        inspector = sa.inspect(conn)
        if not inspector.has_table(name, schema=schema):
            return None
        types: dict[str, ColumnType | None] = {}
        nullable: dict[str, bool] = {}
        required: set[str] = set()
        try:
            # The sources' own reflection: it also knows MariaDB's JSON check and types SQLAlchemy does not.
            known = {c.name: c.type for c in reflect_table(conn, schema, name, key or None).columns}
        except SchemaError:
            known = {}
        for info in inspector.get_columns(name, schema=schema):
            try:
                types[info["name"]] = known.get(info["name"]) or neutral_type(
                    info["type"], dialect=self.dialect, table=name, column=info["name"]
                )
            except SchemaError:
                types[info["name"]] = None
            nullable[info["name"]] = bool(info.get("nullable", True))
            if not nullable[info["name"]] and info.get("default") is None and info.get("autoincrement") is not True:
                required.add(info["name"])
        qualified = f"{schema}.{name}" if schema else name
        if self.mode == "upsert" and key:
            pk = inspector.get_pk_constraint(name, schema=schema).get("constrained_columns") or []
            unique: list[tuple[str, ...]] = [tuple(str(c) for c in pk)]
            unique += [
                tuple(str(c) for c in ix["column_names"])
                for ix in inspector.get_indexes(name, schema=schema)
                if ix.get("unique")
            ]
            unique += [tuple(uc["column_names"]) for uc in inspector.get_unique_constraints(name, schema=schema)]
            if not any(set(u) == set(key) for u in unique if u):
                raise FatalSinkError(
                    f"table {qualified} has no primary key or unique index on ({', '.join(key)}), which upserts "
                    "need; add one, set `key:` to the columns that are unique, or use `mode: insert`"
                )
        sql = sa.table(name, *(sa.column(c) for c in types), schema=schema)
        casts = _pg_casts(conn, schema, name, types) if self.dialect == "postgresql" else {}
        return TargetTable(name, schema, key, types, sql, nullable, required, casts=casts)

    def _reconcile(self, schema: str | None, name: str, fields: list[FieldColumn], key: tuple[str, ...]) -> TargetTable:
        qualified = f"{schema}.{name}" if schema else name
        with self.engine.connect() as conn:
            table = self._reflect(conn, schema, name, key)
        if table is None:
            if not self.create:
                raise FatalSinkError(
                    f"table {qualified} does not exist in {sqldb.redact(self.url)}; create it or set `create: true`"
                )
            self._create(schema, name, fields, key)
            with self.engine.connect() as conn:
                table = self._reflect(conn, schema, name, key)
            assert table is not None
            return table
        missing = [f for f in fields if f.column not in table.types]
        if missing:
            names = ", ".join(f.column for f in missing)
            if not self.evolve:
                raise FatalSinkError(
                    f"table {qualified} has no column(s) {names} for fields of the records; "
                    "add them or set `evolve: true`"
                )
            self._add_columns(table, missing)
            log.info("table %s: added column(s) %s", qualified, names)
        for fc in fields:
            ctype = table.types.get(fc.column)
            if ctype is None:
                continue  # a type liberator does not map: the database judges each value
            column_avro = _avro_of(fc.column, ctype, table.nullable.get(fc.column, True))
            if not holds(column_avro, _field_avro(fc)):
                raise FatalSinkError(
                    f"table {qualified} column {fc.column}: the column ({type_label(ctype, self.dialect)}) cannot hold "
                    f"field {fc.field} ({fc.db_type or fc.kind.name}); change the column yourself (liberator never "
                    "narrows or retypes columns) or write to another table"
                )
        blocking = sorted(table.required - {f.column for f in fields})
        if blocking:
            raise FatalSinkError(
                f"table {qualified}: column(s) {', '.join(blocking)} are NOT NULL without a default but the records "
                "have no such fields; give them a default or make them nullable"
            )
        return table

    def _column_type(self, fc: FieldColumn, in_key: bool, use_db_type: bool, table: str) -> Any:
        mysql_text_key = (
            in_key and self.dialect in ("mysql", "mariadb") and fc.db_type.upper().endswith(("TEXT", "BLOB"))
        )
        if use_db_type and db_type_usable(fc.db_type, self.dialect) and not mysql_text_key:
            return _Named(fc.db_type)
        return fallback_type(fc.kind, self.dialect, in_key, enum_type_name(fc, table))

    def _create(self, schema: str | None, name: str, fields: list[FieldColumn], key: tuple[str, ...]) -> None:
        qualified = f"{schema}.{name}" if schema else name
        plain: set[str] = set()  # columns whose db_type did not round-trip: mapped types instead
        for attempt in range(3):
            table = self._table_model(schema, name, fields, key, plain if attempt < 2 else {f.column for f in fields})
            try:
                with self.engine.begin() as conn:
                    self._create_enums(conn, fields, name, plain)
                    table.create(conn)
            except SQLAlchemyError as exc:
                with self.engine.connect() as conn:
                    if sa.inspect(conn).has_table(name, schema=schema):
                        return  # another sink or group member created it at the same moment
                if attempt == 2:
                    reason = str(getattr(exc, "orig", exc)).splitlines()[0]
                    raise FatalSinkError(f"cannot create table {qualified}: {reason}; create it yourself") from None
                plain = {f.column for f in fields}
                continue
            with self.engine.connect() as conn:
                reflected = self._reflect(conn, schema, name, key)
            assert reflected is not None
            wrong = [
                f.column for f in fields if f.column not in plain and _created_avro(reflected, f) != _field_avro(f)
            ]
            if not wrong or attempt == 2:
                log.info("created table %s", qualified)
                return
            with self.engine.begin() as conn:
                table.drop(conn)
            plain |= set(wrong)

    def _table_model(
        self, schema: str | None, name: str, fields: list[FieldColumn], key: tuple[str, ...], plain: set[str]
    ) -> sa.Table:
        columns = [
            sa.Column(
                f.column,
                self._column_type(f, f.column in key, f.column not in plain, name),
                nullable=f.nullable and f.column not in key,
                primary_key=f.column in key and self.mode == "upsert",
                autoincrement=False,
            )
            for f in fields
        ]
        return sa.Table(name, sa.MetaData(), *columns, schema=schema)

    def _create_enums(self, conn: sa.Connection, fields: list[FieldColumn], table: str, plain: set[str]) -> None:
        if self.dialect != "postgresql":
            return
        for f in fields:
            kinds = [f.kind, f.kind.item] if f.kind.item is not None else [f.kind]
            for kind in kinds:
                if kind is None or kind.name != "enum" or not kind.symbols:
                    continue
                if f.column not in plain and db_type_usable(f.db_type, self.dialect):
                    continue
                enum_name = (
                    f.db_type.removesuffix("[]")
                    if f.db_type.removesuffix("[]").isidentifier()
                    else f"{table}_{f.column}"
                )
                exists = conn.execute(sa.text("SELECT 1 FROM pg_type WHERE typname = :n"), {"n": enum_name}).first()
                if not exists:
                    labels = ", ".join("'" + s.replace("'", "''") + "'" for s in kind.symbols)
                    conn.execute(sa.text(f'CREATE TYPE "{enum_name}" AS ENUM ({labels})'))

    def _add_columns(self, table: TargetTable, missing: list[FieldColumn]) -> None:
        preparer = self.engine.dialect.identifier_preparer
        target = (
            preparer.quote(table.name)
            if not table.schema
            else f"{preparer.quote_schema(table.schema)}.{preparer.quote(table.name)}"
        )
        with self.engine.begin() as conn:
            self._create_enums(conn, missing, table.name, set())
            for fc in missing:
                ctype = self._column_type(fc, False, True, table.name)
                spelled = (
                    ctype.compile(dialect=self.engine.dialect) if not isinstance(ctype, _Named) else ctype.type_name
                )
                conn.execute(sa.text(f"ALTER TABLE {target} ADD COLUMN {preparer.quote(fc.column)} {spelled} NULL"))
        with self.engine.connect() as conn:
            reflected = self._reflect(conn, table.schema, table.name, table.key)
        assert reflected is not None
        table.types, table.sql, table.casts = reflected.types, reflected.sql, reflected.casts
        table.nullable, table.required = reflected.nullable, reflected.required
