"""`headers:` Kafka record headers per table, static and from column values (docs/transforms.md).

A column header's value is the UTF-8 text of the column's value (numbers and dates as their text, booleans
`true`/`false`, bytes as hex); a null value leaves that header out. A delete's record and its tombstone
take the values of the old row (or of the key where the old row is unknown and the column is a key column).
A masked column cannot feed a header: its value would leave unmasked.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from liberator.errors import SchemaError
from liberator.schema import TableSchema

Headers = tuple[tuple[str, bytes], ...]


class HeaderRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    static: dict[str, str] = Field({}, description="headers with the same value on every record: {app: crm}")
    columns: dict[str, str] = Field(
        {}, description="headers from a column's value (the database's name), as UTF-8 text: {tenant: tenant_id}"
    )


def header_text(value: Any) -> bytes:
    if isinstance(value, bool):
        return b"true" if value else b"false"
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex().encode()
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat().encode()
    return str(value).encode()


class RecordHeaders:
    """The compiled `headers:` of one table version, over its published values (before masks)."""

    __slots__ = ("columns", "static")

    def __init__(self, name: str, shape: TableSchema, rule: HeaderRule, masked: Sequence[str]) -> None:
        names = [c.name for c in shape.columns]
        self.static: Headers = tuple((header, value.encode()) for header, value in rule.static.items())
        # (header, index in a row, index in the key or None)
        self.columns: tuple[tuple[str, int, int | None], ...] = ()
        for header, column in rule.columns.items():
            if column not in names:
                raise SchemaError(
                    f"table {name}: `headers.columns.{header}` names {column}, not a published column; "
                    f"choose one of {names}"
                )
            if column in masked:
                raise SchemaError(
                    f"table {name}: `headers.columns.{header}` names {column}, which is masked: its value would "
                    "leave unmasked in a header; take the header off or the mask"
                )
            key_at = shape.key.index(column) if column in shape.key else None
            self.columns += ((header, names.index(column), key_at),)

    def of(self, row: Sequence[Any] | None, key: Sequence[Any] | None = None) -> Headers:
        """The headers of a record of `row` (or, without a row, of what its key tells)."""
        out = list(self.static)
        for header, index, key_at in self.columns:
            if row is not None:
                value = row[index]
            elif key is not None and key_at is not None:
                value = key[key_at]
            else:
                continue
            if value is not None:
                out.append((header, header_text(value)))
        return tuple(out)
