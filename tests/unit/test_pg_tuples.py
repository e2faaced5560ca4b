"""The generated pgoutput tuple reader returns exactly what the generic decode + parse path returns, or
declines (Fallback) so that path runs; it never returns something else."""

from __future__ import annotations

import random
import struct
from decimal import Decimal
from typing import Any

import pytest

from liberator.connectors.postgres_wal.pgoutput import UNCHANGED_TOAST, _tuple
from liberator.connectors.postgres_wal.tuples import Fallback, tuple_reader
from liberator.connectors.postgres_wal.types import InfinityPolicy, _bool, _bytea, date_parser, timestamp_parser

PARSERS: list[Any] = [
    int,
    Decimal,
    None,  # text as is
    date_parser(InfinityPolicy("clamp")),
    timestamp_parser(InfinityPolicy("clamp"), aware=False),
    timestamp_parser(InfinityPolicy("clamp"), aware=True),
    _bool,
    _bytea,
    float,
]
TEXTS: list[list[str]] = [
    ["0", "-7", "9223372036854775807", "12x"],
    ["1.50", "-0.01", "NaN", "123456789012345678901234567890.5", "1e5", "abc"],
    ["", "héllo", "a\tb", " padded ", "trail\n", "x" * 300],
    ["2024-02-29", "infinity", "-infinity", "0001-01-01", "2024-13-01", "1999-01-01 BC"],
    ["2024-01-02 03:04:05.678901", "infinity", "2024-01-02 03:04:05", "garbage"],
    ["2024-01-02 03:04:05.678901+00", "2024-01-02 03:04:05-07:30", "-infinity"],
    ["t", "f"],
    ["\\x00ff", "\\x", "nothex"],
    ["1.5", "-0", "Infinity", "1e308", "x"],
]


def _wire(values: list[str | object | None]) -> bytes:
    out = struct.pack("!h", len(values))
    for value in values:
        if value is None:
            out += b"n"
        elif value is UNCHANGED_TOAST:
            out += b"u"
        else:
            data = str(value).encode()
            out += b"t" + struct.pack("!i", len(data)) + data
    return out


def _generic(data: bytes, parsers: list[Any], pick: list[int] | None) -> list[Any]:
    values, _end = _tuple(data, 0)
    kept = values if pick is None else [values[i] for i in pick]
    out = []
    for parse, value in zip(parsers, kept, strict=True):
        if value is UNCHANGED_TOAST:
            raise Fallback  # the generic path fills these in; the reader must decline
        out.append(value if value is None or parse is None else parse(value))
    return out


@pytest.mark.parametrize("seed", range(300))
def test_reader_equals_the_generic_path_or_declines(seed: int) -> None:
    rng = random.Random(seed)
    width = rng.randint(1, 8)
    kinds = [rng.randrange(len(PARSERS)) for _ in range(width)]
    pick = None if rng.random() < 0.5 else sorted(rng.sample(range(width), rng.randint(1, width)))
    parsers = [PARSERS[k] for k in (kinds if pick is None else [kinds[i] for i in pick])]
    reader = tuple_reader(parsers, pick, width)
    row: list[str | object | None] = []
    for kind in kinds:
        roll = rng.random()
        row.append(None if roll < 0.15 else UNCHANGED_TOAST if roll < 0.2 else rng.choice(TEXTS[kind]))
    data = b"Npad" + _wire(row)
    try:
        expected: Any = _generic(data[4:], parsers, pick)
    except (Fallback, ValueError, ArithmeticError):
        expected = Fallback
    try:
        got: Any = reader(data, 4)
    except Fallback:
        got = Fallback
    if expected is Fallback:
        assert got is Fallback, f"the reader took a tuple the generic path refuses: {row!r} -> {got!r}"
    elif got is not Fallback:  # NaN never equals itself: compare the values' reprs, which also compares types
        assert [repr(v) for v in got] == [repr(v) for v in expected]


def test_a_tuple_of_another_width_is_declined() -> None:
    reader = tuple_reader([int, None], None, 2)
    with pytest.raises(Fallback):
        reader(_wire(["1", "a", "b"]), 0)
    assert reader(_wire(["1", "a"]), 0) == [1, "a"]


def test_only_picked_columns_are_parsed() -> None:
    reader = tuple_reader([None], [2], 4)  # the first two are excluded and need no parser
    assert reader(_wire(["not an int", None, "kept", "after"]), 0) == ["kept"]
