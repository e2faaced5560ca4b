"""Every PostgreSQL 15 built-in type, with NULLs and extremes, through the snapshot and the stream alike.

Each column is checked three ways: the datum equals the value PostgreSQL holds (written out here, or the
server's own text for text-represented types), the snapshot and the stream produce the same datum, and
the datum encodes under the stream's Avro schema and decodes back unchanged.
"""

from __future__ import annotations

import datetime as dt
import io
import math
import struct
from decimal import Decimal
from typing import Any

import fastavro
import pytest

from tests.integration.postgres_wal_support import Run, WalDb, env

UTC = dt.UTC

# column, type, (low, high, special) literals, expected datums (None: the server's text of the value)
COLUMNS: list[tuple[str, str, tuple[str, str, str], tuple[Any, Any, Any] | None]] = [
    ("i2", "smallint", ("-32768", "32767", "0"), (-32768, 32767, 0)),
    ("i4", "integer", ("-2147483648", "2147483647", "0"), (-(2**31), 2**31 - 1, 0)),
    ("i8", "bigint", ("-9223372036854775808", "9223372036854775807", "0"), (-(2**63), 2**63 - 1, 0)),
    ("f4", "real", ("-3.4028235e38", "1.4e-45", "'NaN'"), (-3.4028235e38, 1.4e-45, math.nan)),
    (
        "f8",
        "double precision",
        ("-1.7976931348623157e308", "5e-324", "'-Infinity'"),
        (-1.7976931348623157e308, 5e-324, -math.inf),
    ),
    (
        "n",
        "numeric(10,2)",
        ("-99999999.99", "99999999.99", "0.10"),
        (Decimal("-99999999.99"), Decimal("99999999.99"), Decimal("0.10")),
    ),
    ("nneg", "numeric(2,-3)", ("-99000", "99000", "1000"), (Decimal("-99000"), Decimal("99000"), Decimal("1000"))),
    (
        "nfree",
        "numeric",
        ("-1e-300", "123456789012345678901234567890.000000000000000000001", "'NaN'"),
        ("-0." + "0" * 299 + "1", "123456789012345678901234567890.000000000000000000001", "NaN"),
    ),
    ("ninf", "numeric", ("'-Infinity'", "'Infinity'", "1.50"), ("-Infinity", "Infinity", "1.50")),
    (
        "m",
        "money",
        ("'-92233720368547758.08'", "'92233720368547758.07'", "0.01"),
        (Decimal("-92233720368547758.08"), Decimal("92233720368547758.07"), Decimal("0.01")),
    ),
    ("b", "boolean", ("false", "true", "true"), (False, True, True)),
    ("c3", "char(3)", ("''", "'abc'", "'é'"), ("   ", "abc", "é  ")),
    ("vc", "varchar(5)", ("''", "'ééééé'", "'a b'"), ("", "ééééé", "a b")),
    ("t", "text", ("''", "'line1\nline2\ttab \\ \"q\" ''s'''", "'🙂'"), ("", "line1\nline2\ttab \\ \"q\" 's'", "🙂")),
    ("nm", "name", ("'a'", "'" + "n" * 63 + "'", "'x'"), ("a", "n" * 63, "x")),
    ("ch", '"char"', ("'a'", "'z'", "'0'"), ("a", "z", "0")),
    ("by", "bytea", ("'\\x'", "'\\x00ff10'", "'\\x5c'"), (b"", b"\x00\xff\x10", b"\\")),
    (
        "d",
        "date",
        ("'0001-01-01'", "'9999-12-31'", "'infinity'"),
        (dt.date(1, 1, 1), dt.date(9999, 12, 31), dt.date.max),
    ),
    (
        "tm",
        "time",
        ("'00:00:00'", "'23:59:59.999999'", "'12:00:00.5'"),
        (dt.time(0), dt.time(23, 59, 59, 999999), dt.time(12, 0, 0, 500000)),
    ),
    (
        "tmz",
        "timetz",
        ("'00:00:00+15:59'", "'23:59:59.999999-15:59'", "'12:00:00.25+02'"),
        ("00:00:00+15:59", "23:59:59.999999-15:59", "12:00:00.250000+02:00"),
    ),
    (
        "ts",
        "timestamp",
        ("'0001-01-01 00:00:00'", "'9999-12-31 23:59:59.999999'", "'infinity'"),
        (
            dt.datetime(1, 1, 1, tzinfo=UTC),
            dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
            dt.datetime.max.replace(tzinfo=UTC),
        ),
    ),
    (
        "ts3",
        "timestamp(3)",
        ("'2024-02-29 12:00:00.123'", "'2024-02-29 12:00:00.999'", "'1970-01-01'"),
        (
            dt.datetime(2024, 2, 29, 12, 0, 0, 123000, tzinfo=UTC),
            dt.datetime(2024, 2, 29, 12, 0, 0, 999000, tzinfo=UTC),
            dt.datetime(1970, 1, 1, tzinfo=UTC),
        ),
    ),
    (
        "tstz",
        "timestamptz",
        ("'0001-01-01 00:00:00+00'", "'9999-12-31 23:59:59.999999+00'", "'-infinity'"),
        (
            dt.datetime(1, 1, 1, tzinfo=UTC),
            dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
            dt.datetime.min.replace(tzinfo=UTC),
        ),
    ),
    (
        "iv",
        "interval",
        ("'-178000000 years'", "'178000000 years'", "'1 mon -2 days 03:04:05.000006'"),
        (
            {"months": -2136000000, "days": 0, "micros": 0},
            {"months": 2136000000, "days": 0, "micros": 0},
            {"months": 1, "days": -2, "micros": 11045000006},
        ),
    ),
    (
        "u",
        "uuid",
        (
            "'00000000-0000-0000-0000-000000000000'",
            "'FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF'",
            "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'",
        ),
        (
            "00000000-0000-0000-0000-000000000000",
            "ffffffff-ffff-ffff-ffff-ffffffffffff",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        ),
    ),
    ("j", "json", ("'\"123\"'", "'{\"a\": [1, 2.50, null]}'", "'null'"), ('"123"', '{"a": [1, 2.50, null]}', "null")),
    ("jb", "jsonb", ("'\"x\"'", '\'{"b": 1, "a": 2.50}\'', "'[]'"), ('"x"', '{"a": 2.50, "b": 1}', "[]")),
    ("x", "xml", ("'<a/>'", "'<a b=\"1\">t</a>'", "'text'"), None),
    ("ip", "inet", ("'0.0.0.0'", "'::ffff:1.2.3.4/128'", "'10.1.2.3/8'"), None),
    ("cidr", "cidr", ("'0.0.0.0/0'", "'2001:db8::/32'", "'10.0.0.0/8'"), None),
    ("mac", "macaddr", ("'00:00:00:00:00:00'", "'ff:ff:ff:ff:ff:ff'", "'08:00:2b:01:02:03'"), None),
    ("mac8", "macaddr8", ("'00:00:00:00:00:00:00:00'", "'ff:ff:ff:ff:ff:ff:ff:ff'", "'08:00:2b:01:02:03:04:05'"), None),
    ("bt", "bit(3)", ("B'000'", "B'111'", "B'101'"), ("000", "111", "101")),
    ("vb", "varbit(5)", ("B''", "B'11111'", "B'01'"), ("", "11111", "01")),
    ("ai", "integer[]", ("'{}'", "'{1,NULL,-2147483648}'", "'{0}'"), ([], [1, None, -(2**31)], [0])),
    (
        "at",
        "text[]",
        ("'{}'", '\'{"a,b",NULL,"\\\\\\"q\\\\\\"","NULL"}\'', "'{\"\"}'"),
        ([], ["a,b", None, '\\"q\\"', "NULL"], [""]),
    ),
    (
        "an",
        "numeric(5,1)[]",
        ("'{-9999.9}'", "'{9999.9,NULL}'", "'{}'"),
        ([Decimal("-9999.9")], [Decimal("9999.9"), None], []),
    ),
    (
        "ats",
        "timestamptz[]",
        ("'{\"2024-01-01 00:00:00+00\"}'", "'{infinity}'", "'{}'"),
        ([dt.datetime(2024, 1, 1, tzinfo=UTC)], [dt.datetime.max.replace(tzinfo=UTC)], []),
    ),
    ("e", "mood", ("'sad'", "'happy'", "'in between'"), ("sad", "happy", "in between")),
    (
        "ae",
        "mood[]",
        ("'{}'", "'{sad,\"in between\",NULL}'", "'{happy}'"),
        ([], ["sad", "in between", None], ["happy"]),
    ),
    ("r4", "int4range", ("'empty'", "'[1,10)'", "'(,)'"), None),
    ("rts", "tstzrange", ("'[2024-01-01,2024-02-01)'", "'(,infinity]'", "'empty'"), None),
    ("rn", "numrange", ("'[1.5,2.50]'", "'(,)'", "'empty'"), None),
    ("mr", "int4multirange", ("'{}'", "'{[1,3),[5,7)}'", "'{[1,2)}'"), None),
    ("pt", "point", ("'(0,0)'", "'(1.5,-2.25)'", "'(1e300,-1e-300)'"), None),
    ("ln", "line", ("'{1,-1,0}'", "'{0,1,2.5}'", "'{1,0,0}'"), None),
    ("ls", "lseg", ("'[(0,0),(1,1)]'", "'[(1.5,2),(3,4)]'", "'[(0,0),(0,0)]'"), None),
    ("bx", "box", ("'(1,1),(0,0)'", "'(2.5,3),(-1,-2)'", "'(0,0),(0,0)'"), None),
    ("pa", "path", ("'[(0,0),(1,1)]'", "'((0,0),(1,1),(2,0))'", "'[(0,0)]'"), None),
    ("pg", "polygon", ("'((0,0),(1,1),(2,0))'", "'((0,0))'", "'((1,1),(2,2))'"), None),
    ("ci", "circle", ("'<(0,0),1>'", "'<(1.5,-2),0.5>'", "'<(0,0),0>'"), None),
    ("dom", "posint", ("1", "2147483647", "7"), (1, 2**31 - 1, 7)),
    ("domt", "shorttext", ("''", "'abc'", "'z'"), ("", "abc", "z")),
    ("tv", "tsvector", ("''", "'a:1 fat:2B cat'", "'x'"), None),
    ("tq", "tsquery", ("'a'", "'fat & (rat | cat)'", "'!x'"), None),
    ("o", "oid", ("0", "4294967295", "1"), (0, 2**32 - 1, 1)),
    ("lsn", "pg_lsn", ("'0/0'", "'FFFFFFFF/FFFFFFFF'", "'16/B374D848'"), None),
]


def _same(a: Any, b: Any, float32: bool = False) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if float32 and isinstance(a, float) and isinstance(b, float):
        # real prints its shortest text ("1e-45"); Avro's float holds the same 32-bit value
        return struct.pack("!f", a) == struct.pack("!f", b)
    return bool(a == b)


@pytest.fixture
def typed(pg_url: str) -> WalDb:
    db = WalDb(pg_url)
    db.run("CREATE TYPE mood AS ENUM ('sad', 'in between', 'happy')")
    db.run("CREATE DOMAIN posint AS integer CHECK (VALUE > 0)")
    db.run("CREATE DOMAIN shorttext AS varchar(3)")
    columns = ", ".join(f"{name} {pgtype}" for name, pgtype, _lits, _exp in COLUMNS)
    db.run(f"CREATE TABLE typed (id int PRIMARY KEY, {columns})")
    db.run("ALTER TABLE typed REPLICA IDENTITY FULL")
    return db


def _insert(db: WalDb, base: int) -> None:
    names = ", ".join(name for name, _t, _l, _e in COLUMNS)
    for row in range(3):
        literals = ", ".join(f"({lits[row]})::{pgtype}" for _n, pgtype, lits, _e in COLUMNS)
        db.run(f"INSERT INTO typed (id, {names}) VALUES ({base + row}, {literals})")
    db.run(f"INSERT INTO typed (id) VALUES ({base + 3})")  # every column NULL


def test_every_builtin_type_with_nulls_and_extremes(typed: WalDb) -> None:
    _insert(typed, 1)
    with Run(typed.config(["typed"])) as run:
        run.wait_events(4)
        _insert(typed, 11)
        events = run.wait_events(8)
    outputs = ", ".join(f"format('%s', {n})" for n, _t, _l, _e in COLUMNS)  # each type's output function
    texts = {row[0]: row[1:] for row in typed.rows(f"SELECT id, {outputs} FROM typed")}
    stream = events[0].stream
    assert stream.value_schema is not None
    parsed = fastavro.parse_schema(stream.value_schema)
    for snap, streamed in zip(events[:4], events[4:], strict=True):
        before, after = env(snap)["after"], env(streamed)["after"]
        row = after["id"] - 11
        for index, (name, pgtype, _lits, expected) in enumerate(COLUMNS):
            want = None if row == 3 else (texts[after["id"]][index] if expected is None else expected[row])
            assert _same(after[name], want, pgtype == "real"), f"{name} {pgtype} row {row}: {after[name]!r} != {want!r}"
            assert _same(before[name], after[name]), f"{name}: snapshot {before[name]!r} != stream {after[name]!r}"
        buffer = io.BytesIO()
        fastavro.schemaless_writer(buffer, parsed, env(streamed))
        buffer.seek(0)
        decoded = fastavro.schemaless_reader(buffer, parsed, parsed)
        assert isinstance(decoded, dict) and decoded["after"]["id"] == after["id"]


def test_types_without_an_exact_mapping_are_refused_in_one_line(pg_url: str) -> None:
    db = WalDb(pg_url)
    db.run("CREATE TYPE pair AS (a int, b text)")
    db.run("CREATE TABLE odd (id int PRIMARY KEY, p pair)")
    with (
        Run(db.config(["odd"])) as run,
        pytest.raises(
            Exception, match=r"column p: type pair has no exact Avro mapping; .*exclude: \{public\.odd: \[p\]\}"
        ),
    ):
        run.wait(lambda: False, timeout=10)
    with Run(db.config(["odd"], exclude={"public.odd": ["p"]}, snapshot="never")) as run:
        run.wait(lambda: run.source.phase == "streaming", what="streaming")
        db.run("INSERT INTO odd VALUES (1, ROW(1, 'x'))")
        db.run("UPDATE odd SET p = ROW(2, 'y')")
        assert [env(e)["after"] for e in run.wait_events(2)] == [{"id": 1}, {"id": 1}]
