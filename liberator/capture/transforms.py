"""The per-table transforms a CDC source's config declares (docs/transforms.md), one model for every
connector that captures named tables; the query source declares the same per table entry."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, field_validator

from liberator.capture.headers import HeaderRule
from liberator.capture.hooks import HookRule
from liberator.capture.masks import MaskRule
from liberator.capture.routes import RouteRule
from liberator.config import published_names


class TableTransforms(BaseModel):
    """Keys are tables as `tables` names them (schema.table, or database.table on MySQL)."""

    exclude: dict[str, list[str]] = Field(
        {}, description="columns left out of the events, per table: {schema.users: [password_hash]}"
    )
    include: dict[str, list[str]] = Field(
        {},
        description="the only columns published, per table (key columns always are; columns added later stay "
        "out until listed): {schema.users: [id, name]}",
    )
    mask: dict[str, dict[str, MaskRule]] = Field(
        {},
        description="column values hidden, per table: hash (SHA-256 with mask_salt), redact, null, "
        "{truncate: N}: {schema.users: {email: hash, note: {truncate: 20}}}",
    )
    mask_salt: str | None = Field(None, description="the secret salt of `hash` masks; use ${ENV} or ${file:...}")
    filter: dict[str, str] = Field(
        {},
        description="the rows published, per table, as an expression over its columns (and, or, not, "
        "comparisons, in; docs/transforms.md): {schema.orders: status != 'draft'}",
    )
    rename: dict[str, dict[str, str]] = Field(
        {}, description="columns published under another name, per table: {schema.users: {email: contact}}"
    )

    route: dict[str, RouteRule] = Field(
        {},
        description="the topic of a table's events, per table: {topic: template} or by a column's value "
        "{by: region, topics: {eu: orders.eu}, default: orders.other} (docs/transforms.md)",
    )
    headers: dict[str, HeaderRule] = Field(
        {}, description="Kafka record headers, per table: {static: {app: crm}, columns: {tenant: tenant_id}}"
    )
    hook: dict[str, HookRule] = Field(
        {},
        description="a Python function over each row change, per table: module:function or an entry point "
        "of liberator.transforms, or {function: ..., add: {field: type}, drop: [field]} (docs/transforms.md)",
    )

    @field_validator("rename")
    @classmethod
    def _published_names(cls, value: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        return {table: published_names(renames) for table, renames in value.items()}

    def transformed_tables(self) -> list[tuple[str, str]]:
        """(field, table) of every per-table entry, for connectors that check the tables are captured."""
        fields = ("exclude", "include", "mask", "filter", "rename", "route", "headers", "hook")
        return [(name, table) for name in fields for table in getattr(self, name)]

    def capture_settings(self) -> dict[str, Any]:
        """The CaptureSettings arguments of these transforms."""
        return {
            "exclude": self.exclude,
            "include": self.include,
            "mask": self.mask,
            "mask_salt": self.mask_salt,
            "filter": self.filter,
            "rename": self.rename,
            "route": self.route,
            "headers": self.headers,
            "hook": self.hook,
        }
