"""Python source of one record shape's encoder: every column's fast path written out inline, in order.

For each column the generator writes the branches of its type's rule (`liberator.avro.rowrules`: an exact
class check, then the encoding inline: zig-zag varints looked up in `binary.SMALL`/`binary.LOW14`,
decimals from their integer ratio, timestamps from their distance to the epoch), then ``None``, then
every other value through the column's DatumConverter converter and a datum writer. A value a branch
cannot take exactly (out of range, more places than the scale, None in a NOT NULL column) raises
`Miss`, as does any exception: `RowEncoder` then encodes that row with DatumConverter + fastavro, which
writes the same bytes or raises the reference error. A slow row is possible; a different byte is not.

Only literals (ints, bytes) and generated names appear in the source; column names, symbols and other
objects are reached through the namespace the function is exec'd in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from liberator.avro.binary import NON_NULL, NULL
from liberator.avro.datumwriters import datum_writer
from liberator.avro.rowrules import branches
from liberator.avro.rowsource import RecordSource
from liberator.avro.values import converter_for
from liberator.schema import Column, ColumnType


def datum_function(ctype: ColumnType) -> Callable[[Any], Any]:
    """DatumConverter's rule for one value that is not None: its exact class as is, else converted."""
    exact_class, convert = converter_for(ctype, "")

    def datum(value: Any) -> Any:
        return value if value.__class__ is exact_class else convert(value)

    return datum


def emit_value(src: RecordSource, ind: int, v: str, ctype: ColumnType, nullable: bool, top: bool) -> None:
    """The code appending the encoding of variable `v`: a column (`top`) or an array item."""
    keyword = "if"
    for branch in branches(ctype, emit_value):
        src.line(ind, f"{keyword} {branch.condition(v)}:")
        if nullable:
            src.put(ind + 1, NON_NULL)
        branch.body(src, ind + 1, v)
        keyword = "elif"
    src.line(ind, f"{keyword} {v} is None:")
    if nullable:
        src.put(ind + 1, NULL)
    else:
        src.line(ind + 1, "raise Miss")  # the reference error: NULL in a NOT NULL column
    src.line(ind, "else:")
    if not top:  # an array item: the array converter's own rules (multi-dimensional...) decide
        src.line(ind + 1, "raise Miss")
        return
    if nullable:
        src.put(ind + 1, NON_NULL)
    datum = src.ref(datum_function(ctype), "datum")
    write = src.ref(datum_writer(ctype), "write")
    src.line(ind + 1, f"buf += {write}({datum}({v}))")


def record_function_source(columns: Sequence[Column], header: bytes) -> RecordSource:
    """``encode(values) -> bytes`` for values in the order of `columns`; `_slow(values)` is the fallback."""
    src = RecordSource()
    src.line(0, "def encode(values):")
    src.line(1, "try:")
    if columns:
        src.line(2, "".join(f"v{i}, " for i in range(len(columns))) + "= values")
    else:
        src.line(2, "if len(values):")
        src.line(3, "raise Miss")
    src.line(2, f"buf = bytearray({header!r})")
    for i, column in enumerate(columns):
        emit_value(src, 2, f"v{i}", column.type, column.nullable, top=True)
    src.line(2, "return bytes(buf)")
    src.line(1, "except Exception:")
    src.line(2, "pass")
    src.line(1, "return _slow(values)")
    return src
