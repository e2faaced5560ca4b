"""Column masks: values hidden before they leave the database's host (the book's data-liberation rule: do
not publish the internal model as is), declared per table, applied in the capture core to every image
of a row (snapshot, stream, before and after) and reflected in its schema, so the registry checks what
consumers get.

- `hash`: the SHA-256 of the source's `mask_salt` and the value, as 64 hex digits (joins still work: equal
  values hash equal; the salt keeps dictionary attacks out), text columns only;
- `redact`: the text `***`, text columns only;
- `{truncate: N}`: the first N characters, text columns only;
- `null`: always null (the column becomes nullable), any non-key column.
Key columns cannot be masked: the key is the event's identity.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from liberator.errors import SchemaError
from liberator.schema import StringType, TableSchema

REDACTED = "***"


class TruncateMask(BaseModel):
    model_config = ConfigDict(extra="forbid")
    truncate: int = Field(ge=1, description="keep the first N characters")


MaskRule = Literal["hash", "redact", "null"] | TruncateMask

Masker = Callable[[Sequence[Any]], list[Any]]


def masked(
    name: str, shape: TableSchema, masks: Mapping[str, MaskRule], salt: str | None
) -> tuple[TableSchema, Masker | None]:
    """(the published shape with the masked columns' types, the function masking a row's values) for
    `masks` ({column: rule}, by the database's column names, in `shape`'s column order)."""
    if not masks:
        return shape, None
    names = [c.name for c in shape.columns]
    unknown = sorted(set(masks) - set(names))
    if unknown:
        raise SchemaError(f"table {name}: `mask` names columns that are not published: {unknown}")
    keyed = sorted(set(masks) & set(shape.key))
    if keyed:
        raise SchemaError(f"table {name}: key columns cannot be masked ({keyed}): the key is the event's identity")
    columns = list(shape.columns)
    steps: list[tuple[int, Callable[[Any], Any]]] = []
    for index, column in enumerate(shape.columns):
        rule = masks.get(column.name)
        if rule is None:
            continue
        if rule == "null":
            columns[index] = dataclasses.replace(column, nullable=True)
            steps.append((index, _to_null))
            continue
        if not isinstance(column.type, StringType):
            raise SchemaError(
                f"table {name}: column {column.name} ({column.db_type or type(column.type).__name__}) cannot be "
                f"masked with {_rule_name(rule)}, which applies to text columns; use null, or exclude it"
            )
        if rule == "hash":
            if not salt:
                raise SchemaError(f"table {name}: mask {column.name}: hash needs the source's `mask_salt` (a secret)")
            columns[index] = dataclasses.replace(column, type=StringType())
            steps.append((index, _hasher(salt)))
        elif rule == "redact":
            columns[index] = dataclasses.replace(column, type=StringType())
            steps.append((index, _redact))
        else:
            assert isinstance(rule, TruncateMask)
            size = rule.truncate
            length = column.type.length
            columns[index] = dataclasses.replace(
                column,
                type=StringType(
                    size if length is None else min(size, length),
                ),
            )
            steps.append((index, functools.partial(_truncated, size)))
    published = TableSchema(shape.schema, shape.name, tuple(columns), shape.key)

    def mask(values: Sequence[Any]) -> list[Any]:
        row = list(values)
        for index, step in steps:
            value = row[index]
            if value is not None:
                row[index] = step(value)
        return row

    return published, mask


def _truncated(size: int, value: Any) -> Any:
    return value[:size]


def _to_null(_value: Any) -> None:
    return None


def _redact(_value: Any) -> str:
    return REDACTED


def _hasher(salt: str) -> Callable[[Any], str]:
    prefix = hashlib.sha256(salt.encode())

    def digest(value: Any) -> str:
        h = prefix.copy()
        h.update(str(value).encode())
        return h.hexdigest()

    return digest


def _rule_name(rule: MaskRule) -> str:
    return f"truncate: {rule.truncate}" if isinstance(rule, TruncateMask) else rule
