"""Avro names: sanitising column names into field names and parts into namespaces.

Avro names match ``[A-Za-z_][A-Za-z0-9_]*``. A column whose name does not is renamed: every invalid
character becomes ``_`` and a leading digit gets a ``_`` prefix. Names that are already valid never change,
so a valid column keeps its name whatever its neighbours are called; renamed columns that collide with a
taken name get ``_2``, ``_3``, ... in column order. The original name is kept in the field property
``liberator.column``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_VALID = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_INVALID_CHAR = re.compile(r"[^A-Za-z0-9_]")


def is_valid_name(name: str) -> bool:
    return _VALID.match(name) is not None


def sanitize_name(name: str) -> str:
    """The Avro name a database name becomes (without collision handling)."""
    if is_valid_name(name):
        return name
    cleaned = _INVALID_CHAR.sub("_", name)
    if not cleaned or cleaned[0].isdigit():
        cleaned = "_" + cleaned
    return cleaned


def namespace_for(*parts: str) -> str:
    """A valid Avro namespace from parts such as ("liberator", "shop", "public").

    A part may itself be dotted ("shop.public"): each dot-separated component is sanitised on its own and
    empty components are dropped.
    """
    components = [sanitize_name(c) for part in parts for c in part.split(".") if c]
    return ".".join(components)


def field_names(column_names: Iterable[str]) -> dict[str, str]:
    """Column name -> unique Avro field name, deterministic in column order."""
    names = list(column_names)
    taken = {n for n in names if is_valid_name(n)}
    result: dict[str, str] = {}
    for name in names:
        if is_valid_name(name):
            result[name] = name
            continue
        base = sanitize_name(name)
        candidate, n = base, 1
        while candidate in taken:
            n += 1
            candidate = f"{base}_{n}"
        taken.add(candidate)
        result[name] = candidate
    return result
