"""Avro datums (as fastavro decodes them) -> the values each driver stores exactly: the inverse of
liberator/avro/values.py, so a row read by a source and written here reads back equal."""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from liberator.schema import ArrayType, BitsType, ColumnType, IntervalType, IntType, TimestampType
from liberator.sinks.sql.columns import Kind
from liberator.sinks.sql.records import BadRecord

ToColumn = Callable[[Any], Any]
RowOf = Callable[[dict[str, Any]], tuple[Any, ...]]

_SQLITE_TIMESTAMP = "%Y-%m-%d %H:%M:%S.%f"  # SQLAlchemy's SQLite DATETIME storage format
_SQLITE_TIME = "%H:%M:%S.%f"


def _identity(value: Any) -> Any:
    return value


def jsonable(value: Any) -> Any:
    """Datums -> JSON values: decimals as strings (exact), times ISO 8601, bytes base64."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, decimal.Decimal):
        return format(value, "f")
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def _json_text(value: Any) -> str:
    return json.dumps(jsonable(value), separators=(",", ":"), ensure_ascii=False)


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_EPOCH_NAIVE = dt.datetime(1970, 1, 1)


def _naive_utc(value: dt.datetime) -> dt.datetime:
    # The UTC reading without its zone; the same as astimezone(UTC).replace(tzinfo=None), a fraction of the cost
    return _EPOCH_NAIVE + (value - _EPOCH) if value.tzinfo is not None else value


def interval_text(value: dict[str, int]) -> str:
    """PostgreSQL interval input keeping months, days and microseconds apart."""
    return f"{value['months']} mons {value['days']} days {value['micros']} microseconds"


def _pg_element(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        text = "t" if value else "f"
    elif isinstance(value, decimal.Decimal):
        text = format(value, "f")
    elif isinstance(value, dt.datetime | dt.date | dt.time):
        text = value.isoformat()
    elif isinstance(value, bytes):
        text = "\\x" + value.hex()
    elif isinstance(value, dict):
        text = interval_text(value)
    else:
        text = str(value)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def pg_array_literal(items: list[Any]) -> str:
    """A one-dimensional PostgreSQL array literal; every element quoted, so any element type casts."""
    return "{" + ",".join(_pg_element(i) for i in items) + "}"


def mysql_time_text(micros: int) -> str:
    """MySQL TIME input for signed microseconds (pymysql's own timedelta literal gets negative spans wrong:
    -1 s becomes '-1:59:59')."""
    sign = "-" if micros < 0 else ""
    seconds, fraction = divmod(abs(micros), 1_000_000)
    minutes, second = divmod(seconds, 60)
    hours, minute = divmod(minutes, 60)
    return f"{sign}{hours:02d}:{minute:02d}:{second:02d}.{fraction:06d}"


def to_column(kind: Kind, dialect: str, target: ColumnType | None) -> ToColumn:
    """The converter for one field into one column of `dialect` (`target`: the column's neutral type)."""
    k = kind.name
    pg = dialect == "postgresql"
    my = dialect in ("mysql", "mariadb")
    lite = dialect == "sqlite"
    if k == "decimal":
        if isinstance(target, IntType):
            return int
        return (lambda v: format(v, "f")) if lite or not (pg or my) else _identity
    if k == "numeric":
        return decimal.Decimal if my else _identity
    if k == "date":
        return (lambda v: v.isoformat()) if lite else _identity
    if k == "time":
        return (lambda v: v.strftime(_SQLITE_TIME)) if lite else _identity
    if k == "duration":  # signed microseconds: MySQL TIME text, elsewhere the number
        return mysql_time_text if my else _identity
    if k in ("timestamp", "local_timestamp"):
        if lite:
            return lambda v: _naive_utc(v).strftime(_SQLITE_TIMESTAMP)
        if pg and isinstance(target, TimestampType) and target.with_timezone:
            return lambda v: v if v.tzinfo is not None else v.replace(tzinfo=dt.UTC)
        return _naive_utc  # wall-clock columns; MySQL sessions run in UTC, so TIMESTAMP takes UTC too
    if k == "uuid":
        return _identity if pg else str
    if k == "set":
        if isinstance(target, ArrayType):
            return pg_array_literal
        return ",".join
    if k == "bits":
        if my or isinstance(target, IntType):
            return lambda v: int(v, 2) if v else 0
        return _identity
    if k == "interval":
        return interval_text if isinstance(target, IntervalType) or (pg and target is None) else _json_text
    if k == "array":
        if isinstance(target, ArrayType) or (pg and target is None):
            return pg_array_literal
        return _json_text
    if k in ("record", "map"):
        return _json_text
    if k == "boolean" and isinstance(target, BitsType):
        return lambda v: "1" if v else "0"
    return _identity


def row_function(fields: Sequence[tuple[str, str, ToColumn]]) -> RowOf:
    """``row(datum) -> values``: the value of each (field, column, converter) of a record datum, converted (None
    stays None), by one generated function; a value that does not fit its column raises BadRecord naming both."""
    names: dict[str, Any] = {}
    lines = ["def row(d):", "    try:"]
    values = []
    for i, (field, _column, convert) in enumerate(fields):
        names[f"_f{i}"] = field
        if convert is _identity:
            values.append(f"d.get(_f{i})")
            continue
        names[f"_c{i}"] = convert
        lines.append(f"        v{i} = d.get(_f{i})")
        values.append(f"None if v{i} is None else _c{i}(v{i})")
    lines.append("        return (" + "".join(f"{v}, " for v in values) + ")")
    lines.append("    except Exception:")
    lines.append("        pass")
    lines.append("    return _slow(d)")

    def slow(datum: dict[str, Any]) -> tuple[Any, ...]:
        """The reference loop: the same values, or the error naming the field that did not fit."""
        out = []
        for field, column, convert in fields:
            value = datum.get(field)
            try:
                out.append(None if value is None else convert(value))
            except (ValueError, TypeError, ArithmeticError, KeyError, AttributeError) as exc:
                raise BadRecord(f"field {field}: the value does not fit column {column} ({exc})") from None
        return tuple(out)

    names["_slow"] = slow
    exec(compile("\n".join(lines) + "\n", "<row_function>", "exec"), names)
    row: RowOf = names["row"]
    return row


__all__ = ["RowOf", "ToColumn", "interval_text", "jsonable", "pg_array_literal", "row_function", "to_column"]
