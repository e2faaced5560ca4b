"""Where the binlog source stands: binlog coordinates, the GTID state, snapshot progress and schema history.

Every position is immutable and round-trips through JSON. The binlog file/position is always kept (it
orders events and checks for purged logs); the GTID state is kept when the server has GTIDs, as a MySQL GTID
set (``uuid:1-5:7,uuid2:1-3``) or MariaDB's per-domain last GTIDs (``0-1-42,1-2-7``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any, Self

from liberator.connectors.mysql_binlog.history import SchemaHistory
from liberator.positions import Position, decode_scalar, encode_scalar
from liberator.snapshots import Backfill

_FILE_NUMBER = re.compile(r"\.(\d+)$")


@dataclass(frozen=True, order=False)
class Coord:
    """A binlog file and a byte offset in it: the end of an event (where the next one starts)."""

    file: str
    pos: int

    @property
    def order(self) -> tuple[str, int, int]:
        # Binlog files are <basename>.<number>: compare the number, so .999999 < .1000000.
        match = _FILE_NUMBER.search(self.file)
        base = self.file[: match.start()] if match else self.file
        return (base, int(match.group(1)) if match else 0, self.pos)

    def __le__(self, other: Coord) -> bool:
        return self.order <= other.order

    def __lt__(self, other: Coord) -> bool:
        return self.order < other.order

    def __str__(self) -> str:
        return f"{self.file}:{self.pos}"

    def to_json(self) -> list[Any]:
        return [self.file, self.pos]

    @classmethod
    def from_json(cls, data: Any) -> Coord:
        if not (isinstance(data, list) and len(data) == 2 and isinstance(data[0], str) and isinstance(data[1], int)):
            raise ValueError(f"not a binlog coordinate [file, pos]: {data!r}")
        return cls(data[0], data[1])


# --- GTID states -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MySQLGtidSet:
    """A MySQL GTID set: per source UUID, sorted disjoint closed intervals of transaction numbers."""

    sets: tuple[tuple[str, tuple[tuple[int, int], ...]], ...] = ()

    @classmethod
    def parse(cls, text: str) -> MySQLGtidSet:
        sets: dict[str, list[tuple[int, int]]] = {}
        for part in text.replace("\n", "").split(","):
            part = part.strip()
            if not part:
                continue
            uuid, *ranges = part.split(":")
            if not ranges:
                raise ValueError(f"not a GTID set member: {part!r}")
            intervals = sets.setdefault(uuid.strip().lower(), [])
            for item in ranges:
                lo, _, hi = item.partition("-")
                intervals.append((int(lo), int(hi or lo)))
        return cls(tuple(sorted((u, _merge(iv)) for u, iv in sets.items())))

    def add(self, gtid: str) -> MySQLGtidSet:
        uuid, _, number = gtid.rpartition(":")
        uuid, gno = uuid.lower(), int(number)
        found = False
        out: list[tuple[str, tuple[tuple[int, int], ...]]] = []
        for u, intervals in self.sets:
            if u == uuid:
                found = True
                intervals = _merge([*intervals, (gno, gno)])
            out.append((u, intervals))
        if not found:
            out.append((uuid, ((gno, gno),)))
            out.sort()
        return MySQLGtidSet(tuple(out))

    def contains(self, other: MySQLGtidSet) -> bool:
        mine = dict(self.sets)
        for uuid, intervals in other.sets:
            have = mine.get(uuid, ())
            for lo, hi in intervals:
                if not any(a <= lo and hi <= b for a, b in have):
                    return False
        return True

    def __str__(self) -> str:
        return ",".join(
            uuid + "".join(f":{lo}" if lo == hi else f":{lo}-{hi}" for lo, hi in intervals)
            for uuid, intervals in self.sets
        )


def _merge(intervals: list[tuple[int, int]] | tuple[tuple[int, int], ...]) -> tuple[tuple[int, int], ...]:
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(intervals):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return tuple(out)


@dataclass(frozen=True)
class MariaDBGtidPos:
    """MariaDB's replication position: the last GTID (domain-server-sequence) of each replication domain."""

    gtids: tuple[tuple[int, int, int], ...] = ()

    @classmethod
    def parse(cls, text: str) -> MariaDBGtidPos:
        by_domain: dict[int, tuple[int, int, int]] = {}
        for part in text.split(","):
            part = part.strip()
            if part:
                domain, server, seq = (int(x) for x in part.split("-"))
                by_domain[domain] = (domain, server, seq)
        return cls(tuple(sorted(by_domain.values())))

    def add(self, gtid: str) -> MariaDBGtidPos:
        domain, server, seq = (int(x) for x in gtid.split("-"))
        rest = [g for g in self.gtids if g[0] != domain]
        return MariaDBGtidPos(tuple(sorted((*rest, (domain, server, seq)))))

    def __str__(self) -> str:
        return ",".join(f"{d}-{s}-{n}" for d, s, n in self.gtids)


GtidState = MySQLGtidSet | MariaDBGtidPos


def gtid_to_json(state: GtidState | None) -> dict[str, str] | None:
    if state is None:
        return None
    return {"mariadb" if isinstance(state, MariaDBGtidPos) else "mysql": str(state)}


def gtid_from_json(data: Any) -> GtidState | None:
    if data is None:
        return None
    if isinstance(data, dict) and len(data) == 1:
        ((flavor, text),) = data.items()
        if flavor == "mariadb":
            return MariaDBGtidPos.parse(text)
        if flavor == "mysql":
            return MySQLGtidSet.parse(text)
    raise ValueError(f"not a GTID state: {data!r}")


# --- snapshot progress -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SnapshotRun:
    """One snapshot transaction: it read the tables from (table_index, after key) on, as of binlog point `at`.

    A crash makes a new run at a newer point. While streaming from the first run's point, a change to a row
    that a later run read is skipped when it is not newer than that run's point: the row read already holds
    it, and emitting it afterwards would put an older state after a newer one.
    """

    table_index: int
    after: tuple[object, ...] | None  # None: from the start of the table
    at: Coord

    def to_json(self) -> dict[str, Any]:
        return {
            "table": self.table_index,
            "after": None if self.after is None else [encode_scalar(v) for v in self.after],
            "at": self.at.to_json(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SnapshotRun:
        after = data.get("after")
        return cls(
            int(data["table"]),
            None if after is None else tuple(decode_scalar(v) for v in after),
            Coord.from_json(data["at"]),
        )


@dataclass(frozen=True)
class SnapshotState:
    """Snapshot progress, or (done=True) the runs still filtering the stream until it passes their points."""

    tables: tuple[str, ...]  # "db.table" in snapshot order
    runs: tuple[SnapshotRun, ...]
    table_index: int = 0  # the table being read
    after: tuple[object, ...] | None = None  # the last key emitted from it
    done: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "tables": list(self.tables),
            "runs": [r.to_json() for r in self.runs],
            "table": self.table_index,
            "after": None if self.after is None else [encode_scalar(v) for v in self.after],
            "done": self.done,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SnapshotState:
        after = data.get("after")
        return cls(
            tuple(str(t) for t in data["tables"]),
            tuple(SnapshotRun.from_json(r) for r in data["runs"]),
            int(data.get("table", 0)),
            None if after is None else tuple(decode_scalar(v) for v in after),
            bool(data.get("done", False)),
        )


# --- the position ------------------------------------------------------------------------------------


_NO_SCHEMAS = SchemaHistory()


@dataclass(frozen=True)
class BinlogPosition(Position):
    """The end of the last complete transaction handed over (or, with `snapshot`, the snapshot's progress)."""

    coord: Coord
    gtid: GtidState | None = None
    schemas: SchemaHistory = _NO_SCHEMAS
    snapshot: SnapshotState | None = None
    # Snapshots on demand under way (liberator.snapshots), each after the last chunk that went out.
    backfills: tuple[Backfill, ...] = ()

    @property
    def snapshotting(self) -> bool:
        return self.snapshot is not None and not self.snapshot.done

    def advanced(self, coord: Coord, gtid: GtidState | None) -> BinlogPosition:
        return replace(self, coord=coord, gtid=gtid)

    def to_json(self) -> dict[str, Any]:
        out = {
            "file": self.coord.file,
            "pos": self.coord.pos,
            "gtid": gtid_to_json(self.gtid),
            "schemas": self.schemas.to_json(),
            "snapshot": None if self.snapshot is None else self.snapshot.to_json(),
        }
        if self.backfills:  # absent otherwise: positions stored before snapshots on demand read the same
            out["backfills"] = [b.to_json() for b in self.backfills]
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        if not isinstance(data.get("file"), str) or not isinstance(data.get("pos"), int):
            raise ValueError("a binlog position needs `file` (text) and `pos` (a number)")
        snapshot = data.get("snapshot")
        return cls(
            Coord(data["file"], data["pos"]),
            gtid_from_json(data.get("gtid")),
            SchemaHistory.from_json(data.get("schemas") or []),
            None if snapshot is None else SnapshotState.from_json(snapshot),
            tuple(Backfill.from_json(b) for b in data.get("backfills") or ()),
        )

    def describe(self) -> str:
        return f"{self.coord}" + (f" (GTID {self.gtid})" if self.gtid is not None and str(self.gtid) else "")
