"""Where a frame between transactions lies, for the blocking snapshot's pause point (postgres_wal)."""

from __future__ import annotations

import struct

from liberator.connectors.postgres_wal.blocking import _frame_lsn
from liberator.connectors.postgres_wal.stream import IDLE_FRAME, Keepalive


def _xlog(start: int, payload: bytes) -> bytes:
    return b"w" + struct.pack("!QQq", start, start + 100, 0) + payload


def test_a_begin_lies_at_its_commit_lsn_a_message_at_its_own_and_a_keepalive_at_the_end_sent() -> None:
    begin = _xlog(0x1000, b"B" + struct.pack("!QqI", 0x5000, 0, 42))
    assert _frame_lsn(begin) == 0x5000, "a transaction is in the snapshot when it committed before the point"
    message = _xlog(0x2000, b"M" + b"\x00" + struct.pack("!Q", 0x2000) + b"liberator.watermark\x00")
    assert _frame_lsn(message) == 0x2000
    assert _frame_lsn(Keepalive(0x3000)) == 0x3000
    assert _frame_lsn(IDLE_FRAME) is None
