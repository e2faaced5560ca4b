"""`hook:` a Python function that receives each row change of a table and returns what to publish, for what
the declarative transforms cannot do (docs/transforms.md#python-hooks).

The contract (public, stable): the function takes a `Change` and returns

- the same `Change`, or a changed copy (`dataclasses.replace(change, after={...})`);
- `None`: nothing is published for it;
- a list of `Change`s: each is published, in order (all of the same table).

It runs after the declarative transforms (it sees masked values under their published names, only rows
the filter passed) and before the schemas are made, so a hook that adds or removes fields declares them
(`add: {field: type}`, `drop: [field]`): the table's schemas are made from that output shape, checked at
start, and every returned row must have exactly its fields. A hook is named `module:function` or by an
entry point in the group `liberator.transforms`, resolved when the config is loaded. Whatever it raises
stops the source with a `HookError` naming the hook and the table.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from liberator.capture.changes import Op, RowChange
from liberator.capture.masks import Masker
from liberator.errors import SchemaError, TransformError, one_line
from liberator.schema import (
    BoolType,
    BytesType,
    Column,
    ColumnType,
    DateType,
    FloatType,
    IntType,
    JsonType,
    StringType,
    TableSchema,
    TimestampType,
)

ENTRY_POINT_GROUP = "liberator.transforms"

FieldType = Literal["string", "int", "long", "double", "boolean", "bytes", "date", "timestamp", "json"]
_FIELD_TYPES: dict[str, ColumnType] = {
    "string": StringType(),
    "int": IntType(32),
    "long": IntType(64),
    "double": FloatType(64),
    "boolean": BoolType(),
    "bytes": BytesType(),
    "date": DateType(),
    "timestamp": TimestampType(with_timezone=True),
    "json": JsonType(),
}


@dataclass(frozen=True, slots=True)
class Change:
    """One row change as a hook sees it.

    `table`: schema.table (database.table on MySQL); `op`: "c" create, "u" update, "d" delete, "r" a snapshot
    read; `before`/`after`: the old and new row by published field name (None where there is none: `before`
    of a create, an update without old rows, `after` of a delete); `key`: the key fields of the row before the
    change (of the new row for creates and reads).
    """

    table: str
    op: str
    before: Mapping[str, Any] | None
    after: Mapping[str, Any] | None
    key: Mapping[str, Any]


HookResult = Change | Sequence[Change] | None
Hook = Callable[[Change], HookResult]


class HookError(TransformError):
    """A hook raised, or returned what the contract does not allow."""


def resolve_hook(spec: str) -> Hook:
    """The function `spec` names (`module:function`, or an entry point of `liberator.transforms`); ValueError
    with one line saying what is missing."""
    if ":" in spec:
        module_name, _, attribute = spec.partition(":")
        try:
            found: Any = importlib.import_module(module_name)
        except ImportError as exc:
            raise ValueError(f"hook {spec!r}: cannot import module {module_name!r} ({exc})") from None
        for part in attribute.split("."):
            if not hasattr(found, part):
                raise ValueError(f"hook {spec!r}: module {module_name!r} has no {attribute!r}")
            found = getattr(found, part)
    else:
        points = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP, name=spec)
        if not points:
            known = sorted(p.name for p in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))
            raise ValueError(
                f"hook {spec!r}: no entry point of that name in group {ENTRY_POINT_GROUP} (installed: "
                f"{', '.join(known) or 'none'}); write module:function, or install the package that provides it"
            )
        try:
            found = next(iter(points)).load()
        except Exception as exc:
            raise ValueError(f"hook {spec!r}: its entry point does not load: {one_line(exc)}") from None
    if not callable(found):
        raise ValueError(f"hook {spec!r} is not a function (a {type(found).__name__})")
    return found  # type: ignore[no-any-return]


class HookRule(BaseModel):
    """A hook and the fields it adds to or removes from the published row."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    function: str = Field(description="module:function, or the name of an entry point in group liberator.transforms")
    add: dict[str, FieldType] = Field(
        {},
        description="fields the hook adds, with their type (string int long double boolean bytes date "
        "timestamp json; nullable): {total_cents: long}",
    )
    drop: list[str] = Field([], description="published fields the hook removes (not key fields)")

    @model_validator(mode="before")
    @classmethod
    def _just_the_function(cls, data: Any) -> Any:
        return {"function": data} if isinstance(data, str) else data

    @field_validator("function")
    @classmethod
    def _resolvable(cls, value: str) -> str:
        resolve_hook(value)
        return value


class HookStage:
    """One table version's hook: turns its changes into the hook's, in the output shape."""

    __slots__ = ("function", "input_names", "key_index", "mask", "name", "output", "output_key", "output_names", "spec")

    def __init__(self, name: str, published: TableSchema, rule: HookRule, mask: Masker | None) -> None:
        self.name = name
        self.spec = rule.function
        self.function = resolve_hook(rule.function)
        self.mask = mask
        self.input_names = [c.name for c in published.columns]
        unknown = sorted(set(rule.drop) - set(self.input_names))
        if unknown:
            raise SchemaError(f"table {name}: `hook.drop` names fields that are not published: {unknown}")
        if set(rule.drop) & set(published.key):
            raise SchemaError(
                f"table {name}: `hook.drop` cannot remove key fields {sorted(set(rule.drop) & set(published.key))}"
            )
        kept = [c for c in published.columns if c.name not in rule.drop]
        clash = sorted(set(rule.add) & {c.name for c in kept})
        if clash:
            raise SchemaError(f"table {name}: `hook.add` names fields that are already published: {clash}")
        added = [Column(field, _FIELD_TYPES[kind], True, kind) for field, kind in rule.add.items()]
        self.output = TableSchema(published.schema, published.name, tuple(kept + added), published.key)
        self.output_names = [c.name for c in self.output.columns]
        self.output_key = published.key
        self.key_index = tuple(self.input_names.index(k) for k in published.key)

    def apply(self, item: RowChange) -> list[RowChange]:
        """The hook's changes for `item` (values in the table's published order, unmasked)."""
        before, after = item.before, item.after
        if self.mask is not None:
            before = None if before is None else self.mask(before)
            after = None if after is None else self.mask(after)
        names = self.input_names
        if item.key is not None:
            key = dict(zip(self.output_key, item.key, strict=True))
        else:
            image = before if before is not None and item.op is not Op.create else after
            assert image is not None
            key = {names[i]: image[i] for i in self.key_index}
        change = Change(
            self.name,
            item.op.value,
            None if before is None else dict(zip(names, before, strict=True)),
            None if after is None else dict(zip(names, after, strict=True)),
            key,
        )
        try:
            result = self.function(change)
        except Exception as exc:
            raise HookError(
                f"hook {self.spec} failed on a change of table {self.name}: {type(exc).__name__}: {one_line(exc)}"
            ) from None
        if result is None:
            return []
        if isinstance(result, Change):
            return [self._row_change(item, result)]
        if isinstance(result, list | tuple):
            return [self._row_change(item, out) for out in result]
        raise self._refused(f"returned a {type(result).__name__}; return a Change, a list of them, or None")

    def _row_change(self, item: RowChange, out: Any) -> RowChange:
        if not isinstance(out, Change):
            raise self._refused(f"returned a {type(out).__name__} in its list; return Changes")
        if out.table != self.name:
            raise self._refused(f"returned a change of table {out.table!r}; a hook changes rows of its own table")
        try:
            op = Op(out.op)
        except ValueError:
            raise self._refused(f"returned op {out.op!r}; use c, u, d or r") from None
        before, after = self._values(out.before, "before"), self._values(out.after, "after")
        if (after is None) != (op is Op.delete) or op is Op.truncate:
            raise self._refused(f"returned op {out.op!r} with after={'none' if after is None else 'a row'}")
        key = None
        if before is None and op in (Op.update, Op.delete):
            try:
                key = [out.key[k] for k in self.output_key]
            except KeyError as missing:
                raise self._refused(f"returned a key without field {missing}") from None
        return RowChange(item.table, op, item.txn, before, after, key, item.headers)

    def _values(self, row: Mapping[str, Any] | None, which: str) -> list[Any] | None:
        if row is None:
            return None
        try:
            values = [row[n] for n in self.output_names]
        except KeyError as missing:
            raise self._refused(
                f"returned a row ({which}) without field {missing}; a field it removes belongs in `hook.drop`"
            ) from None
        if len(row) != len(values):
            extra = sorted(set(row) - set(self.output_names))
            raise self._refused(f"returned fields it does not declare {extra} ({which}); declare them in `hook.add`")
        return values

    def _refused(self, what: str) -> HookError:
        return HookError(f"hook {self.spec} on table {self.name} {what}")
