"""The lines of a generated row encoder and the helpers every per-type rule writes with.

`liberator.avro.rowrules` says what each neutral type's fast path is; `liberator.avro.rowcode` puts a record's
rules together into one function. The code written here appends to a local ``buf`` (a bytearray) and raises
`Miss` where the value is not one it takes exactly.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from liberator.avro import binary
from liberator.avro.binary import NON_NULL
from liberator.schema import ColumnType


class Miss(Exception):
    """A value the fast path does not take: encode the row the reference way."""


# What every generated function may refer to.
COMMON: dict[str, Any] = {
    "S": binary.SMALL,
    "L14": binary.LOW14,
    "_varint": binary.varint,
    "_pack_f": binary.pack_float,
    "_pack_d": binary.pack_double,
    "E": binary.EPOCH,
    "EN": binary.EPOCH_NAIVE,
    "Miss": Miss,
    "Decimal": Decimal,
    "date": date,
    "datetime": datetime,
    "time": time,
    "timedelta": timedelta,
    "UUID": UUID,
    "_CANONICAL_UUID": re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}").fullmatch,
}

# SMALL with the union's non-null branch in front, for short strings of nullable columns
NON_NULL_SMALL = tuple(NON_NULL + b for b in binary.SMALL[:256])


class RecordSource:
    """The lines of a generated function and the objects it refers to by name.

    Constant bytes are held back (`put`) and merged into one ``buf +=`` with the constants that follow,
    so a nullable boolean costs one append, not two.
    """

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.names: dict[str, Any] = dict(COMMON)
        self._pending = b""
        self._pending_indent = 0
        self._counter = 0

    def ref(self, obj: Any, stem: str) -> str:
        self._counter += 1
        name = f"_{stem}{self._counter}"
        self.names[name] = obj
        return name

    def fresh(self, stem: str) -> str:
        self._counter += 1
        return f"{stem}{self._counter}"

    def put(self, indent: int, data: bytes) -> None:
        if self._pending and self._pending_indent != indent:
            self.flush()
        self._pending += data
        self._pending_indent = indent

    def take(self, indent: int) -> bytes:
        """The constant bytes pending at `indent`, for a body that folds them into a lookup."""
        if self._pending_indent != indent:
            self.flush()
        data, self._pending = self._pending, b""
        return data

    def line(self, indent: int, text: str) -> None:
        self.flush()
        self.lines.append("    " * indent + text)

    def flush(self) -> None:
        if self._pending:
            self.lines.append("    " * self._pending_indent + f"buf += {self._pending!r}")
            self._pending = b""

    def source(self) -> str:
        self.flush()
        return "\n".join(self.lines) + "\n"


Body = Callable[[RecordSource, int, str], None]
# (src, indent, variable, type, nullable, top): writes the code of one value, as `rowcode.emit_value` does
Emit = Callable[[RecordSource, int, str, ColumnType, bool, bool], None]


@dataclass(frozen=True)
class Branch:
    condition: Callable[[str], str]  # variable name -> the test of its class (and range)
    body: Body


def varint_lines(src: RecordSource, ind: int, n: str, large: bool = False) -> None:
    """Append the varint of the zig-zagged value in variable `n`; `large` puts 8-byte values first."""
    tiers = [
        ("{n} < 16384", "buf += S[{n}]"),
        ("{n} < 268435456", "buf += L14[{n} & 16383]; buf += S[{n} >> 14]"),
        ("{n} < 4398046511104", "buf += L14[{n} & 16383]; buf += L14[({n} >> 14) & 16383]; buf += S[{n} >> 28]"),
    ]
    eight = (
        "4398046511104 <= {n} < 72057594037927936",
        "buf += L14[{n} & 16383]; buf += L14[({n} >> 14) & 16383]; buf += L14[({n} >> 28) & 16383]; "
        "buf += S[{n} >> 42]",
    )
    tiers = [eight, *tiers] if large else [*tiers, eight]
    for i, (test, code) in enumerate(tiers):
        src.line(ind, f"{'if' if i == 0 else 'elif'} {test.format(n=n)}:")
        src.line(ind + 1, code.format(n=n))
    src.line(ind, "else:")
    src.line(ind + 1, f"buf += _varint({n})")


def zigzag_lines(src: RecordSource, ind: int, value: str, large: bool = False) -> None:
    src.line(ind, f"n = ({value} << 1) ^ ({value} >> 63)")
    varint_lines(src, ind, "n", large)


def sized_lines(src: RecordSource, ind: int, data: str, prefix: bytes) -> None:
    """Append `prefix`, then the bytes in variable `data` with their length (short ones after the union's
    non-null branch in one lookup). Bodies `take` the prefix before their first line, which would flush it."""
    src.line(ind, f"n = len({data}) << 1")
    if prefix == NON_NULL:
        src.names["_NS"] = NON_NULL_SMALL
        src.line(ind, "buf += _NS[n] if n < 256 else b'\\x02' + _varint(n)")
    else:
        if prefix:
            src.line(ind, f"buf += {prefix!r}")
        src.line(ind, "buf += S[n] if n < 16384 else _varint(n)")
    src.line(ind, f"buf += {data}")


def exact(cls: str, test: str = "") -> Callable[[str], str]:
    return lambda v: f"{v}.__class__ is {cls}" + (f" and {test.format(v=v)}" if test else "")
