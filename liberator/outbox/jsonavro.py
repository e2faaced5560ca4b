"""JSON values checked against an Avro schema and turned into the datums fastavro writes.

Applications write plain JSON (not Avro's JSON encoding): union values are bare, bytes are text whose
code points are the byte values (as Avro's JSON encoding has it), timestamps and dates are ISO-8601 text
or epoch numbers in the logical type's unit, decimals are strings or numbers. Fields the schema does
not know are refused, so a typo in the application never vanishes silently.
"""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from typing import Any

from avro.constants import PRIMITIVE_TYPES

_INT_RANGE = {"int": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}


class PayloadMismatch(ValueError):
    """The value does not fit the schema; the message names the JSON path and what was expected."""


def _fullname(name: str, namespace: str | None) -> str:
    return name if "." in name or not namespace else f"{namespace}.{name}"


class JsonToAvro:
    """Converter for one (parsed JSON) schema; reusable for every payload of that schema."""

    def __init__(self, schema: Any) -> None:
        self.schema = schema
        self._named: dict[str, Any] = {}
        self._collect(schema, None)

    def _collect(self, schema: Any, namespace: str | None) -> None:
        if isinstance(schema, list):
            for branch in schema:
                self._collect(branch, namespace)
        elif isinstance(schema, dict):
            kind = schema.get("type")
            if kind in ("record", "error", "enum", "fixed"):
                fullname = _fullname(str(schema["name"]), schema.get("namespace", namespace))
                self._named[fullname] = schema
                namespace = fullname.rpartition(".")[0] or None
                for field in schema.get("fields", []):
                    self._collect(field["type"], namespace)
            elif kind == "array":
                self._collect(schema["items"], namespace)
            elif kind == "map":
                self._collect(schema["values"], namespace)
            elif isinstance(kind, dict | list):
                self._collect(kind, namespace)

    def convert(self, value: Any) -> Any:
        return self._convert(self.schema, value, "payload", None)

    def _convert(self, schema: Any, value: Any, path: str, namespace: str | None) -> Any:
        if isinstance(schema, list):
            return self._union(schema, value, path, namespace)
        if isinstance(schema, str):
            if schema in PRIMITIVE_TYPES:
                return _primitive(schema, value, path)
            named = self._named.get(_fullname(schema, namespace)) or self._named.get(schema)
            if named is None:
                raise PayloadMismatch(f"{path}: the schema refers to an unknown type {schema!r}")
            return self._convert(named, value, path, namespace)
        kind = schema.get("type")
        logical = schema.get("logicalType")
        if logical is not None:
            converted = _logical(logical, schema, value, path)
            if converted is not _NOT_LOGICAL:
                return converted
        if kind in ("record", "error"):
            fullname = _fullname(str(schema["name"]), schema.get("namespace", namespace))
            return self._record(schema, value, path, fullname.rpartition(".")[0] or None)
        if kind == "enum":
            if not isinstance(value, str) or value not in schema["symbols"]:
                raise PayloadMismatch(f"{path}: expected one of {schema['symbols']}, got {_show(value)}")
            return value
        if kind == "array":
            if not isinstance(value, list):
                raise PayloadMismatch(f"{path}: expected an array, got {_show(value)}")
            return [self._convert(schema["items"], item, f"{path}[{i}]", namespace) for i, item in enumerate(value)]
        if kind == "map":
            if not isinstance(value, dict):
                raise PayloadMismatch(f"{path}: expected an object (Avro map), got {_show(value)}")
            return {k: self._convert(schema["values"], v, f"{path}.{k}", namespace) for k, v in value.items()}
        if kind == "fixed":
            data = _primitive("bytes", value, path)
            if len(data) != schema["size"]:
                raise PayloadMismatch(f"{path}: expected {schema['size']} bytes, got {len(data)}")
            return data
        return self._convert(kind, value, path, namespace)

    def _record(self, schema: dict[str, Any], value: Any, path: str, namespace: str | None) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise PayloadMismatch(f"{path}: expected an object for record {schema['name']}, got {_show(value)}")
        fields = schema.get("fields", [])
        known = {field["name"] for field in fields}
        unknown = sorted(set(value) - known)
        if unknown:
            raise PayloadMismatch(
                f"{path}.{unknown[0]}: record {schema['name']} has no such field (fields: {', '.join(sorted(known))})"
            )
        datum: dict[str, Any] = {}
        for field in fields:
            name = field["name"]
            if name in value:
                datum[name] = self._convert(field["type"], value[name], f"{path}.{name}", namespace)
            elif "default" in field:
                default_type = field["type"][0] if isinstance(field["type"], list) else field["type"]
                datum[name] = self._convert(default_type, field["default"], f"{path}.{name}", namespace)
            else:
                raise PayloadMismatch(f"{path}.{name}: required field of record {schema['name']} is missing")
        return datum

    def _union(self, branches: list[Any], value: Any, path: str, namespace: str | None) -> Any:
        if value is None and "null" in branches:
            return None
        reasons: list[str] = []
        for branch in branches:
            if branch == "null":
                continue
            try:
                return self._convert(branch, value, path, namespace)
            except PayloadMismatch as exc:
                reasons.append(str(exc))
        if len(reasons) == 1:
            raise PayloadMismatch(reasons[0])
        raise PayloadMismatch(f"{path}: {_show(value)} matches no branch of the union {_branch_names(branches)}")


_NOT_LOGICAL = object()


def _primitive(kind: str, value: Any, path: str) -> Any:
    if kind == "null":
        if value is not None:
            raise PayloadMismatch(f"{path}: expected null, got {_show(value)}")
        return None
    if kind == "boolean":
        if not isinstance(value, bool):
            raise PayloadMismatch(f"{path}: expected true or false, got {_show(value)}")
        return value
    if kind in _INT_RANGE:
        if not isinstance(value, int) or isinstance(value, bool):
            raise PayloadMismatch(f"{path}: expected an integer ({kind}), got {_show(value)}")
        low, high = _INT_RANGE[kind]
        if not low <= value <= high:
            raise PayloadMismatch(f"{path}: {value} does not fit an Avro {kind}")
        return value
    if kind in ("float", "double"):
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise PayloadMismatch(f"{path}: expected a number ({kind}), got {_show(value)}")
        return float(value)
    if kind == "string":
        if not isinstance(value, str):
            raise PayloadMismatch(f"{path}: expected a string, got {_show(value)}")
        return value
    # bytes: Avro's JSON encoding maps each code point 0-255 to one byte
    if not isinstance(value, str):
        raise PayloadMismatch(f"{path}: expected bytes as a string of code points 0-255, got {_show(value)}")
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        raise PayloadMismatch(f"{path}: bytes must be written as code points 0-255 (Avro's JSON encoding)") from None


def _logical(logical: str, schema: dict[str, Any], value: Any, path: str) -> Any:
    base = schema.get("type")
    if logical in ("timestamp-millis", "timestamp-micros", "local-timestamp-millis", "local-timestamp-micros"):
        if isinstance(value, str):
            try:
                parsed = dt.datetime.fromisoformat(value)
            except ValueError:
                raise PayloadMismatch(f"{path}: {_show(value)} is not an ISO-8601 timestamp") from None
            if logical.startswith("local-"):
                return parsed.replace(tzinfo=None)
            return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)
        return _primitive("long", value, path)
    if logical == "date" and base == "int":
        if isinstance(value, str):
            try:
                return dt.date.fromisoformat(value)
            except ValueError:
                raise PayloadMismatch(f"{path}: {_show(value)} is not an ISO-8601 date (YYYY-MM-DD)") from None
        return _primitive("int", value, path)
    if logical in ("time-millis", "time-micros"):
        if isinstance(value, str):
            try:
                return dt.time.fromisoformat(value)
            except ValueError:
                raise PayloadMismatch(f"{path}: {_show(value)} is not an ISO-8601 time (HH:MM:SS)") from None
        return _primitive("int" if logical == "time-millis" else "long", value, path)
    if logical == "uuid" and base == "string":
        try:
            return str(uuid.UUID(str(value))) if isinstance(value, str) else _primitive("string", value, path)
        except ValueError:
            raise PayloadMismatch(f"{path}: {_show(value)} is not a UUID") from None
    if logical == "decimal" and base in ("bytes", "fixed"):
        return _decimal(schema, value, path)
    return _NOT_LOGICAL


def _decimal(schema: dict[str, Any], value: Any, path: str) -> decimal.Decimal:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise PayloadMismatch(f"{path}: expected a decimal as a string or number, got {_show(value)}")
    try:
        number = decimal.Decimal(str(value))
    except decimal.InvalidOperation:
        raise PayloadMismatch(f"{path}: {_show(value)} is not a decimal number") from None
    if not number.is_finite():
        raise PayloadMismatch(f"{path}: {value} cannot be stored in an Avro decimal")
    scale = int(schema.get("scale", 0))
    precision = int(schema["precision"])
    exponent = number.as_tuple().exponent
    assert isinstance(exponent, int)
    if -exponent > scale and number != number.quantize(decimal.Decimal(1).scaleb(-scale)):
        raise PayloadMismatch(f"{path}: {value} has more than {scale} decimal places")
    quantized = number.quantize(decimal.Decimal(1).scaleb(-scale))
    if len(quantized.as_tuple().digits) > precision and quantized != 0:
        raise PayloadMismatch(f"{path}: {value} has more than {precision} digits (decimal({precision}, {scale}))")
    return quantized


def _branch_names(branches: list[Any]) -> str:
    names = [b if isinstance(b, str) else str(b.get("name") or b.get("logicalType") or b.get("type")) for b in branches]
    return "[" + ", ".join(names) + "]"


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
