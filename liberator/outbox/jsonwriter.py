"""JSON payloads -> framed Avro bytes for one registered schema, by a function generated once per schema.

The reference path walks the schema for every event (`JsonToAvro.convert` builds the datum, then fastavro
validates and writes it): a third of the outbox's reading thread. For a record whose fields are primitives,
bytes-decimals or ["null", one of those] unions, `JsonAvroWriter` generates one function that checks each
JSON value's exact class and writes its bytes inline, in field order, with the decimals through the same
`_decimal` and decimal writer the reference path uses. Anything that function does not take exactly (another
class, a value out of range, a missing required field, an unknown field, any exception) makes it return
None, and the event goes the reference way, which writes the same bytes or raises the reference error. A
schema with other types (records, arrays, maps, enums, other logical types) always goes the reference way.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from typing import Any

import fastavro

from liberator.avro import AvroEncoder, frame
from liberator.avro.binary import length_bytes, long_bytes, pack_double, pack_float, unscaled_bytes
from liberator.avro.datumwriters import decimal_writer
from liberator.outbox.jsonavro import JsonToAvro, _decimal

_PRIMITIVES = ("null", "boolean", "int", "long", "float", "double", "string", "bytes")
_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)

FastWrite = Callable[[Any], "bytes | None"]


class JsonAvroWriter:
    """`write(document)`: what `encoder.encode(converter.convert(document))` returns, or raises, for one schema."""

    def __init__(self, schema: Any, encoder: AvroEncoder, converter: JsonToAvro) -> None:
        self.encoder = encoder
        self.converter = converter
        self.fast: FastWrite | None = generate(schema, frame(encoder.schema_id, b""))
        self.slow = 0  # events that took the reference path (unsupported schema or a declined value)

    def write(self, document: Any) -> bytes:
        fast = self.fast
        if fast is not None:
            data = fast(document)
            if data is not None:
                return data
        self.slow += 1
        return self.encoder.encode(self.converter.convert(document))


def _field_kind(field_type: Any) -> tuple[str, Any] | None:
    """('prim', name) | ('decimal', (precision, scale)) for a type the generated code writes, else None."""
    if isinstance(field_type, str):
        return ("prim", field_type) if field_type in _PRIMITIVES else None
    if isinstance(field_type, dict):
        base = field_type.get("type")
        logical = field_type.get("logicalType")
        if logical is None and isinstance(base, str) and base in _PRIMITIVES and len(field_type) == 1:
            return "prim", base
        if logical == "decimal" and base == "bytes":
            precision, scale = field_type.get("precision"), field_type.get("scale", 0)
            if isinstance(precision, int) and isinstance(scale, int) and 0 <= scale <= precision:
                return "decimal", (precision, scale)
    return None


class _Source:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.names: dict[str, Any] = {
            "_long": long_bytes,
            "_len": length_bytes,
            "_pf": pack_float,
            "_pd": pack_double,
        }

    def ref(self, obj: Any) -> str:
        name = f"_k{len(self.names)}"
        self.names[name] = obj
        return name

    def add(self, indent: int, line: str) -> None:
        self.lines.append("    " * indent + line)


def _emit(src: _Source, ind: int, kind: tuple[str, Any], prefix: bytes) -> bool:
    """Lines appending `prefix` and the encoding of local `v` to `out`, or returning None; False if unsupported."""
    pre = f"{prefix!r} + " if prefix else ""
    what, detail = kind
    if what == "decimal":
        precision, scale = detail
        src.add(ind, f"out.append({pre}{src.ref(decimal_json(precision, scale))}(v))")
        return True
    if detail == "null":
        src.add(ind, "if v is not None:")
        src.add(ind + 1, "return None")
        if prefix:
            src.add(ind, f"out.append({prefix!r})")
        return True
    if detail == "boolean":
        src.add(ind, "if v.__class__ is not bool:")
        src.add(ind + 1, "return None")
        true, false = prefix + b"\x01", prefix + b"\x00"
        src.add(ind, f"out.append({true!r} if v else {false!r})")
        return True
    if detail in ("int", "long"):
        low, high = _INT32 if detail == "int" else _INT64
        src.add(ind, f"if v.__class__ is not int or not {low} <= v <= {high}:")
        src.add(ind + 1, "return None")
        src.add(ind, f"out.append({pre}_long(v))")
        return True
    if detail in ("float", "double"):
        src.add(ind, "if not (v.__class__ is float or v.__class__ is int):")
        src.add(ind + 1, "return None")
        src.add(ind, f"out.append({pre}{'_pf' if detail == 'float' else '_pd'}(float(v)))")
        return True
    if detail in ("string", "bytes"):
        src.add(ind, "if v.__class__ is not str:")
        src.add(ind + 1, "return None")
        src.add(ind, f"d = v.encode({'' if detail == 'string' else repr('latin-1')})")
        src.add(ind, f"out.append({pre}_len(len(d)))")
        src.add(ind, "out.append(d)")
        return True
    return False


_DECIMAL_TEXT = re.compile(r"(-?)([0-9]+)(?:\.([0-9]+))?").fullmatch


def decimal_json(precision: int, scale: int) -> Callable[[Any], bytes]:
    """A JSON decimal (text or number) as a bytes-decimal body, as `_decimal` + the decimal writer make it.
    Plain text (`-12.50`: digits, at most `scale` places) and integers take the unscaled integer at once;
    anything else goes through `_decimal` and the writer; a value they refuse raises (the caller declines)."""
    schema = {"type": "bytes", "logicalType": "decimal", "precision": precision, "scale": scale}
    write = decimal_writer(precision, scale)
    shift = 10**scale
    limit = 10**precision  # an unscaled value must be below this in magnitude

    def encode(value: Any) -> bytes:
        cls = value.__class__
        if cls is str:
            match = _DECIMAL_TEXT(value)
            if match is not None:
                sign, whole, places = match.groups()
                if places is None or len(places) <= scale:
                    unscaled = int(whole + (places or "").ljust(scale, "0"))
                    if unscaled < limit:
                        return unscaled_bytes(-unscaled if sign else unscaled)
        elif cls is int:
            unscaled = value * shift
            if -limit < unscaled < limit:
                return unscaled_bytes(unscaled)
        if not (cls is str or cls is int or cls is float):
            raise TypeError(f"{value!r} is not a JSON decimal")
        return write(_decimal(schema, value, ""))

    return encode


def _default_bytes(field: dict[str, Any], converter: JsonToAvro) -> bytes | None:
    """The bytes the reference path writes for a field left out (its converted default), or None."""
    try:
        default_type = field["type"][0] if isinstance(field["type"], list) else field["type"]
        datum = converter._convert(default_type, field["default"], "payload", None)
        one = {"type": "record", "name": "Default", "fields": [{"name": "f", "type": field["type"]}]}
        buffer = io.BytesIO()
        fastavro.schemaless_writer(buffer, fastavro.parse_schema(one), {"f": datum})
    except Exception:  # the reference path refuses it too, or writes it some other way: no fast path
        return None
    return buffer.getvalue()


def generate(schema: Any, header: bytes) -> FastWrite | None:
    """The generated writer of a record schema of supported fields, or None (the reference path only)."""
    if not isinstance(schema, dict) or schema.get("type") not in ("record", "error"):
        return None
    fields = schema.get("fields")
    if not isinstance(fields, list) or not fields:
        return None
    converter = JsonToAvro(schema)
    src = _Source()
    known = src.ref(frozenset(field["name"] for field in fields))
    src.add(0, "def write(doc):")
    src.add(1, "if doc.__class__ is not dict or not doc.keys() <= " + known + ":")
    src.add(2, "return None")
    src.add(1, f"out = [{header!r}]")
    src.add(1, "try:")
    for field in fields:
        name = src.ref(field["name"])
        field_type = field["type"]
        src.add(2, f"if {name} in doc:")
        src.add(3, f"v = doc[{name}]")
        if isinstance(field_type, list):
            if len(field_type) != 2 or "null" not in field_type:
                return None
            null_index = field_type.index("null")
            other = _field_kind(field_type[1 - null_index])
            if other is None or other == ("prim", "null"):
                return None
            src.add(3, "if v is None:")
            src.add(4, f"out.append({long_bytes(null_index)!r})")
            src.add(3, "else:")
            if not _emit(src, 4, other, long_bytes(1 - null_index)):
                return None
        else:
            kind = _field_kind(field_type)
            if kind is None or not _emit(src, 3, kind, b""):
                return None
        src.add(2, "else:")
        if "default" in field:
            default = _default_bytes(field, converter)
            if default is None:
                return None
            src.add(3, f"out.append({default!r})")
        else:
            src.add(3, "return None")
    src.add(1, "except Exception:")
    src.add(2, "return None")
    src.add(1, "return b''.join(out)")
    namespace = dict(src.names)
    exec("\n".join(src.lines), namespace)  # only literals and generated names in the source
    write: FastWrite = namespace["write"]
    return write
