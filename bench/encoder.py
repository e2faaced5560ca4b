"""Avro encoding alone, per row: the reference path against RowEncoder + ChangeWriter, in the same run.

    python bench/encoder.py [--rows 20000] [--repeat 7] [--profile]

The reference is what the daemon does today for each event: `DatumConverter.convert_values` for the key
and the row image(s), `change_value` for the envelope, `AvroEncoder.encode` (fastavro) for each. The fast
path is `RowEncoder.encode` for the key and each image, and `ChangeWriter.write` with one `change_context`
per 1000-row transaction. Both produce framed messages (schema id header) and both compute ts_ms per row.
Two row shapes: the WAL bench's `orders` row, and a wide row of 24 columns of many types, with values
of the classes the WAL source's parsers make (uuid and timetz as text, intervals as dicts, ...). Every output is first
checked to be byte-identical to the reference's. Rates come from the best of `--repeat` interleaved
runs; the machine is shared and noisy, so read the ratio column. No servers needed.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from datetime import time as time_of_day
from decimal import Decimal
from typing import Any

from liberator.avro import (
    AvroEncoder,
    ChangeWriter,
    DatumConverter,
    RowEncoder,
    change_context,
    key_schema,
    value_schema,
)
from liberator.envelope import Op, SourceInfo, change_schema, change_value
from liberator.schema import (
    ArrayType,
    BoolType,
    BytesType,
    Column,
    DateType,
    DecimalType,
    EnumType,
    FloatType,
    IntervalType,
    IntType,
    JsonType,
    StringType,
    TableSchema,
    TextRepr,
    TimestampType,
    TimeType,
    UuidType,
)

TX_ROWS = 1000
INFO = SourceInfo("postgres_wal", "bench", "127.0.0.1:5432", "public", "orders")

ORDERS = TableSchema(
    "public",
    "orders",
    (
        Column("id", IntType(64), False, "bigint"),
        Column("customer", StringType(50), False, "character varying(50)"),
        Column("total", DecimalType(10, 2), True, "numeric(10,2)"),
        Column("qty", IntType(32), False, "integer"),
        Column("note", StringType(), True, "text"),
        Column("updated_at", TimestampType(6), False, "timestamp without time zone"),
    ),
    ("id",),
)

WIDE = TableSchema(
    "public",
    "wide",
    (
        Column("id", IntType(64), False, "bigint"),
        Column("small", IntType(16), True, "smallint"),
        Column("medium", IntType(32), True, "integer"),
        Column("ratio", FloatType(32), True, "real"),
        Column("score", FloatType(64), True, "double precision"),
        Column("price", DecimalType(12, 4), True, "numeric(12,4)"),
        Column("amount", DecimalType(None, None), True, "numeric"),
        Column("active", BoolType(), False, "boolean"),
        Column("code", StringType(8, fixed=True), True, "character(8)"),
        Column("body", StringType(), True, "text"),
        Column("blob", BytesType(), True, "bytea"),
        Column("born", DateType(), True, "date"),
        Column("opens", TimeType(), True, "time without time zone"),
        Column("opens_tz", TimeType(with_timezone=True), True, "time with time zone"),
        Column("created", TimestampType(), False, "timestamp without time zone"),
        Column("seen", TimestampType(with_timezone=True), True, "timestamp with time zone"),
        Column("ref", UuidType(), True, "uuid"),
        Column("doc", JsonType(), True, "jsonb"),
        Column("state", EnumType(("new", "paid", "shipped"), "order_state"), False, "order_state"),
        Column("counts", ArrayType(IntType(32)), True, "integer[]"),
        Column("tags", ArrayType(StringType()), True, "text[]"),
        Column("every", IntervalType(), True, "interval"),
        Column("addr", TextRepr("inet"), True, "inet"),
        Column("flags", IntType(64, unsigned=True), True, "bigint unsigned"),
    ),
    ("id",),
)


def orders_rows(count: int) -> list[list[Any]]:
    """The values the WAL source hands over for the rows `bench/postgres_wal.py` inserts."""
    start = datetime(2024, 1, 1)
    return [
        [
            i,
            f"customer-{i % 1000}",
            Decimal(i % 100000) / 100 if i % 7 else None,
            i % 50 + 1,
            None if i % 10 == 0 else f"note {i}",
            start + timedelta(milliseconds=i),
        ]
        for i in range(1, count + 1)
    ]


def wide_rows(count: int) -> list[list[Any]]:
    start = datetime(2024, 1, 1, 8)
    return [
        [
            i,
            i % 30000,
            i * 7,
            i / 8,
            i / 3,
            Decimal(i) / 10000,
            Decimal(i) / 7 if i % 3 else None,
            i % 2 == 0,
            f"C{i % 10000:07d}",
            "żółw " * (i % 5),
            bytes([i % 256]) * 16,
            date(1970, 1, 1) + timedelta(days=i % 20000),
            time_of_day(i % 24, i % 60, i % 60, i % 1000),
            f"{i % 24:02d}:30:00+02:00",
            start + timedelta(microseconds=i * 1001),
            (start + timedelta(seconds=i)).replace(tzinfo=UTC),
            str(uuid.UUID(int=i * 2**64 + i)),
            f'{{"n": {i}, "tags": ["a", "b"]}}',
            ("new", "paid", "shipped")[i % 3],
            [i, i + 1, None],
            ["x", f"t{i}"],
            {"months": i % 12, "days": i % 30, "micros": 3_723_000_000},
            f"10.0.{i % 256}.1/24",
            2**63 + i,
        ]
        for i in range(1, count + 1)
    ]


class Paths:
    """The reference and the fast encoding of one table's events."""

    def __init__(self, table: TableSchema) -> None:
        namespace = f"liberator.bench.{table.name}"
        value = value_schema(table, namespace)
        self.key_index = [table.columns.index(c) for c in table.key_columns]
        self.key_converter, self.converter = DatumConverter.for_key(table), DatumConverter(table)
        self.key_avro = AvroEncoder(key_schema(table, namespace), 1)
        self.value_avro = AvroEncoder(value, 2)
        self.change_avro = AvroEncoder(change_schema(value), 3)
        self.key_fast = RowEncoder.for_key(table, schema_id=1)
        self.value_fast = RowEncoder(table, schema_id=2)
        self.body_fast = RowEncoder(table)
        self.change_fast = ChangeWriter(INFO, schema_id=3)

    def key_reference(self, rows: Sequence[list[Any]]) -> list[bytes]:
        index, convert, encode = self.key_index, self.key_converter.convert_values, self.key_avro.encode
        return [encode(convert([row[i] for i in index])) for row in rows]

    def key(self, rows: Sequence[list[Any]]) -> list[bytes]:
        index, encode = self.key_index, self.key_fast.encode
        return [encode([row[i] for i in index]) for row in rows]

    def value_reference(self, rows: Sequence[list[Any]]) -> list[bytes]:
        convert, encode = self.converter.convert_values, self.value_avro.encode
        return [encode(convert(row)) for row in rows]

    def value(self, rows: Sequence[list[Any]]) -> list[bytes]:
        return self.value_fast.encode_many(rows)

    def change_reference(
        self, rows: Sequence[list[Any]], update: bool = False, ts_ms: int | None = None
    ) -> list[bytes]:
        convert, encode = self.converter.convert_values, self.change_avro.encode
        out = []
        for n, row in enumerate(rows):
            txn, order = divmod(n, TX_ROWS)
            after = convert(row)
            datum = change_value(
                Op.update if update else Op.create,
                convert(row) if update else None,
                after,
                INFO,
                position=f"0/{txn:X}",
                commit_ms=1_700_000_000_000 + txn,
                transaction_id=str(txn),
                order=order + 1,
                ts_ms=int(time.time() * 1000) if ts_ms is None else ts_ms,
            )
            out.append(encode(datum))
        return out

    def change(self, rows: Sequence[list[Any]], update: bool = False, ts_ms: int | None = None) -> list[bytes]:
        body, write = self.body_fast.encode, self.change_fast.write
        op = Op.update if update else Op.create
        out = []
        context = change_context()
        for n, row in enumerate(rows):
            txn, order = divmod(n, TX_ROWS)
            if order == 0:
                context = change_context(
                    position=f"0/{txn:X}", commit_ms=1_700_000_000_000 + txn, transaction_id=str(txn)
                )
            after = body(row)
            ts = int(time.time() * 1000) if ts_ms is None else ts_ms
            out.append(write(op, body(row) if update else None, after, context, order + 1, ts))
        return out

    def phases(self) -> list[tuple[str, Callable[[Sequence[list[Any]]], list[bytes]], Callable[..., list[bytes]], str]]:
        """(phase, reference, fast, target ratio of times)."""
        return [
            ("key", self.key_reference, self.key, ""),
            ("flat value (state envelope)", self.value_reference, self.value, "<= 0.33"),
            ("change envelope, insert", self.change_reference, self.change, "<= 0.20"),
            (
                "change envelope, update with before",
                lambda rows: self.change_reference(rows, update=True),
                lambda rows: self.change(rows, update=True),
                "",
            ),
            (
                "event: key + change envelope",
                lambda rows: (self.key_reference(rows), self.change_reference(rows)),
                lambda rows: (self.key(rows), self.change(rows)),
                "",
            ),
        ]

    def check(self, rows: Sequence[list[Any]]) -> None:
        """Every fast output byte-identical to the reference's (the fixed ts_ms makes envelopes comparable)."""
        assert self.key(rows) == self.key_reference(rows)
        assert self.value(rows) == self.value_reference(rows)
        for update in (False, True):
            assert self.change(rows, update, ts_ms=1) == self.change_reference(rows, update, ts_ms=1)
        slow = "/".join(str(e.slow_rows) for e in (self.key_fast, self.value_fast, self.body_fast))
        print(f"  {self.key_fast.table.name}: byte-identical; rows key/value/body sent the reference way: {slow}")


def best_micros(run: Callable[[Sequence[list[Any]]], Any], rows: Sequence[list[Any]]) -> float:
    t0 = time.perf_counter()
    run(rows)
    return (time.perf_counter() - t0) / len(rows) * 1e6


def bench(shape: str, table: TableSchema, rows: list[list[Any]], repeat: int) -> list[tuple[str, ...]]:
    paths = Paths(table)
    paths.check(rows[: min(len(rows), 3000)])
    results = []
    for phase, reference, fast, target in paths.phases():
        ref_us, fast_us = float("inf"), float("inf")
        for _ in range(repeat):  # interleaved, so a noisy moment hits both
            ref_us = min(ref_us, best_micros(reference, rows))
            fast_us = min(fast_us, best_micros(fast, rows))
        ratio = fast_us / ref_us
        print(f"  {shape} {phase}: reference {ref_us:.2f} µs/row, fast {fast_us:.2f} µs/row", flush=True)
        verdict = "" if not target else (" ok" if ratio <= float(target.split()[-1]) else " MISSED")
        results.append(
            (shape, phase, f"{ref_us:.2f}", f"{fast_us:.2f}", f"{ratio:.3f}", f"{1 / ratio:.1f}x", target + verdict)
        )
    return results


def print_table(results: list[tuple[str, ...]]) -> None:
    header = ("shape", "phase", "reference µs/row", "fast µs/row", "fast/ref", "speedup", "target (fast/ref)")
    widths = [max(len(row[i]) for row in [header, *results]) for i in range(len(header))]
    line = "  ".join(f"{h:<{w}}" if i < 2 else f"{h:>{w}}" for i, (h, w) in enumerate(zip(header, widths, strict=True)))
    print("\n" + line + "\n" + "-" * len(line))
    for row in results:
        print(
            "  ".join(f"{c:<{w}}" if i < 2 else f"{c:>{w}}" for i, (c, w) in enumerate(zip(row, widths, strict=True)))
        )
    print("fast/ref = time per row of the fast path / of the reference, measured in this run (lower is better)")


def profile(rows: list[list[Any]]) -> None:
    paths = Paths(ORDERS)
    for name, run in (("reference", paths.change_reference), ("fast", paths.change)):
        print(f"\n--- cProfile: WAL change envelope, {name} path, {len(rows)} rows")
        profiler = cProfile.Profile()
        profiler.runcall(run, rows)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(12)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--profile", action="store_true", help="cProfile both paths of the WAL change envelope")
    args = parser.parse_args()
    if args.profile:
        profile(orders_rows(args.rows))
        return
    results = bench("orders", ORDERS, orders_rows(args.rows), args.repeat)
    results += bench("wide", WIDE, wide_rows(args.rows // 4), args.repeat)
    print_table(results)


if __name__ == "__main__":
    main()
