"""A pure decoder of PostgreSQL's `pgoutput` logical-replication messages (protocol version 1).

Message layouts are those of the PostgreSQL 15 manual, "Logical Replication Message Formats". Only
protocol version 1 is spoken: the server sends a transaction once it has committed, so aborted work is
never seen and nothing needs undoing. Column values stay in the server's text output form here; the type
module turns them into Python values.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

# Microseconds between the Unix epoch and PostgreSQL's (2000-01-01), for commit timestamps.
PG_EPOCH_MICROS: Final = 946_684_800_000_000


class _Unchanged:
    """An unchanged TOASTed value ('u'): the server did not send it, and it is not NULL."""

    _instance: _Unchanged | None = None

    def __new__(cls) -> _Unchanged:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNCHANGED_TOAST"


UNCHANGED_TOAST: Final = _Unchanged()

# A tuple's column values: None (NULL), UNCHANGED_TOAST, str (text format) or bytes (binary format).
TupleValue = str | bytes | _Unchanged | None


class ProtocolError(ValueError):
    """A message that does not follow the pgoutput format (a bug or a newer protocol)."""


@dataclass(frozen=True, slots=True)
class Begin:
    final_lsn: int  # the LSN of the commit record
    commit_micros: int  # since the Unix epoch
    xid: int


@dataclass(frozen=True, slots=True)
class Commit:
    flags: int
    commit_lsn: int
    end_lsn: int  # where the next transaction can start: the resume point
    commit_micros: int


@dataclass(frozen=True, slots=True)
class RelationColumn:
    is_key: bool  # part of the replica identity
    name: str
    type_oid: int
    typmod: int


@dataclass(frozen=True, slots=True)
class Relation:
    relid: int
    namespace: str
    name: str
    replica_identity: str  # d default, n nothing, f full, i index
    columns: tuple[RelationColumn, ...]


@dataclass(frozen=True, slots=True)
class TypeMessage:
    oid: int
    namespace: str
    name: str


@dataclass(frozen=True, slots=True)
class Insert:
    relid: int
    new: list[TupleValue]


@dataclass(frozen=True, slots=True)
class Update:
    relid: int
    old: list[TupleValue] | None  # the old key ('K') or whole old row ('O'), when the server sent one
    old_is_full: bool
    new: list[TupleValue]


@dataclass(frozen=True, slots=True)
class Delete:
    relid: int
    old: list[TupleValue]
    old_is_full: bool


@dataclass(frozen=True, slots=True)
class Truncate:
    relids: tuple[int, ...]
    cascade: bool
    restart_identity: bool


@dataclass(frozen=True, slots=True)
class Message:
    transactional: bool
    lsn: int
    prefix: str
    content: bytes


@dataclass(frozen=True, slots=True)
class Origin:
    lsn: int
    name: str


PgOutputMessage = Begin | Commit | Relation | TypeMessage | Insert | Update | Delete | Truncate | Message | Origin

_I16 = struct.Struct("!h")
_I32 = struct.Struct("!i")
_U32 = struct.Struct("!I")
_BEGIN = struct.Struct("!QqI")
_COMMIT = struct.Struct("!BQQq")
_MESSAGE_HEAD = struct.Struct("!BQ")


def _string(data: bytes, at: int) -> tuple[str, int]:
    end = data.index(b"\x00", at)
    return data[at:end].decode("utf-8"), end + 1


def _tuple(data: bytes, at: int) -> tuple[list[TupleValue], int]:
    (count,) = _I16.unpack_from(data, at)
    at += 2
    values: list[TupleValue] = []
    append = values.append
    for _ in range(count):
        kind = data[at]
        at += 1
        if kind == 0x74:  # 't' text
            (length,) = _I32.unpack_from(data, at)
            at += 4
            end = at + length
            if end > len(data):
                raise ProtocolError(f"a column value runs past the end of the message ({length} bytes)")
            append(data[at:end].decode("utf-8"))
            at = end
        elif kind == 0x6E:  # 'n' null
            append(None)
        elif kind == 0x75:  # 'u' unchanged TOAST
            append(UNCHANGED_TOAST)
        elif kind == 0x62:  # 'b' binary
            (length,) = _I32.unpack_from(data, at)
            at += 4
            append(data[at : at + length])
            at += length
        else:
            raise ProtocolError(f"unknown tuple column kind {chr(kind)!r}")
    return values, at


def decode(data: bytes) -> PgOutputMessage:
    """One pgoutput message (the payload of an XLogData frame)."""
    try:
        return _decode(data)
    except (struct.error, IndexError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"malformed pgoutput message {data[:1]!r}: {exc}") from None


def _decode(data: bytes) -> PgOutputMessage:
    kind = data[0]
    if kind == 0x49:  # 'I'
        relid = _U32.unpack_from(data, 1)[0]
        if data[5] != 0x4E:
            raise ProtocolError(f"insert without a new tuple (got {chr(data[5])!r})")
        return Insert(relid, _tuple(data, 6)[0])
    if kind == 0x55:  # 'U'
        relid = _U32.unpack_from(data, 1)[0]
        at = 5
        old: list[TupleValue] | None = None
        old_is_full = False
        if data[at] in (0x4B, 0x4F):  # 'K' key, 'O' old row
            old_is_full = data[at] == 0x4F
            old, at = _tuple(data, at + 1)
        if data[at] != 0x4E:
            raise ProtocolError(f"update without a new tuple (got {chr(data[at])!r})")
        return Update(relid, old, old_is_full, _tuple(data, at + 1)[0])
    if kind == 0x44:  # 'D'
        relid = _U32.unpack_from(data, 1)[0]
        if data[5] not in (0x4B, 0x4F):
            raise ProtocolError(f"delete without an old tuple (got {chr(data[5])!r})")
        return Delete(relid, _tuple(data, 6)[0], data[5] == 0x4F)
    if kind == 0x42:  # 'B'
        final_lsn, ts, xid = _BEGIN.unpack_from(data, 1)
        return Begin(final_lsn, ts + PG_EPOCH_MICROS, xid)
    if kind == 0x43:  # 'C'
        flags, commit_lsn, end_lsn, ts = _COMMIT.unpack_from(data, 1)
        return Commit(flags, commit_lsn, end_lsn, ts + PG_EPOCH_MICROS)
    if kind == 0x52:  # 'R'
        relid = _U32.unpack_from(data, 1)[0]
        namespace, at = _string(data, 5)
        name, at = _string(data, at)
        identity = chr(data[at])
        (count,) = _I16.unpack_from(data, at + 1)
        at += 3
        columns = []
        for _ in range(count):
            flags = data[at]
            column, at = _string(data, at + 1)
            type_oid = _U32.unpack_from(data, at)[0]
            (typmod,) = _I32.unpack_from(data, at + 4)
            at += 8
            columns.append(RelationColumn(bool(flags & 1), column, type_oid, typmod))
        return Relation(relid, namespace, name, identity, tuple(columns))
    if kind == 0x54:  # 'T'
        (count,) = _I32.unpack_from(data, 1)
        options = data[5]
        relids = struct.unpack_from(f"!{count}I", data, 6)
        return Truncate(tuple(relids), bool(options & 1), bool(options & 2))
    if kind == 0x4D:  # 'M'
        flags, lsn = _MESSAGE_HEAD.unpack_from(data, 1)
        prefix, at = _string(data, 10)
        (length,) = _I32.unpack_from(data, at)
        return Message(bool(flags & 1), lsn, prefix, bytes(data[at + 4 : at + 4 + length]))
    if kind == 0x59:  # 'Y'
        oid = _U32.unpack_from(data, 1)[0]
        namespace, at = _string(data, 5)
        name, _at = _string(data, at)
        return TypeMessage(oid, namespace, name)
    if kind == 0x4F:  # 'O'
        (lsn,) = struct.unpack_from("!Q", data, 1)
        name, _at = _string(data, 9)
        return Origin(lsn, name)
    raise ProtocolError(f"unknown pgoutput message kind {chr(kind)!r}; only protocol version 1 is supported")
