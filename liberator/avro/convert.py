"""Rows -> Avro datums: the hot path of every snapshot and change stream."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from liberator.avro.reasons import ConversionError, describe
from liberator.avro.schemas import column_field_names
from liberator.avro.values import Convert, converter_for
from liberator.errors import SchemaError
from liberator.schema import Column, TableSchema


class DatumError(SchemaError):
    """A value that the column's Avro type cannot hold exactly; the message names table, column, value."""


# field name, column name, class used as is, converter for anything else, nullable
_Plan = tuple[str, str, type, Convert, bool]


class DatumConverter:
    """Turns rows of one table (or of some of its columns) into datums of the matching record schema.

    Build it once per (table, columns); `convert` takes a mapping of column name -> value as the driver or
    SQLAlchemy returns it, `convert_values` the values in column order. Field names are those of
    `record_schema` for the same table, sanitised names included. (`Mapping[Any, Any]` so SQLAlchemy's
    RowMapping, keyed by names and Column objects alike, needs no copy.)
    """

    def __init__(self, table: TableSchema, columns: Sequence[Column] | None = None) -> None:
        self.table = table
        self.columns = tuple(table.columns if columns is None else columns)
        names = column_field_names(table, self.columns)
        plan: list[_Plan] = []
        for column in self.columns:
            exact, convert = converter_for(column.type, column.db_type)
            plan.append((names[column.name], column.name, exact, convert, column.nullable))
        self._plan = tuple(plan)
        self.field_names = tuple(p[0] for p in plan)

    @classmethod
    def for_key(cls, table: TableSchema) -> DatumConverter:
        return cls(table, table.key_columns)

    def convert(self, row: Mapping[Any, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        try:
            for field, name, exact, convert, nullable in self._plan:
                value = row[name]
                if value.__class__ is exact:
                    out[field] = value
                elif value is None:
                    if not nullable:
                        raise ConversionError("value is NULL but the column is NOT NULL")
                    out[field] = None
                else:
                    out[field] = convert(value)
        except KeyError:
            raise DatumError(f"table {self.table.qualified_name}: the row has no column {name!r}") from None
        except (ConversionError, ValueError, TypeError, ArithmeticError) as exc:
            raise self._error(name, value, exc) from None
        return out

    def convert_values(self, values: Sequence[Any]) -> dict[str, Any]:
        if len(values) != len(self._plan):
            raise DatumError(
                f"table {self.table.qualified_name}: got {len(values)} values for {len(self._plan)} columns"
            )
        out: dict[str, Any] = {}
        try:
            for entry, value in zip(self._plan, values, strict=True):
                field, name, exact, convert, nullable = entry
                if value.__class__ is exact:
                    out[field] = value
                elif value is None:
                    if not nullable:
                        raise ConversionError("value is NULL but the column is NOT NULL")
                    out[field] = None
                else:
                    out[field] = convert(value)
        except (ConversionError, ValueError, TypeError, ArithmeticError) as exc:
            raise self._error(name, value, exc) from None
        return out

    def _error(self, column: str, value: Any, exc: Exception) -> DatumError:
        reason = str(exc) if isinstance(exc, ConversionError) else f"{describe(value)}: {exc}"
        reason = " ".join(reason.split())  # one line, whatever the cause said
        return DatumError(f"table {self.table.qualified_name} column {column}: {reason}")
