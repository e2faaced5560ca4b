"""The pgoutput decoder against byte fixtures laid out as the PostgreSQL 15 manual describes them."""

from __future__ import annotations

import struct

import pytest

from liberator.connectors.postgres_wal.pgoutput import (
    PG_EPOCH_MICROS,
    UNCHANGED_TOAST,
    Begin,
    Commit,
    Delete,
    Insert,
    Message,
    ProtocolError,
    Relation,
    RelationColumn,
    Truncate,
    TypeMessage,
    Update,
    decode,
)
from liberator.connectors.postgres_wal.stream import status_update


def tuple_data(*columns: bytes | str | None) -> bytes:
    out = struct.pack("!h", len(columns))
    for column in columns:
        if column is None:
            out += b"n"
        elif column == "u":
            out += b"u"
        else:
            raw = column.encode() if isinstance(column, str) else column
            out += b"t" + struct.pack("!i", len(raw)) + raw
    return out


def test_begin_and_commit() -> None:
    begin = decode(b"B" + struct.pack("!QqI", 0x16B3748, 1_000_000, 731))
    assert begin == Begin(final_lsn=0x16B3748, commit_micros=PG_EPOCH_MICROS + 1_000_000, xid=731)
    commit = decode(b"C" + struct.pack("!BQQq", 0, 0x16B3748, 0x16B3780, 5))
    assert commit == Commit(0, 0x16B3748, 0x16B3780, PG_EPOCH_MICROS + 5)


def test_relation_with_key_flags_types_and_typmods() -> None:
    body = b"R" + struct.pack("!I", 16385) + b"public\x00orders\x00" + b"f" + struct.pack("!h", 2)
    body += b"\x01id\x00" + struct.pack("!Ii", 23, -1)
    body += b"\x00total\x00" + struct.pack("!Ii", 1700, (10 << 16 | 2) + 4)
    assert decode(body) == Relation(
        16385,
        "public",
        "orders",
        "f",
        (RelationColumn(True, "id", 23, -1), RelationColumn(False, "total", 1700, 655366)),
    )


def test_insert_update_delete_tuples_with_null_unchanged_and_utf8() -> None:
    insert = decode(b"I" + struct.pack("!I", 7) + b"N" + tuple_data("1", None, "zürich"))
    assert insert == Insert(7, ["1", None, "zürich"])

    update = decode(b"U" + struct.pack("!I", 7) + b"O" + tuple_data("1", "a", "x") + b"N" + tuple_data("1", "b", "u"))
    assert update == Update(7, ["1", "a", "x"], True, ["1", "b", UNCHANGED_TOAST])

    plain = decode(b"U" + struct.pack("!I", 7) + b"N" + tuple_data("2", "c", None))
    assert plain == Update(7, None, False, ["2", "c", None])

    key_change = decode(b"U" + struct.pack("!I", 7) + b"K" + tuple_data("1", None, None) + b"N" + tuple_data("9"))
    assert isinstance(key_change, Update) and key_change.old == ["1", None, None] and not key_change.old_is_full

    delete = decode(b"D" + struct.pack("!I", 7) + b"K" + tuple_data("1", None, None))
    assert delete == Delete(7, ["1", None, None], False)


def test_binary_column_values_stay_bytes() -> None:
    body = b"I" + struct.pack("!I", 1) + b"N" + struct.pack("!h", 1) + b"b" + struct.pack("!i", 2) + b"\x00\xff"
    assert decode(body) == Insert(1, [b"\x00\xff"])


def test_truncate_logical_message_and_type() -> None:
    assert decode(b"T" + struct.pack("!iB", 2, 3) + struct.pack("!II", 5, 6)) == Truncate((5, 6), True, True)
    message = decode(b"M" + struct.pack("!BQ", 1, 42) + b"outbox\x00" + struct.pack("!i", 3) + b"abc")
    assert message == Message(True, 42, "outbox", b"abc")
    assert decode(b"Y" + struct.pack("!I", 9001) + b"public\x00mood\x00") == TypeMessage(9001, "public", "mood")


def test_malformed_and_unknown_messages_are_protocol_errors() -> None:
    with pytest.raises(ProtocolError, match="malformed"):
        decode(b"I" + struct.pack("!I", 7) + b"N" + struct.pack("!h", 2) + b"n")
    with pytest.raises(ProtocolError, match="only protocol version 1"):
        decode(b"S" + b"\x00" * 8)
    with pytest.raises(ProtocolError, match="unknown tuple column kind"):
        decode(b"I" + struct.pack("!I", 7) + b"N" + struct.pack("!h", 1) + b"x")


def test_standby_status_update_reports_one_lsn_for_write_flush_and_apply() -> None:
    frame = status_update(0x1_0000_0010)
    kind, written, flushed, applied, _micros, reply = struct.unpack("!cQQQqB", frame)
    assert (kind, written, flushed, applied, reply) == (b"r", 0x1_0000_0010, 0x1_0000_0010, 0x1_0000_0010, 0)


def test_a_value_longer_than_the_message_is_refused() -> None:
    with pytest.raises(ProtocolError, match="past the end"):
        decode(b"I" + struct.pack("!I", 7) + b"N" + struct.pack("!h", 1) + b"t" + struct.pack("!i", 10) + b"ab")
