"""A pgoutput tuple reader generated per relation: the wire bytes -> the captured columns' Python values.

The generic path (`pgoutput.decode` -> `rows.parse_tuple`) builds a message object, a list of every column's
text, then parses the captured ones in a second loop. For the common case -- every value sent as text or
NULL -- one generated function per relation does it in one pass, straight from the frame, with each column's
parser inlined (`int` takes the bytes as they are; text columns are only decoded). Anything else (an
unchanged TOAST marker, a binary value, a column count that does not match, a value its parser refuses)
raises `Fallback`, and the caller takes the generic path for that message, which keeps its exact errors.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import Any

from liberator.connectors.postgres_wal.types import Parser

_I16 = struct.Struct("!h").unpack_from
_I32 = struct.Struct("!i").unpack_from


class Fallback(Exception):
    """The generated reader does not take this tuple: use the generic path."""


TupleReader = Callable[[bytes, int], list[Any]]


def tuple_reader(parsers: Sequence[Parser], pick: Sequence[int] | None, columns: int) -> TupleReader:
    """A reader of tuples of `columns` values (the relation's) returning those at `pick` (all when None),
    each parsed by its parser in `parsers` (one per returned value)."""
    wire = columns if pick is None else (max(pick) + 1 if pick else 0)  # values after the last kept one: unread
    kept = set(range(columns)) if pick is None else set(pick)
    names: dict[str, Any] = {"_I16": _I16, "_I32": _I32, "Fallback": Fallback, "_ValueError": ValueError}
    lines = [
        "def read(data, at):",
        "    if _I16(data, at)[0] != COLUMNS:",
        "        raise Fallback",
        "    at += 2",
        "    try:",
    ]
    names["COLUMNS"] = columns
    outputs: list[str] = []
    for column in range(wire):
        keep = column in kept
        parser = parsers[column] if pick is None else (parsers[pick.index(column)] if keep else None)
        var = f"v{column}"
        lines += [
            "        k = data[at]",
            "        if k == 116:",
            "            n = _I32(data, at + 1)[0]",
            "            at += 5",
        ]
        if keep:
            if parser is int:
                lines.append(f"            {var} = int(data[at:at + n])")
            elif parser is None:
                lines.append(f"            {var} = data[at:at + n].decode()")
            else:
                names[f"p{column}"] = parser
                lines.append(f"            {var} = p{column}(data[at:at + n].decode())")
            outputs.append(var)
        lines += [
            "            at += n",
            "        elif k == 110:",
            f"            {var} = None" if keep else "            pass",
            "            at += 1",
            "        else:",
            "            raise Fallback",
        ]
    lines += [
        "    except (_ValueError, ArithmeticError, IndexError):",
        "        raise Fallback from None",
        f"    return [{', '.join(outputs)}]",
    ]
    exec(compile("\n".join(lines) + "\n", "<pgoutput tuple reader>", "exec"), names)
    reader: TupleReader = names["read"]
    return reader
