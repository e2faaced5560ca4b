"""MySQL's TIME2 binlog bytes -> signed timedelta, checked on bytes MySQL's own encoder
(`my_time_packed_to_binary`) writes: below zero the integer part is stored one lower and the fraction
complemented, which mysql-replication 1.0.17 reads wrongly."""

from __future__ import annotations

from datetime import timedelta

import pytest

from liberator.connectors.mysql_binlog.time2 import decode_time2, time2_size


@pytest.mark.parametrize(
    ("fsp", "stored", "expected"),
    [
        (0, (0x800000 + (838 << 12 | 59 << 6 | 59)).to_bytes(3, "big"), timedelta(hours=838, minutes=59, seconds=59)),
        (0, (0x800000 - (838 << 12 | 59 << 6 | 59)).to_bytes(3, "big"), -timedelta(hours=838, minutes=59, seconds=59)),
        (0, (0x800000).to_bytes(3, "big"), timedelta(0)),
        (0, (0x800000 - 1).to_bytes(3, "big"), -timedelta(seconds=1)),
        # -0.5 s in TIME(1): integer part -1, fraction 0x100 - 50
        (1, (0x800000 - 1).to_bytes(3, "big") + bytes([0x100 - 50]), -timedelta(microseconds=500000)),
        (2, (0x800000 + 1).to_bytes(3, "big") + bytes([25]), timedelta(seconds=1, microseconds=250000)),
        # -1.25 s in TIME(4): integer part -2, fraction 0x10000 - 2500
        (4, (0x800000 - 2).to_bytes(3, "big") + (0x10000 - 2500).to_bytes(2, "big"), -timedelta(seconds=1.25)),
        # TIME(5)/(6): one 6-byte packed value
        (6, (0x800000000000 - 1).to_bytes(6, "big"), -timedelta(microseconds=1)),
        (6, (0x800000000000 + (1 << 24) + 999999).to_bytes(6, "big"), timedelta(seconds=1, microseconds=999999)),
        (
            5,
            (0x800000000000 - ((12 << 12 | 34 << 6 | 56) << 24) - 789010).to_bytes(6, "big"),
            -timedelta(hours=12, minutes=34, seconds=56, microseconds=789010),
        ),
    ],
)
def test_time2_values_decode_with_their_sign(fsp: int, stored: bytes, expected: timedelta) -> None:
    assert len(stored) == time2_size(fsp)
    assert decode_time2(b"\xff" + stored + b"\xff", 1, fsp) == expected
