"""PostgreSQL text forms psycopg leaves to us: intervals, arrays of types it does not know, ranges.

psycopg's default interval loader returns a timedelta that folds months into 30-day days; a connector
that wants exact intervals loads them as text (IntervalStyle 'postgres', the server default) and
`parse_pg_interval` splits them exactly. Arrays of enums (and of other types psycopg has no loader for)
arrive as array literals such as '{happy,"very sad",NULL}'. Ranges come as objects; `pg_range_text`
writes the text PostgreSQL accepts back.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import Any

from liberator.avro.reasons import ConversionError, describe

_PG_INTERVAL = re.compile(
    r"\s*(?:(?P<years>[+-]?\d+) years?\s*)?(?:(?P<mons>[+-]?\d+) mons?\s*)?(?:(?P<days>[+-]?\d+) days?\s*)?"
    r"(?:(?P<sign>[+-])?(?P<h>\d+):(?P<m>\d\d):(?P<s>\d\d)(?:\.(?P<frac>\d{1,6}))?)?\s*\Z"
)


def parse_pg_interval(text: str) -> dict[str, int]:
    """PostgreSQL's interval text (IntervalStyle 'postgres') -> {months, days, micros}."""
    match = _PG_INTERVAL.match(text)
    if not match or not text.strip():
        raise ConversionError(f"{describe(text)} is not an interval in PostgreSQL's 'postgres' style")
    g = match.groupdict()
    micros = 0
    if g["h"] is not None:
        seconds = int(g["h"]) * 3600 + int(g["m"]) * 60 + int(g["s"])
        micros = seconds * 1_000_000 + int((g["frac"] or "").ljust(6, "0"))
        if g["sign"] == "-":
            micros = -micros
    return {
        "months": int(g["years"] or 0) * 12 + int(g["mons"] or 0),
        "days": int(g["days"] or 0),
        "micros": micros,
    }


def parse_pg_array(text: str) -> list[str | None]:
    """A one-dimensional PostgreSQL array literal -> its elements as text (None for NULL)."""
    if len(text) < 2 or text[0] != "{" or text[-1] != "}":
        raise ConversionError(f"{describe(text)} is not a PostgreSQL array literal")
    body, i = text[1:-1], 0
    items: list[str | None] = []
    if not body:
        return []
    while True:
        if body.startswith('"', i):
            chars: list[str] = []
            i += 1
            while i < len(body) and body[i] != '"':
                if body[i] == "\\":
                    i += 1
                chars.append(body[i : i + 1])
                i += 1
            if i >= len(body):
                raise ConversionError(f"{describe(text)} has an unterminated quoted element")
            items.append("".join(chars))
            i += 1
        elif body.startswith("{", i):
            raise ConversionError(f"{describe(text)} is a multi-dimensional array; cast it in a `query:`")
        else:
            end = body.find(",", i)
            raw = body[i:] if end < 0 else body[i:end]
            items.append(None if raw.upper() == "NULL" else raw)
            i = len(body) if end < 0 else end
        if i == len(body):
            return items
        if body[i] != ",":
            raise ConversionError(f"{describe(text)} is not a PostgreSQL array literal")
        i += 1


_NEEDS_QUOTES = re.compile(r'[\s,()\[\]"\\]')


def _bound(value: Any) -> str:
    if value is None:
        return ""  # unbounded
    if isinstance(value, datetime):
        text = value.isoformat(sep=" ")
    elif isinstance(value, Decimal):
        text = format(value, "f")
    else:
        text = str(value)
    if _NEEDS_QUOTES.search(text) or not text:
        text = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


def is_range(value: Any) -> bool:
    """psycopg's and SQLAlchemy's Range objects alike."""
    return hasattr(value, "isempty") and hasattr(value, "bounds") and hasattr(value, "lower")


def pg_range_text(value: Any) -> str:
    """A range (or a multirange: a sequence of ranges) as PostgreSQL writes it: '[1,10)', 'empty', '{}'."""
    if is_range(value):
        if value.isempty:
            return "empty"
        bounds = value.bounds or "[)"
        return f"{bounds[0]}{_bound(value.lower)},{_bound(value.upper)}{bounds[1]}"
    return "{" + ",".join(pg_range_text(r) for r in value) + "}"
