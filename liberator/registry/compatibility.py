"""Avro schema parsing, canonical form and Confluent-style compatibility checks.

The verdict comes from ``avro.compatibility.ReaderWriterCompatibilityChecker`` (a port of Java Avro's
``SchemaCompatibility``, which is what Confluent's registry uses), with two gaps filled around it:

* it ignores logical types, so ``decimal(10,2)`` -> ``decimal(12,2)`` or ``timestamp-millis`` ->
  ``timestamp-micros`` passed as compatible although every value would be read wrongly
  (:class:`_LogicalTypeAwareChecker` adds that check at every node of the walk);
* its result keeps messages and locations in separate sets, so with more than one problem they cannot
  be paired, and the messages themselves are terse (a bare field name, ``{'B'}``).  :func:`_explain`
  walks the two schemas using the checker as the oracle and writes one readable sentence per problem.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import avro.constants
import avro.errors
import avro.schema
from avro.compatibility import (
    ReaderWriterCompatibilityChecker,
    SchemaCompatibilityResult,
    SchemaCompatibilityType,
    SchemaIncompatibilityType,
    incompatible,
    lookup_writer_field,
    merge,
    schema_name_equals,
)

from liberator.errors import one_line

COMPATIBILITY_LEVELS = (
    "BACKWARD",
    "BACKWARD_TRANSITIVE",
    "FORWARD",
    "FORWARD_TRANSITIVE",
    "FULL",
    "FULL_TRANSITIVE",
    "NONE",
)
DEFAULT_LEVEL = "BACKWARD"
SUPPORTED_SCHEMA_TYPES = ("AVRO",)

# avro warns on every unknown or invalid logical type; unknown ones are legal (readers ignore them)
# and invalid decimals are rejected by _validate, so the warnings would only be noise in the log.
warnings.filterwarnings("ignore", category=avro.errors.IgnoredLogicalType)

_NAMED = ("record", "error", "enum", "fixed")
# avro's Schema base class declares none of the per-type attributes (fields, symbols, items, ...);
# the walks below dispatch on ``.type`` instead of isinstance, so nodes are typed loosely.
_Node = Any

_INT_RANGE = (-(2**31), 2**31 - 1)
_LONG_RANGE = (-(2**63), 2**63 - 1)


class InvalidSchemaError(ValueError):
    """The schema text is not a schema this registry accepts (HTTP 422, error code 42201)."""


@dataclass(frozen=True)
class ParsedSchema:
    schema: avro.schema.Schema
    canonical: str


def normalize_level(level: object) -> str:
    """Upper-cased level name; ValueError if it is not one of :data:`COMPATIBILITY_LEVELS`."""
    if isinstance(level, str) and level.upper() in COMPATIBILITY_LEVELS:
        return level.upper()
    raise ValueError(
        f"Invalid compatibility level {level!r}. Valid values are none, backward, forward, full, "
        "backward_transitive, forward_transitive, and full_transitive"
    )


def parse_schema(schema_str: object, schema_type: object = None, references: object = None) -> ParsedSchema:
    """Parse and validate one schema as sent to the REST API; raises :class:`InvalidSchemaError`."""
    if schema_type is not None and schema_type != "AVRO":
        raise InvalidSchemaError(
            f"schemaType {schema_type!r} is not supported: liberator's embedded registry stores only AVRO "
            "schemas; use a Confluent registry for JSON or PROTOBUF"
        )
    if references:
        # Resolving references would make ids depend on other subjects' versions; liberator never
        # emits them, so refuse clearly instead of storing a schema we cannot check.
        raise InvalidSchemaError(
            "schema references are not supported by liberator's embedded registry; inline the "
            "referenced named types into the schema"
        )
    if not isinstance(schema_str, str) or not schema_str.strip():
        raise InvalidSchemaError("Empty schema")
    return _parse_text(schema_str)


@lru_cache(maxsize=512)
def _parse_text(schema_str: str) -> ParsedSchema:
    # Cached because compatibility checks re-parse every stored version on each registration.
    try:
        parsed = avro.schema.parse(schema_str)
    except (avro.errors.AvroException, TypeError, ValueError, AttributeError, KeyError) as e:
        raise InvalidSchemaError(f"Invalid schema: {one_line(str(e))}") from e
    _validate(parsed, "", set())
    # The stored form is built from the submitted JSON, not avro's to_json(): that one writes a named
    # fixed decimal out in full at every use, which makes a text that does not parse again.
    canonical = json.dumps(_ordered(json.loads(schema_str)), separators=(",", ":"), ensure_ascii=False)
    return ParsedSchema(parsed, canonical)


# Key order of the stored form, so one schema spelled with other key order or whitespace gets the same
# id, and what clients read back is laid out the way Java Avro prints schemas.
_SCHEMA_KEYS = ("type", "name", "namespace", "doc", "aliases", "fields", "symbols", "default", "items")
_SCHEMA_KEYS2 = ("values", "size", "logicalType", "precision", "scale")
_FIELD_KEYS = ("name", "type", "doc", "default", "order", "aliases")


def _ordered(node: Any, is_field: bool = False) -> Any:
    if isinstance(node, list):
        return [_ordered(item) for item in node]
    if not isinstance(node, dict):
        return node
    if not is_field and node.keys() == {"type"} and node["type"] in avro.constants.PRIMITIVE_TYPES:
        return node["type"]  # {"type": "int"} is "int"
    preferred = _FIELD_KEYS if is_field else _SCHEMA_KEYS + _SCHEMA_KEYS2
    keys = [k for k in preferred if k in node] + sorted(k for k in node if k not in preferred)
    out: dict[str, Any] = {}
    for key in keys:
        value = node[key]
        if key == "default":
            out[key] = value  # a default is data, not schema: leave it exactly as given
        elif key == "fields" and isinstance(value, list):
            out[key] = [_ordered(f, is_field=True) for f in value]
        else:
            out[key] = _ordered(value)
    return out


def _validate(schema: _Node, path: str, seen: set[int]) -> None:
    """Checks avro's parser skips: defaults (Java Avro rejects bad ones) and decimal parameters."""
    if id(schema) in seen:
        return
    seen.add(id(schema))
    if schema.props.get("logicalType") == "decimal" and getattr(schema, "logical_type", None) != "decimal":
        # avro only warns and falls back to plain bytes/fixed; silently losing the scale would
        # corrupt every value, so refuse.
        raise InvalidSchemaError(
            f"Invalid schema: decimal at {_where(path)} needs 0 < precision and 0 <= scale <= precision "
            f"(and a fixed size large enough), got {json.dumps(schema.to_json())}"
        )
    if isinstance(schema, avro.schema.RecordSchema):
        for field in schema.fields:
            sub = f"{path}.{field.name}" if path else field.name
            if field.has_default and not _default_ok(field.type, field.default):
                raise InvalidSchemaError(
                    f"Invalid default for field {sub}: {json.dumps(field.default)} is not a valid {_label(field.type)}"
                )
            _validate(field.type, sub, seen)
    for child in _children(schema):
        _validate(child, path, seen)


def _children(schema: _Node) -> Iterator[_Node]:
    if isinstance(schema, avro.schema.ArraySchema):
        yield schema.items
    elif isinstance(schema, avro.schema.MapSchema):
        yield schema.values
    elif isinstance(schema, avro.schema.UnionSchema):
        yield from schema.schemas


def _default_ok(schema: _Node, value: Any) -> bool:
    """Whether a JSON default fits the schema, with the rules of Java Avro's ``isValidDefault``."""
    t = schema.type
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if t == "null":
        return value is None
    if t == "boolean":
        return isinstance(value, bool)
    if t in ("int", "long"):
        low, high = _INT_RANGE if t == "int" else _LONG_RANGE
        return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
    if t in ("float", "double"):
        return number
    if t in ("bytes", "string"):
        return isinstance(value, str)
    if t == "fixed":
        return isinstance(value, str) and len(value) == schema.size
    if t == "enum":
        return isinstance(value, str) and value in schema.symbols
    if t == "array":
        return isinstance(value, list) and all(_default_ok(schema.items, v) for v in value)
    if t == "map":
        return isinstance(value, dict) and all(_default_ok(schema.values, v) for v in value.values())
    if t in ("record", "error"):
        if not isinstance(value, dict):
            return False
        return all(_default_ok(f.type, value[f.name]) if f.name in value else f.has_default for f in schema.fields)
    if t == "union":
        # The spec says the first branch; Java Avro (and so Confluent) accepts any branch.
        return any(_default_ok(branch, value) for branch in schema.schemas)
    return False


# --- compatibility -----------------------------------------------------------------------------


def _logical(schema: _Node) -> str | None:
    """Logical type as avro understood it (unknown ones are ignored, as the spec requires)."""
    name = getattr(schema, "logical_type", None)
    if name == "decimal":
        return f"decimal({schema.precision},{schema.scale})"
    return name if isinstance(name, str) else None


def _logical_problem(reader: _Node, writer: _Node) -> str | None:
    r, w = _logical(reader), _logical(writer)
    if r == w:
        return None
    if r is not None and w is not None:
        return f"logical type {r} cannot read {w}"
    # A plain long read as timestamp-millis (or back) keeps every value; bytes read with a decimal
    # scale (or decimal read as raw bytes) does not.
    if (r or w or "").startswith("decimal"):
        return f"{r or reader.type} cannot read {w or writer.type}"
    return None


class _LogicalTypeAwareChecker(ReaderWriterCompatibilityChecker):
    """avro's checker plus the logical-type rule it lacks (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]

    def calculate_compatibility(
        self, reader: avro.schema.Schema, writer: avro.schema.Schema, location: list[str]
    ) -> SchemaCompatibilityResult:
        result: SchemaCompatibilityResult = super().calculate_compatibility(reader, writer, location)
        if result.compatibility is SchemaCompatibilityType.compatible and "union" not in (
            reader.type,
            writer.type,
        ):
            problem = _logical_problem(reader, writer)
            if problem is not None:
                return merge(result, incompatible(SchemaIncompatibilityType.type_mismatch, problem, location))
        return result


def can_read(reader: avro.schema.Schema, writer: avro.schema.Schema) -> bool:
    """Whether data written with ``writer`` can be read with ``reader``."""
    result = _LogicalTypeAwareChecker().get_compatibility(reader, writer)
    return result.compatibility is SchemaCompatibilityType.compatible


def reader_writer_problems(
    reader: avro.schema.Schema,
    writer: avro.schema.Schema,
    reader_role: str = "the reader schema",
    writer_role: str = "the writer schema",
) -> list[str]:
    """One readable sentence per reason ``reader`` cannot read ``writer``'s data; [] if it can."""
    checker = _LogicalTypeAwareChecker()
    top = checker.get_compatibility(reader, writer)
    if top.compatibility is SchemaCompatibilityType.compatible:
        return []
    out: list[str] = []
    _explain(checker, reader, writer, "", (reader_role, writer_role), out, set())
    if not out:  # the walk below should always find the cause; never hide an incompatibility
        out = [f"{reader_role} cannot read {writer_role}: {m}" for m in sorted(top.messages)]
    return list(dict.fromkeys(out))


def _explain(
    checker: _LogicalTypeAwareChecker,
    reader: _Node,
    writer: _Node,
    path: str,
    roles: tuple[str, str],
    out: list[str],
    seen: set[tuple[int, int]],
) -> None:
    if checker.get_compatibility(reader, writer).compatibility is SchemaCompatibilityType.compatible:
        return
    if (id(reader), id(writer)) in seen:  # recursive types: each pair is explained once
        return
    seen.add((id(reader), id(writer)))
    rrole, wrole = roles
    where = _where(path)
    if writer.type == "union":
        for branch in writer.schemas:
            _explain(checker, reader, branch, path, roles, out, seen)
        return
    if reader.type == "union":
        # Point at the branch meant to take the value, if there is exactly one, for a precise reason.
        same = [b for b in reader.schemas if b.type == writer.type and _same_name(b, writer)]
        if len(same) == 1:
            _explain(checker, same[0], writer, path, roles, out, seen)
        else:
            out.append(f"{rrole} has no union branch at {where} that can read {_label(writer)} from {wrole}")
        return
    if reader.type != writer.type and not can_read(_strip_logical(reader), _strip_logical(writer)):
        out.append(f"{rrole} reads {where} as {_label(reader)} but {wrole} writes {_label(writer)}")
        return
    if reader.type in _NAMED and not schema_name_equals(reader, writer):
        out.append(
            f"{rrole} names the {reader.type} at {where} '{reader.fullname}' but {wrole} calls it "
            f"'{writer.fullname}'; keep the name or add the old one as an alias"
        )
    if reader.type == "fixed" and reader.size != writer.size:
        out.append(f"fixed at {where} has size {reader.size} in {rrole} but {writer.size} in {wrole}")
    if reader.type == "enum":
        missing = [s for s in writer.symbols if s not in reader.symbols]
        if missing and reader.props.get("default") not in reader.symbols:
            out.append(
                f"enum {reader.name} at {where} in {rrole} lacks symbol(s) {', '.join(missing)} that "
                f"{wrole} can write; keep them or give the enum a default symbol"
            )
    if reader.type in ("record", "error"):
        for field in reader.fields:
            sub = f"{path}.{field.name}" if path else field.name
            wfield = lookup_writer_field(writer_schema=writer, reader_field=field)
            if wfield is None:
                if not field.has_default:
                    out.append(f"field {sub} is in {rrole} but not in {wrole} and has no default; add a default")
            else:
                _explain(checker, field.type, wfield.type, sub, roles, out, seen)
    elif reader.type == "array":
        _explain(checker, reader.items, writer.items, f"{path}[]", roles, out, seen)
    elif reader.type == "map":
        _explain(checker, reader.values, writer.values, f"{path}{{}}", roles, out, seen)
    problem = _logical_problem(reader, writer)
    if problem is not None:
        out.append(f"{rrole} reads {where} as {_label(reader)} but {wrole} writes {_label(writer)}")


def _strip_logical(schema: _Node) -> _Node:
    # Used only to tell a physical type mismatch from a logical one, for the message.
    if schema.type in avro.constants.PRIMITIVE_TYPES:
        return avro.schema.PrimitiveSchema(schema.type)  # type: ignore[no-untyped-call]
    return schema


def _same_name(a: _Node, b: _Node) -> bool:
    return a.type not in _NAMED or a.name == b.name


def _where(path: str) -> str:
    if not path or path.startswith(("[", "{")):
        return f"the top level{path}"
    return f"field {path}"


def _label(schema: _Node) -> str:
    logical = _logical(schema)
    if logical is not None:
        return logical if logical.startswith("decimal") else f"{schema.type} ({logical})"
    if schema.type in _NAMED:
        return f"{schema.type} {schema.fullname}"
    if schema.type == "union":
        return "union [" + ", ".join(_label(s) for s in schema.schemas) + "]"
    if schema.type == "array":
        return f"array of {_label(schema.items)}"
    if schema.type == "map":
        return f"map of {_label(schema.values)}"
    return str(schema.type)


def check_compatibility(
    level: str, new: avro.schema.Schema, previous: Sequence[tuple[int, avro.schema.Schema]]
) -> list[str]:
    """Reasons ``new`` may not follow ``previous`` (live versions, oldest first) under ``level``.

    BACKWARD: the new schema reads data written with the old one; FORWARD: the old schema reads data
    written with the new one; FULL: both.  Non-transitive levels look at the latest version only.
    Returns [] when compatible.
    """
    level = normalize_level(level)
    if level == "NONE" or not previous:
        return []
    targets = list(previous) if level.endswith("_TRANSITIVE") else [previous[-1]]
    backward = level.startswith(("BACKWARD", "FULL"))
    forward = level.startswith(("FORWARD", "FULL"))
    messages: list[str] = []
    for version, old in reversed(targets):  # newest first: the most relevant reason comes first
        old_role = f"version {version}"
        if backward:
            messages += reader_writer_problems(new, old, "the new schema", old_role)
        if forward:
            messages += reader_writer_problems(old, new, old_role, "the new schema")
    return list(dict.fromkeys(messages))
