"""Python source of one record shape's encoder: the fast path of each neutral type, written out inline.

For each column the generator writes one branch per class a driver hands over for that type (an exact
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

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from liberator.avro import binary
from liberator.avro.binary import NON_NULL, NULL
from liberator.avro.datumwriters import datum_writer
from liberator.avro.schemas import avro_decimal, enum_is_avro
from liberator.avro.values import converter_for
from liberator.schema import (
    ArrayType,
    BoolType,
    BytesType,
    Column,
    ColumnType,
    DateType,
    DecimalType,
    EnumType,
    FloatType,
    IntervalType,
    IntType,
    JsonType,
    StringType,
    TextRepr,
    TimestampType,
    TimeType,
    UuidType,
)


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


def text_body(src: RecordSource, ind: int, v: str) -> None:
    prefix = src.take(ind)
    src.line(ind, f"b = {v}.encode()")
    sized_lines(src, ind, "b", prefix)


def call_body(expression: str) -> Body:
    """A body encoding the string `expression` makes of the value (the converter's own expression)."""

    def body(src: RecordSource, ind: int, v: str) -> None:
        prefix = src.take(ind)
        src.line(ind, f"b = {expression.format(v=v)}.encode()")
        sized_lines(src, ind, "b", prefix)

    return body


def bytes_body(src: RecordSource, ind: int, v: str) -> None:
    sized_lines(src, ind, v, src.take(ind))


def int_branches(bits: int, unsigned: bool) -> list[Branch]:
    lo, hi = (0, 2**bits - 1) if unsigned else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    if unsigned and bits >= 64:  # bytes decimal(20, 0)

        def u64(src: RecordSource, ind: int, v: str) -> None:
            prefix = src.take(ind)
            src.line(ind, f"b = {v}.to_bytes(({v}.bit_length() + 8) >> 3, 'big')")
            sized_lines(src, ind, "b", prefix)

        return [Branch(exact("int", f"{{v}} <= {hi} and {{v}} >= 0"), u64)]
    return [Branch(exact("int", f"{lo} <= {{v}} <= {hi}"), lambda src, ind, v: zigzag_lines(src, ind, v))]


def unscaled_lines(src: RecordSource, ind: int, n: str, precision: int, prefix: bytes) -> None:
    limit = 10**precision
    src.line(ind, f"if not -{limit} < {n} < {limit}:")
    src.line(ind + 1, "raise Miss")
    # fastavro sizes the two's complement from the magnitude; int.bit_length() is the magnitude's
    src.line(ind, f"b = {n}.to_bytes(({n}.bit_length() + 8) >> 3, 'big', signed=True)")
    if (limit.bit_length() + 8) >> 3 < 128:  # the length prefix is one byte (and the branch's, if any)
        src.line(ind, f"buf += {src.ref(tuple(prefix + b for b in binary.SMALL[:256]), 'len')}[len(b) << 1]")
        src.line(ind, "buf += b")
    else:
        sized_lines(src, ind, "b", prefix)


def decimal_branches(precision: int, scale: int) -> list[Branch]:
    unit = 10**scale

    def from_decimal(src: RecordSource, ind: int, v: str) -> None:
        # as_integer_ratio is exact and ignores the decimal context; n/q * unit must be an integer,
        # which is DatumConverter's "no digits past the scale but zeros"
        prefix = src.take(ind)
        src.line(ind, f"n, q = {v}.as_integer_ratio()")
        src.line(ind, f"if q != {unit}:")
        src.line(ind + 1, f"if {unit} % q:")
        src.line(ind + 2, "raise Miss")
        src.line(ind + 1, f"n *= {unit} // q")
        unscaled_lines(src, ind, "n", precision, prefix)

    def from_int(src: RecordSource, ind: int, v: str) -> None:
        prefix = src.take(ind)
        src.line(ind, f"n = {v} * {unit}")
        unscaled_lines(src, ind, "n", precision, prefix)

    return [Branch(exact("Decimal"), from_decimal), Branch(exact("int"), from_int)]


def timestamp_body(src: RecordSource, ind: int, v: str) -> None:
    # fastavro: (days * 86400 + seconds) * 10**6 + micros of (value - epoch); naive values as UTC
    src.line(ind, f"t = {v} - (EN if {v}.tzinfo is None else E)")
    src.line(ind, "m = (t.days * 86400 + t.seconds) * 1000000 + t.microseconds")
    zigzag_lines(src, ind, "m", large=True)


def date_body(src: RecordSource, ind: int, v: str) -> None:
    src.line(ind, f"m = {v}.toordinal() - {binary.DAYS_SHIFT}")
    zigzag_lines(src, ind, "m")


def time_body(src: RecordSource, ind: int, v: str) -> None:
    # a tzinfo is ignored, as DatumConverter passes the time through and fastavro reads only its fields
    src.line(ind, f"n = ({v}.hour * 3600000000 + {v}.minute * 60000000 + {v}.second * 1000000 + {v}.microsecond) << 1")
    varint_lines(src, ind, "n")


def duration_body(src: RecordSource, ind: int, v: str) -> None:
    # MySQL TIME arrives as a timedelta: a time of day only within one day
    src.line(ind, f"m = ({v}.days * 86400 + {v}.seconds) * 1000000 + {v}.microseconds")
    src.line(ind, f"if not 0 <= m < {binary.MICROS_PER_DAY}:")
    src.line(ind + 1, "raise Miss")
    src.line(ind, "n = m << 1")
    varint_lines(src, ind, "n")


def uuid_body(src: RecordSource, ind: int, v: str) -> None:
    # str(UUID), lower-case hyphenated, 36 characters, without its two Python-level calls
    src.put(ind, binary.length_bytes(36))
    src.line(ind, f"h = b'%032x' % {v}.int")
    src.line(ind, "buf += h[:8]; buf += b'-'; buf += h[8:12]; buf += b'-'; buf += h[12:16]; buf += b'-'")
    src.line(ind, "buf += h[16:20]; buf += b'-'; buf += h[20:]")


def uuid_text_body(src: RecordSource, ind: int, v: str) -> None:
    src.put(ind, binary.length_bytes(36))
    src.line(ind, f"buf += {v}.encode()")


def interval_body(src: RecordSource, ind: int, v: str) -> None:
    # {months, days, micros} as parse_pg_interval makes it; the converter checks what this checks
    for key, bits in (("months", 32), ("days", 32), ("micros", 64)):
        src.line(ind, f"m = {v}[{key!r}]")
        src.line(ind, f"if m.__class__ is not int or not {-(2 ** (bits - 1))} <= m <= {2 ** (bits - 1) - 1}:")
        src.line(ind + 1, "raise Miss")
        zigzag_lines(src, ind, "m")


def enum_branches(enum: EnumType) -> list[Branch]:
    as_avro = enum_is_avro(enum)

    def body(src: RecordSource, ind: int, v: str) -> None:
        prefix = src.take(ind)
        encoded = {
            s: prefix + (binary.long_bytes(i) if as_avro else binary.string_bytes(s))
            for i, s in enumerate(enum.symbols)
        }
        src.line(ind, f"b = {src.ref(encoded, 'enum')}.get({v})")
        src.line(ind, "if b is None:")
        src.line(ind + 1, "raise Miss")  # not a symbol: the reference error
        src.line(ind, "buf += b")

    return [Branch(exact("str"), body)]


def array_branches(item: ColumnType, item_nullable: bool) -> list[Branch]:
    def body(src: RecordSource, ind: int, v: str) -> None:
        element = src.fresh("e")
        src.line(ind, f"if {v}:")
        src.line(ind + 1, f"n = len({v}) << 1")
        varint_lines(src, ind + 1, "n")
        src.line(ind + 1, f"for {element} in {v}:")
        emit_value(src, ind + 2, element, item, item_nullable, top=False)
        src.put(ind, NULL)

    return [Branch(exact("list"), body)]


def branches(ctype: ColumnType) -> list[Branch]:
    """The inline branches of a type; values they do not match take the converter's path."""
    match ctype:
        case IntType(bits=bits, unsigned=unsigned):
            return int_branches(bits, unsigned)
        case FloatType(bits=bits):
            pack = "_pack_f" if bits <= 32 else "_pack_d"
            return [Branch(exact("float"), lambda src, ind, v: src.line(ind, f"buf += {pack}({v})"))]
        case DecimalType(precision=int() as precision, scale=scale):
            return decimal_branches(*avro_decimal(precision, scale))
        case BoolType():
            return [
                Branch(lambda v: f"{v} is True", lambda src, ind, v: src.put(ind, b"\x01")),
                Branch(lambda v: f"{v} is False", lambda src, ind, v: src.put(ind, b"\x00")),
            ]
        case StringType() | JsonType() | TextRepr():
            return [Branch(exact("str"), text_body)]  # the converters pass such a str through as is
        case TimeType(with_timezone=True):
            return [Branch(exact("str"), text_body), Branch(exact("time"), call_body("{v}.isoformat()"))]
        case DecimalType(precision=None):
            return [Branch(exact("Decimal"), call_body("format({v}, 'f')"))]  # plain notation, the stored scale
        case BytesType():
            return [Branch(exact("bytes"), bytes_body)]
        case DateType():
            return [Branch(exact("date"), date_body)]
        case TimeType():
            return [Branch(exact("time"), time_body), Branch(exact("timedelta"), duration_body)]
        case TimestampType():
            return [Branch(exact("datetime"), timestamp_body)]
        case UuidType():
            # text already in the form str(UUID(text)) gives (PostgreSQL's) is that form; other text converts
            return [
                Branch(exact("UUID"), uuid_body),
                Branch(exact("str", "_CANONICAL_UUID({v}) is not None"), uuid_text_body),
            ]
        case EnumType() as enum:
            return enum_branches(enum)
        case IntervalType():
            return [Branch(exact("dict"), interval_body)]
        case ArrayType(item=item, item_nullable=item_nullable):
            return array_branches(item, item_nullable)
    return []  # unconstrained decimals, sets, bits, intervals: the converter's path


def datum_function(ctype: ColumnType) -> Callable[[Any], Any]:
    """DatumConverter's rule for one value that is not None: its exact class as is, else converted."""
    exact_class, convert = converter_for(ctype, "")

    def datum(value: Any) -> Any:
        return value if value.__class__ is exact_class else convert(value)

    return datum


def emit_value(src: RecordSource, ind: int, v: str, ctype: ColumnType, nullable: bool, top: bool) -> None:
    """The code appending the encoding of variable `v`: a column (`top`) or an array item."""
    keyword = "if"
    for branch in branches(ctype):
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
