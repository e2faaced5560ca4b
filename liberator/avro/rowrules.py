"""The fast path of each neutral type: which classes a generated encoder takes inline, and how.

Each rule is a list of `Branch`es, tried in order: a condition on the value's exact class (and range), and
the code that appends its encoding. A value no branch takes goes the converter's way (`rowcode`). The
algorithms are fastavro's for the datum DatumConverter would make of the value (fastavro's pure-Python
`_logical_writers_py` shows them), written for the classes drivers hand over.
"""

from __future__ import annotations

from liberator.avro import binary
from liberator.avro.binary import NULL
from liberator.avro.rowsource import (
    Body,
    Branch,
    Emit,
    RecordSource,
    exact,
    sized_lines,
    varint_lines,
    zigzag_lines,
)
from liberator.avro.schemas import avro_decimal, enum_is_avro
from liberator.schema import (
    ArrayType,
    BoolType,
    BytesType,
    ColumnType,
    DateType,
    DecimalType,
    DurationType,
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


def time_delta_body(src: RecordSource, ind: int, v: str) -> None:
    # a time of day some driver returns as the span since midnight: only within one day
    src.line(ind, f"m = ({v}.days * 86400 + {v}.seconds) * 1000000 + {v}.microseconds")
    src.line(ind, f"if not 0 <= m < {binary.MICROS_PER_DAY}:")
    src.line(ind + 1, "raise Miss")
    src.line(ind, "n = m << 1")
    varint_lines(src, ind, "n")


def duration_body(src: RecordSource, ind: int, v: str) -> None:
    # MySQL TIME: signed microseconds; a timedelta can exceed a long, which the converter refuses
    src.line(ind, f"m = ({v}.days * 86400 + {v}.seconds) * 1000000 + {v}.microseconds")
    src.line(ind, f"if not {-(2**63)} <= m <= {2**63 - 1}:")
    src.line(ind + 1, "raise Miss")
    zigzag_lines(src, ind, "m")


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


def array_branches(item: ColumnType, item_nullable: bool, emit: Emit) -> list[Branch]:
    def body(src: RecordSource, ind: int, v: str) -> None:
        element = src.fresh("e")
        src.line(ind, f"if {v}:")
        src.line(ind + 1, f"n = len({v}) << 1")
        varint_lines(src, ind + 1, "n")
        src.line(ind + 1, f"for {element} in {v}:")
        emit(src, ind + 2, element, item, item_nullable, False)
        src.put(ind, NULL)

    return [Branch(exact("list"), body)]


def branches(ctype: ColumnType, emit: Emit) -> list[Branch]:
    """The inline branches of a type; values they do not match take the converter's path. `emit` writes
    the code of an array's items (it is `rowcode.emit_value`)."""
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
            return [Branch(exact("time"), time_body), Branch(exact("timedelta"), time_delta_body)]
        case DurationType():
            return [Branch(exact("timedelta"), duration_body)]
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
            return array_branches(item, item_nullable, emit)
    return []  # sets and bits: the converter's path (as is any class no branch takes)
