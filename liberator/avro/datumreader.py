"""A decoder generated for one writer schema: Avro binary bodies -> the datum fastavro's schemaless_reader returns.

The mirror of `liberator.avro.rowcode` for the way back. fastavro's C reader costs about 5 µs for a flat
five-field row, most of it generic dispatch per field and the BytesIO it reads from; the SQL sink decodes two
such bodies per record. `DatumReader` writes, once per schema, a Python function that reads the bytes
straight from the body with every field's decoding inline (varints, strings, unions, logical types) and builds
the same dicts, lists and values fastavro builds, with fastavro's own arithmetic for decimals, dates, times and
timestamps.

Exactness: the generated code only ever succeeds on input it reads exactly as fastavro does. Anything unusual
-- a varint beyond 64 bits, a union or enum index out of range, a boolean byte other than 0 or 1, a length
that is negative or runs past the end, truncated input, invalid UTF-8, an invalid UUID -- makes it give the
whole body to fastavro, which then returns its own datum or raises its own error. A slow read is possible; a
different datum is not (tests/unit/test_datumreader.py checks it against fastavro).
"""

from __future__ import annotations

import io
import struct
from datetime import UTC, date, datetime, time, timedelta
from decimal import Context
from typing import Any, Protocol
from uuid import UUID

import fastavro

from liberator.avro.binary import DAYS_SHIFT

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_NAIVE = datetime(1970, 1, 1)

# What every generated reader refers to.
_COMMON: dict[str, Any] = {
    "_E": _EPOCH,
    "_EN": _EPOCH_NAIVE,
    "_US": timedelta(microseconds=1),
    "_MS": timedelta(milliseconds=1),
    "_date": date.fromordinal,
    "_time": time,
    "_UUID": UUID,
    "_from_bytes": int.from_bytes,
    "_BOOL": {0: False, 1: True},
    "_unpack_f": struct.Struct("<f").unpack_from,
    "_unpack_d": struct.Struct("<d").unpack_from,
}


class Miss(Exception):
    """Input the generated reader does not take: fastavro reads it."""


class Unsupported(Exception):
    """A schema the generator does not write code for (a recursive type): fastavro reads every body."""


class _Source:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.names: dict[str, Any] = {**_COMMON, "Miss": Miss}
        self._counter = 0

    def line(self, indent: int, text: str) -> None:
        self.lines.append("    " * indent + text)

    def fresh(self, stem: str) -> str:
        self._counter += 1
        return f"{stem}{self._counter}"

    def ref(self, obj: Any, stem: str) -> str:
        name = self.fresh(f"_{stem}")
        self.names[name] = obj
        return name


def _varint(src: _Source, ind: int, target: str) -> None:
    """`target` = the zig-zag decoded long at `pos`; a varint beyond 64 bits is a Miss (fastavro wraps it)."""
    src.line(ind, "b = data[pos]")
    src.line(ind, "pos += 1")
    src.line(ind, "if b & 128:")
    src.line(ind + 1, "n = b & 127")
    src.line(ind + 1, "s = 7")
    src.line(ind + 1, "while True:")
    src.line(ind + 2, "b = data[pos]")
    src.line(ind + 2, "pos += 1")
    src.line(ind + 2, "n |= (b & 127) << s")
    src.line(ind + 2, "if not b & 128:")
    src.line(ind + 3, "break")
    src.line(ind + 2, "s += 7")
    src.line(ind + 2, "if s > 63:")
    src.line(ind + 3, "raise Miss")
    src.line(ind + 1, "if n >> 64:")
    src.line(ind + 2, "raise Miss")
    src.line(ind + 1, f"{target} = (n >> 1) ^ -(n & 1)")
    src.line(ind, "else:")
    src.line(ind + 1, f"{target} = (b >> 1) ^ -(b & 1)")


def _raw(src: _Source, ind: int, target: str, size: int | None = None) -> None:
    """`target` = the next bytes: a length-prefixed block, or `size` bytes (fixed)."""
    if size is None:
        length = src.fresh("k")
        _varint(src, ind, length)
        src.line(ind, f"if {length} < 0:")
        src.line(ind + 1, "raise Miss")
    else:
        length = str(size)
    src.line(ind, f"end = pos + {length}")
    src.line(ind, "if end > len(data):")
    src.line(ind + 1, "raise Miss")
    src.line(ind, f"{target} = data[pos:end]")
    src.line(ind, "pos = end")


_LOGICAL = {
    # A timedelta times an integer is exact and about half the cost of building one from the integer
    ("long", "timestamp-micros"): "_E + _US * {x}",
    ("long", "timestamp-millis"): "_E + _MS * {x}",
    ("long", "local-timestamp-micros"): "_EN + _US * {x}",
    ("long", "local-timestamp-millis"): "_EN + _MS * {x}",
    ("int", "date"): "_date({x} + " + str(DAYS_SHIFT) + ")",
    # fastavro's own arithmetic (float division, then int), so that the same integer gives the same time
    ("int", "time-millis"): (
        "_time(int({x} / 3600000), int({x} / 60000) % 60, int({x} / 1000) % 60, int({x} % 1000) * 1000)"
    ),
    ("long", "time-micros"): (
        "_time(int({x} / 3600000000), int({x} / 60000000) % 60, int({x} / 1000000) % 60, {x} % 1000000)"
    ),
    ("string", "uuid"): "_UUID({x})",
}


class _Writer:
    """Writes the code that decodes one schema (fastavro's parsed form) into a variable."""

    def __init__(self, src: _Source, named: dict[str, Any]) -> None:
        self.src = src
        self.named = named
        self._open: set[str] = set()  # named records being written: a reference to one is recursion

    def value(self, ind: int, schema: Any, target: str) -> None:
        src = self.src
        if isinstance(schema, list):
            self._union(ind, schema, target)
            return
        if isinstance(schema, str):
            if schema in self.named:
                self._named(ind, schema, target)
                return
            schema = {"type": schema}
        kind = schema["type"]
        if isinstance(kind, dict | list):  # {"type": {...}}: a type wrapped once more
            self.value(ind, kind, target)
            return
        if kind in self.named and kind not in ("record", "enum", "fixed", "array", "map"):
            self._named(ind, kind, target)
            return
        logical = schema.get("logicalType")
        if kind == "null":
            src.line(ind, f"{target} = None")
        elif kind == "boolean":
            src.line(ind, f"{target} = _BOOL[data[pos]]")  # 0 or 1, else a KeyError: fastavro reads it
            src.line(ind, "pos += 1")
        elif kind in ("int", "long"):
            expression = _LOGICAL.get((kind, logical))
            if expression is None:
                _varint(src, ind, target)
            else:
                x = src.fresh("x")
                _varint(src, ind, x)
                src.line(ind, f"{target} = {expression.format(x=x)}")
        elif kind in ("float", "double"):
            unpack = "_unpack_f" if kind == "float" else "_unpack_d"
            src.line(ind, f"{target} = {unpack}(data, pos)[0]")
            src.line(ind, f"pos += {4 if kind == 'float' else 8}")
        elif kind in ("bytes", "fixed"):
            raw = src.fresh("r") if logical == "decimal" else target
            _raw(src, ind, raw, schema["size"] if kind == "fixed" else None)
            if logical == "decimal":
                self._decimal(ind, schema, raw, target)
        elif kind == "string":
            raw = src.fresh("r")
            _raw(src, ind, raw)
            expression = _LOGICAL.get((kind, logical))
            text = f"{raw}.decode()" if expression is None else expression.format(x=f"{raw}.decode()")
            src.line(ind, f"{target} = {text}")
        elif kind == "enum":
            index = src.fresh("i")
            _varint(src, ind, index)
            src.line(ind, f"if {index} < 0:")
            src.line(ind + 1, "raise Miss")
            symbols = src.ref(tuple(schema["symbols"]), "symbols")
            src.line(ind, f"{target} = {symbols}[{index}]")
        elif kind == "array":
            self._blocks(ind, schema["items"], None, target)
        elif kind == "map":
            self._blocks(ind, schema["values"], "string", target)
        elif kind == "record":
            self._record(ind, schema, target)
        else:
            raise Unsupported(f"Avro type {kind!r}")

    def _named(self, ind: int, name: str, target: str) -> None:
        if name in self._open:
            raise Unsupported(f"recursive type {name}")
        self.value(ind, self.named[name], target)

    def _decimal(self, ind: int, schema: dict[str, Any], raw: str, target: str) -> None:
        # fastavro: a context of the field's precision creates the unscaled integer, then scales it
        context = self.src.ref(Context(prec=schema["precision"]), "ctx")
        scale = int(schema.get("scale", 0))
        self.src.line(
            ind,
            f"{target} = {context}.create_decimal(_from_bytes({raw}, 'big', signed=True)).scaleb({-scale}, {context})",
        )

    def _union(self, ind: int, branches: list[Any], target: str) -> None:
        index = self.src.fresh("i")
        _varint(self.src, ind, index)
        keyword = "if"
        for i, branch in enumerate(branches):
            self.src.line(ind, f"{keyword} {index} == {i}:")
            self.value(ind + 1, branch, target)
            keyword = "elif"
        self.src.line(ind, "else:")
        self.src.line(ind + 1, "raise Miss")

    def _blocks(self, ind: int, item: Any, key: str | None, target: str) -> None:
        """An array (key None) or a map: blocks of a count (negative: a byte size follows) until count 0."""
        src = self.src
        count, size, element = src.fresh("c"), src.fresh("z"), src.fresh("e")
        src.line(ind, f"{target} = {{}}" if key else f"{target} = []")
        src.line(ind, "while True:")
        _varint(src, ind + 1, count)
        src.line(ind + 1, f"if {count} == 0:")
        src.line(ind + 2, "break")
        src.line(ind + 1, f"if {count} < 0:")
        src.line(ind + 2, f"{count} = -{count}")
        _varint(src, ind + 2, size)
        src.line(ind + 1, f"for _ in range({count}):")
        if key:
            name = src.fresh("m")
            self.value(ind + 2, key, name)
            self.value(ind + 2, item, element)
            src.line(ind + 2, f"{target}[{name}] = {element}")
        else:
            self.value(ind + 2, item, element)
            src.line(ind + 2, f"{target}.append({element})")

    def _record(self, ind: int, schema: dict[str, Any], target: str) -> None:
        name = schema.get("name")
        if name:
            self._open.add(name)
        fields = []
        for field in schema["fields"]:
            variable = self.src.fresh("f")
            self.value(ind, field["type"], variable)
            fields.append((field["name"], variable))
        if name:
            self._open.discard(name)
        self.src.line(ind, f"{target} = {{" + ", ".join(f"{n!r}: {v}" for n, v in fields) + "}")


def _named_types(schema: Any, named: dict[str, Any]) -> None:
    """Every named type (fastavro's full names) of a parsed schema, so references can be written out."""
    if isinstance(schema, list):
        for branch in schema:
            _named_types(branch, named)
    elif isinstance(schema, dict):
        if schema.get("type") in ("record", "enum", "fixed") and "name" in schema:
            named[schema["name"]] = schema
        for field in schema.get("fields", ()):
            _named_types(field["type"], named)
        for part in ("items", "values"):
            if part in schema:
                _named_types(schema[part], named)
        if isinstance(schema.get("type"), dict | list):
            _named_types(schema["type"], named)


def reader_source(parsed: Any) -> tuple[str, dict[str, Any]]:
    """The source of ``read(data, start=0) -> datum`` (the body from `start` on) for a parsed schema and the names
    it refers to (it calls ``_slow(data, start)`` for any input it does not take); raises Unsupported for schemas
    it does not write."""
    named: dict[str, Any] = {}
    _named_types(parsed, named)
    src = _Source()
    src.line(0, "def read(data, start=0):")
    src.line(1, "try:")
    src.line(2, "pos = start")
    _Writer(src, named).value(2, parsed, "datum")
    src.line(2, "return datum")
    src.line(1, "except Exception:")
    src.line(2, "pass")
    src.line(1, "return _slow(data, start)")
    return "\n".join(src.lines) + "\n", src.names


class ReadFunction(Protocol):
    def __call__(self, data: bytes, start: int = 0) -> Any: ...


class DatumReader:
    """Reads Avro binary bodies written with one schema: ``read(data, start=0)`` reads the body that starts at
    `start` (past a framing header, with no copy) and returns exactly
    ``fastavro.schemaless_reader(BytesIO(data[start:]), parse_schema(schema), None)`` and raises what it raises.

    `slow_reads` counts the bodies fastavro read (a statistic, not exact under threads)."""

    read: ReadFunction

    def __init__(self, schema: Any) -> None:
        self.parsed = fastavro.parse_schema(schema)
        self.slow_reads = 0
        try:
            source, names = reader_source(self.parsed)
        except Unsupported:
            self.source = ""
            self.read = self._slow
            return
        names["_slow"] = self._slow
        self.source = source  # the generated function, for the curious and for tests
        exec(compile(source, "<DatumReader>", "exec"), names)
        self.read = names["read"]

    def _slow(self, data: bytes, start: int = 0) -> Any:
        self.slow_reads += 1
        return fastavro.schemaless_reader(io.BytesIO(data[start:] if start else data), self.parsed, None)
