"""The rows of a binlog rows event decoded straight from the event's bytes, by a reader generated per table map.

mysql-replication decodes every value through several method calls and builds two dicts per row image (the
values, and the reason for each None); that is nearly all the time a bare iteration of the binlog takes. For
the images liberator reads (binlog_row_image=FULL: every column present) one function generated per table
map decodes a whole event in one pass into the published columns' values, in the form `BinlogTable.from_binlog`
makes of the library's rows (the same normalisers, some of them inlined). What it does not take -- a column
type it has no code for, an image without every column, bytes that do not add up -- makes it decline (None),
and the library's own decoding is used, which keeps its exact values and errors.
"""

from __future__ import annotations

import codecs
import datetime as dt
import struct
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

from pymysqlreplication.constants import FIELD_TYPE
from pymysqlreplication.json_binary import parse_json
from pymysqlreplication.row_event import RowsEvent, UpdateRowsEvent

from liberator.connectors.mysql_binlog.tables import BinlogTable
from liberator.connectors.mysql_binlog.time2 import decode_time2, patch_library, time2_size
from liberator.connectors.mysql_binlog.types import normalizer

patch_library()  # the library's own TIME decoding is the fallback of the generated reader: make it right

Rows = list[Any]  # images (write, delete) or (before, after) pairs (update), each a list of published values
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_COMPRESSED = (0, 1, 1, 2, 2, 3, 3, 4, 4, 4)  # bytes of a decimal's leftover digits (MySQL's dig2bytes)
_FSP_BYTES = (0, 1, 1, 2, 2, 3, 3)
_INTS = {
    (FIELD_TYPE.TINY, False): ("b", 1),
    (FIELD_TYPE.TINY, True): ("B", 1),
    (FIELD_TYPE.SHORT, False): ("<h", 2),
    (FIELD_TYPE.SHORT, True): ("<H", 2),
    (FIELD_TYPE.LONG, False): ("<i", 4),
    (FIELD_TYPE.LONG, True): ("<I", 4),
    (FIELD_TYPE.LONGLONG, False): ("<q", 8),
    (FIELD_TYPE.LONGLONG, True): ("<Q", 8),
}
_FLOATS = {FIELD_TYPE.FLOAT: ("<f", 4), FIELD_TYPE.DOUBLE: ("<d", 8)}
_LENGTH = {
    1: "data[at]",
    2: "_U16(data, at)[0]",
    3: "int.from_bytes(data[at:at + 3], 'little')",
    4: "_U32(data, at)[0]",
}


class Unsupported(Exception):
    """A column the generated reader has no code for: the table's events are decoded by the library."""


def decimal_reader(precision: int, scale: int) -> tuple[Callable[[bytes, int], Decimal], int]:
    """MySQL's binary DECIMAL(precision, scale) -> Decimal, as mysql-replication reads it; and its size."""
    whole, part = divmod(precision - scale, 9)
    frac_groups, frac_left = divmod(scale, 9)
    head = _COMPRESSED[part]
    tail = _COMPRESSED[frac_left]
    size = head + 4 * whole + 4 * frac_groups + tail

    def read(data: bytes, at: int) -> Decimal:
        first = data[at]
        if first & 0x80:
            mask, text = 0, ""
        else:  # negative: every byte is stored inverted
            mask, text = -1, "-"
        raw = bytes((first ^ 0x80,)) + data[at + 1 : at + size]
        pos = 0
        if head:
            text += str(int.from_bytes(raw[:head], "big", signed=True) ^ mask)
            pos = head
        for _ in range(whole):
            text += f"{int.from_bytes(raw[pos : pos + 4], 'big', signed=True) ^ mask:09d}"
            pos += 4
        text += "."
        for _ in range(frac_groups):
            text += f"{int.from_bytes(raw[pos : pos + 4], 'big', signed=True) ^ mask:09d}"
            pos += 4
        if tail:
            text += f"{int.from_bytes(raw[pos : pos + tail], 'big', signed=True) ^ mask:0{frac_left}d}"
        return Decimal(text)

    return read, size


def _text_codec(column: Any) -> str | None:
    """The Python codec of a text column; None for binary data (kept as bytes, as the library does)."""
    name = column.character_set_name
    encoding = "utf-8" if name is None else RowsEvent.charset_to_encoding(name)
    try:
        codecs.lookup(encoding)
    except LookupError:
        return None
    return encoding


class _Generator:
    """Writes the code that decodes one row image, column by column."""

    def __init__(self, columns: Sequence[Any], table: BinlogTable) -> None:
        self.columns = columns
        self.table = table
        self.names: dict[str, Any] = {
            "_U16": struct.Struct("<H").unpack_from,
            "_U32": struct.Struct("<I").unpack_from,
            "_BE32": struct.Struct(">i").unpack_from,
            "_datetime": dt.datetime,
            "_date": dt.date,
            "_timedelta": dt.timedelta,
            "_EPOCH": _EPOCH,
            "_parse_json": parse_json,
            "_time2": decode_time2,
        }

    def image(self, indent: str) -> tuple[list[str], str]:
        """Lines decoding one image at `at` of `data` into v0.. (published columns), and the list expression."""
        places = {index: place for place, index in enumerate(self.table.index)}
        count = len(self.columns)
        lines = [
            f"nulls = int.from_bytes(data[at:at + {(count + 7) // 8}], 'little')",
            f"at += {(count + 7) // 8}",
        ]
        for index, column in enumerate(self.columns):
            place = places.get(index)
            body = self.column(index, column, place)
            lines += [f"if nulls & {1 << index}:", f"    v{index} = None", "else:"]
            lines += ["    " + line for line in body]
        values = ", ".join(f"v{index}" for index in self.table.index)
        return [indent + line for line in lines], f"[{values}]"

    def _const(self, name: str, value: Any) -> str:
        self.names[name] = value
        return name

    def column(self, index: int, column: Any, place: int | None) -> list[str]:
        """Lines that decode column `index` into v{index} and move past it; normalised when published (`place`).

        The value is what `BinlogTable.from_binlog` makes of the library's: the spec's normaliser is applied
        after it, except where the code below already gives the normalised value (`inline`)."""
        code = column.type
        var = f"v{index}"
        spec = self.table.table.columns[index]
        kind = spec.kind
        inline = kind in ("date", "datetime")  # their normaliser only turns the snapshot's zero-date text to NULL
        lines: list[str]
        if code in _FLOATS or (code, bool(column.unsigned)) in _INTS:
            fmt, size = _FLOATS[code] if code in _FLOATS else _INTS[(code, bool(column.unsigned))]
            if fmt == "B":
                lines = [f"{var} = data[at]"]
            else:
                lines = [f"{var} = {self._const(f'_s{index}', struct.Struct(fmt).unpack_from)}(data, at)[0]"]
            lines.append(f"at += {size}")
        elif code == FIELD_TYPE.INT24:
            lines = [f"{var} = int.from_bytes(data[at:at + 3], 'little', signed={not column.unsigned})", "at += 3"]
        elif code == FIELD_TYPE.YEAR:
            if kind == "year":  # YEAR 0000 is stored as 0; the library adds 1900 to it
                lines, inline = [f"{var} = data[at]", f"{var} = {var} + 1900 if {var} else 0", "at += 1"], True
            else:
                lines = [f"{var} = data[at] + 1900", "at += 1"]
        elif code == FIELD_TYPE.NEWDECIMAL:
            reader, size = decimal_reader(column.precision, column.decimals)
            lines = [f"{var} = {self._const(f'_dec{index}', reader)}(data, at)", f"at += {size}"]
        elif code in (FIELD_TYPE.VARCHAR, FIELD_TYPE.STRING, FIELD_TYPE.BLOB, FIELD_TYPE.GEOMETRY, FIELD_TYPE.JSON):
            lines, inline = self._variable(column, var, spec, inline)
        elif code == FIELD_TYPE.DATETIME2:
            lines = [
                *self._fsp_head(column, 5, signed=False),
                "ym = (h >> 22) & 131071",
                "try:",
                f"    {var} = _datetime(ym // 13, ym % 13, (h >> 17) & 31, (h >> 12) & 31, (h >> 6) & 63, h & 63, us)",
                "except ValueError:",  # a zero date
                f"    {var} = None",
            ]
        elif code == FIELD_TYPE.TIMESTAMP2:
            lines = self._fsp_head(column, 4, signed=True)
            if kind == "timestamp":  # an instant in UTC; the zero TIMESTAMP is NULL
                lines.append(f"{var} = None if h == 0 and us == 0 else _EPOCH + _timedelta(seconds=h, microseconds=us)")
                inline = True
            else:
                lines.append(f"{var} = _datetime.utcfromtimestamp(h).replace(microsecond=us)")
        elif code == FIELD_TYPE.DATE:
            lines = [
                "t = data[at] | data[at + 1] << 8 | data[at + 2] << 16",
                "at += 3",
                "y, m, d = (t >> 9) & 32767, (t >> 5) & 15, t & 31",
                f"{var} = _date(y, m, d) if y and m and d else None",
            ]
        elif code == FIELD_TYPE.TIME2:  # a signed duration; see time2.py for why not inline
            fsp = int(getattr(column, "fsp", 0) or 0)
            lines = [f"{var} = _time2(data, at, {fsp})", f"at += {time2_size(fsp)}"]
        elif code == FIELD_TYPE.ENUM:
            labels = self._const(f"_enum{index}", list(column.enum_values) if column.enum_values else None)
            read = "data[at]" if column.size == 1 else "_U16(data, at)[0]"
            lines = [f"{var} = {labels}[{read}] if {labels} is not None else None", f"at += {column.size}"]
        elif code == FIELD_TYPE.SET:  # members as a set; no member: () (the library says None, 'empty set')
            members = self._const(f"_set{index}", tuple(column.set_values or ()))
            lines = [
                f"mask = int.from_bytes(data[at:at + {column.size}], 'little')",
                f"at += {column.size}",
                f"{var} = {{m for i, m in enumerate({members}) if mask >> i & 1}} or ()",
            ]
        elif code == FIELD_TYPE.BIT:  # '0'/'1' text, most significant bit first
            mask = (1 << column.bits) - 1
            lines = [
                f"{var} = format(int.from_bytes(data[at:at + {column.bytes}], 'big') & {mask}, '0{column.bits}b')",
                f"at += {column.bytes}",
            ]
        else:
            raise Unsupported(f"column type {code}")
        fix = None if place is None or inline else normalizer(spec)
        if fix is not None:
            name = self._const(f"_fix{index}", fix)
            lines += [f"if {var} is not None:", f"    {var} = {name}({var})"]
        return lines

    def _fsp_head(self, column: Any, size: int, *, signed: bool) -> list[str]:
        """Lines reading a temporal's `size` big-endian bytes into h and its fractional seconds into us, as
        microseconds (a negative fraction counts as none, as the library only adds a positive one)."""
        fsp = int(getattr(column, "fsp", 0) or 0)
        extra = _FSP_BYTES[fsp]
        if size == 4 and signed:
            lines = ["h = _BE32(data, at)[0]"]
        else:
            lines = [f"h = int.from_bytes(data[at:at + {size}], 'big', signed={signed})"]
        if extra:
            lines.append(f"us = int.from_bytes(data[at + {size}:at + {size + extra}], 'big', signed=True)")
            if fsp % 2:
                lines.append("us = int(us / 10)")
            scale = 10 ** (6 - fsp)
            lines.append(f"us = us * {scale} if us > 0 else 0")
        else:
            lines.append("us = 0")
        lines.append(f"at += {size + extra}")
        return lines

    def _variable(self, column: Any, var: str, spec: Any, inline: bool) -> tuple[list[str], bool]:
        """Strings, blobs, geometry and MySQL's binary JSON: a little-endian length, then the bytes."""
        code = column.type
        prefix = (
            (2 if column.max_length > 255 else 1)
            if code in (FIELD_TYPE.VARCHAR, FIELD_TYPE.STRING)
            else column.length_size
        )
        if prefix not in _LENGTH:
            raise Unsupported(f"length size {prefix}")
        lines = [f"n = {_LENGTH[prefix]}", f"at += {prefix}"]
        if code == FIELD_TYPE.JSON:
            lines.append(f"{var} = _parse_json(data[at], data[at + 1:at + n]) if n else None")
        elif code == FIELD_TYPE.GEOMETRY:
            if spec.kind == "geometry":  # WKB without the SRID MySQL stores in front
                lines.append(f"{var} = data[at + 4:at + n] if n >= 4 else data[at:at + n]")
                inline = True
            else:
                lines.append(f"{var} = data[at:at + n]")
        else:
            encoding = _text_codec(column)
            if encoding is not None:
                lines.append(f"{var} = data[at:at + n].decode({encoding!r})")
            elif spec.kind == "binary":  # BINARY(n) keeps the trailing zero bytes the binlog drops
                lines += [
                    f"{var} = data[at:at + n]",
                    f"if n < {spec.size}:",
                    f"    {var} = {var}.ljust({spec.size}, b'\\0')",
                ]
                inline = True
            else:
                lines.append(f"{var} = data[at:at + n]")
                inline = inline or spec.kind == "bytes"  # bytes already, empty ones too
        lines.append("at += n")
        return lines, inline


RowsFunction = Callable[[bytes, int, int], Rows]


def generate(columns: Sequence[Any], table: BinlogTable, pairs: bool) -> RowsFunction:
    """The decoder of one-image (write, delete) or two-image (update) events of this table map."""
    generator = _Generator(columns, table)
    body, image = generator.image("        ")
    lines = ["def read(data, at, end):", "    out = []", "    append = out.append", "    while at < end:"]
    if pairs:
        lines += [*body, f"        before = {image}", *body, f"        append((before, {image}))"]
    else:
        lines += [*body, f"        append({image})"]
    lines += [
        "    if at != end:",
        "        raise ValueError('the rows do not end where the event does')",
        "    return out",
    ]
    exec(compile("\n".join(lines) + "\n", f"<binlog rows of {table.qualified}>", "exec"), generator.names)
    function: RowsFunction = generator.names["read"]
    return function


class RowsReader:
    """Reads the rows events of one table map (one table id) with generated code, or declines (None)."""

    __slots__ = ("_images", "_pairs", "_present")

    def __init__(self, columns: Sequence[Any], table: BinlogTable) -> None:
        count = len(columns)
        self._present = (1 << count) - 1
        self._images: RowsFunction | None = None
        self._pairs: RowsFunction | None = None
        try:
            self._images = generate(columns, table, pairs=False)
            self._pairs = generate(columns, table, pairs=True)
        except Unsupported:
            pass

    @property
    def generated(self) -> bool:
        return self._images is not None

    def rows(self, event: Any) -> Rows | None:
        """The event's rows as published values, or None: decode it with the library."""
        update = isinstance(event, UpdateRowsEvent)
        function = self._pairs if update else self._images
        if function is None:
            return None
        try:
            if not event.complete:
                return []
            present = self._present
            if int.from_bytes(event.columns_present_bitmap, "little") & present != present:
                return None  # not a full row image
            if update and int.from_bytes(event.columns_present_bitmap2, "little") & present != present:
                return None
            wrapper = event.packet
            if wrapper._BinLogPacketWrapper__data_buffer:  # bytes pushed back into the wrapper: not the packet's
                return None
            packet = wrapper.packet
            at = packet._position
            return function(packet._data, at, at + event.event_size - wrapper.read_bytes)
        except Exception:  # the library decides what these bytes are, and raises its own errors
            return None
