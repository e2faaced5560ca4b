"""Where the WAL source stands: an LSN, plus the snapshot's progress while one is being read.

`lsn` is where streaming (re)starts: the end LSN of the last transaction whose events were all published
(or a keepalive's LSN when nothing captured was pending). The server skips every transaction that
committed before it, so resuming there neither loses nor repeats a transaction.

`tables` records, for every table the snapshot has read, the LSN its snapshot was consistent with. A
table read at the slot's own point needs nothing more. A table re-read after a crash (the exported
snapshot died with the old connection) was read at a later point P: streamed changes to it from
transactions that committed before P are already in that read and are skipped (docs/postgres_wal.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Self

from liberator.positions import Position
from liberator.snapshots import Backfill


def lsn_text(lsn: int) -> str:
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def parse_lsn(text: str) -> int:
    high, sep, low = text.partition("/")
    if not sep:
        raise ValueError(f"{text!r} is not an LSN (like 0/16B3748)")
    return (int(high, 16) << 32) | int(low, 16)


@dataclass(frozen=True)
class WalPosition(Position):
    lsn: int
    # Snapshot progress: tables read so far (qualified name, LSN the read was consistent with).
    tables: tuple[tuple[str, int], ...] = ()
    snapshot_done: bool = True
    # Snapshots on demand under way (liberator.snapshots), each after the last chunk that went out.
    backfills: tuple[Backfill, ...] = ()

    def with_table(self, table: str, point: int) -> WalPosition:
        kept = tuple(t for t in self.tables if t[0] != table)
        return WalPosition(self.lsn, tuple(sorted((*kept, (table, point)))), self.snapshot_done, self.backfills)

    def skip_before(self) -> dict[str, int]:
        """Tables whose streamed transactions committed before the given LSN are already in the snapshot."""
        return {table: point for table, point in self.tables if point > self.lsn}

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "lsn": lsn_text(self.lsn),
            "tables": {table: lsn_text(point) for table, point in self.tables},
            "snapshot_done": self.snapshot_done,
        }
        if self.backfills:  # absent otherwise: positions stored before snapshots on demand read the same
            out["backfills"] = [b.to_json() for b in self.backfills]
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        tables = data.get("tables", {})
        if not isinstance(tables, dict):
            raise ValueError("tables must be an object")
        return cls(
            lsn=parse_lsn(str(data["lsn"])),
            tables=tuple(sorted((str(k), parse_lsn(str(v))) for k, v in tables.items())),
            snapshot_done=bool(data.get("snapshot_done", True)),
            backfills=tuple(Backfill.from_json(b) for b in data.get("backfills") or ()),
        )
