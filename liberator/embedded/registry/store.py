"""Durable state of the embedded schema registry, in one SQLite file.

Schemas are stored once per canonical form with a global id (1, 2, ...; never reused, so an id
written into Kafka keeps meaning the same schema).  Subjects map versions to schema ids; a soft
delete only flags a version, a permanent delete removes it.  WAL mode lets readers (a small pool of
connections) run while the single writer, serialised by one lock, holds ``BEGIN IMMEDIATE``.
"""

from __future__ import annotations

import queue
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from liberator.registry.compatibility import DEFAULT_LEVEL
from liberator.registry.errors import (
    incompatible_schema,
    schema_not_found,
    subject_config_not_found,
    subject_not_found,
    subject_not_soft_deleted,
    subject_soft_deleted,
    version_not_found,
    version_not_soft_deleted,
    version_soft_deleted,
)

_DDL = """
CREATE TABLE IF NOT EXISTS schemas (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    schema_type TEXT NOT NULL,
    canonical TEXT NOT NULL,
    UNIQUE (schema_type, canonical)
);
CREATE TABLE IF NOT EXISTS subject_versions (
    subject TEXT NOT NULL,
    version INTEGER NOT NULL,
    schema_id INTEGER NOT NULL REFERENCES schemas (id),
    deleted INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (subject, version)
);
CREATE INDEX IF NOT EXISTS subject_versions_by_schema ON subject_versions (schema_id);
CREATE TABLE IF NOT EXISTS global_config (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    compatibility TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS subject_config (
    subject TEXT PRIMARY KEY,
    compatibility TEXT NOT NULL
);
"""

_VERSION_SQL = (
    "SELECT v.subject, v.version, v.schema_id, s.canonical, s.schema_type, v.deleted "
    "FROM subject_versions v JOIN schemas s ON s.id = v.schema_id "
)


_SUBJECT_LEVEL_SQL = "SELECT compatibility FROM subject_config WHERE subject = ?"


@dataclass(frozen=True)
class SubjectVersion:
    subject: str
    version: int
    schema_id: int
    schema: str
    schema_type: str
    deleted: bool


CompatibilityCheck = Callable[[str, Sequence[SubjectVersion]], list[str]]
"""(level, live versions oldest first) -> reasons the new schema is incompatible ([] if it is not)."""


class RegistryStore:
    def __init__(self, path: str | Path) -> None:
        self._path = str(path)
        self._write_lock = threading.Lock()
        self._readers: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._closed = False
        self._writer = self._connect()
        # journal_mode is stored in the file, so setting it once (by the writer) covers all connections.
        self._writer.execute("PRAGMA journal_mode=WAL")
        with self._write() as db:
            # Statement by statement: executescript() would COMMIT the surrounding transaction.
            for statement in _DDL.split(";"):
                if statement.strip():
                    db.execute(statement)

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: transactions are explicit, so BEGIN IMMEDIATE really takes the lock.
        conn = sqlite3.connect(self._path, timeout=10.0, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA foreign_keys=ON")
        # FULL: an id handed to a producer must survive a power cut, not only a process crash.
        conn.execute("PRAGMA synchronous=FULL")
        return conn

    def close(self) -> None:
        self._closed = True
        with self._write_lock:
            self._writer.close()
        while True:
            try:
                self._readers.get_nowait().close()
            except queue.Empty:
                break

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._write_lock:
            db = self._writer
            # IMMEDIATE: take the file's write lock before reading, so check-then-insert is atomic
            # even against another process sharing the file.
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        try:
            db = self._readers.get_nowait()
        except queue.Empty:
            db = self._connect()
        try:
            db.execute("BEGIN")  # one snapshot for all queries of a request
            try:
                yield db
            finally:
                db.execute("COMMIT")
        finally:
            if self._closed:
                db.close()
            else:
                self._readers.put(db)

    def ping(self) -> None:
        with self._read() as db:
            db.execute("SELECT 1").fetchone()

    # --- subjects and versions -----------------------------------------------------------------

    def subjects(
        self, *, include_deleted: bool = False, deleted_only: bool = False, prefix: str | None = None
    ) -> list[str]:
        with self._read() as db:
            rows = db.execute(
                "SELECT subject, MIN(deleted), MAX(deleted) FROM subject_versions GROUP BY subject ORDER BY subject"
            ).fetchall()
        out = []
        for subject, min_deleted, max_deleted in rows:
            if prefix and not subject.startswith(prefix):
                continue
            live = min_deleted == 0
            if (deleted_only and max_deleted == 1) or (not deleted_only and (live or include_deleted)):
                out.append(subject)
        return out

    def versions(
        self, subject: str, *, include_deleted: bool = False, deleted_only: bool = False
    ) -> list[SubjectVersion]:
        """Versions oldest first; raises 40401 when the subject has none to show."""
        with self._read() as db:
            rows = self._versions(db, subject)
        if deleted_only:
            rows = [r for r in rows if r.deleted]
        elif not include_deleted:
            rows = [r for r in rows if not r.deleted]
        if not rows:
            raise subject_not_found(subject)
        return rows

    @staticmethod
    def _versions(db: sqlite3.Connection, subject: str) -> list[SubjectVersion]:
        rows = db.execute(_VERSION_SQL + "WHERE v.subject = ? ORDER BY v.version", (subject,)).fetchall()
        return [SubjectVersion(r[0], r[1], r[2], r[3], r[4], bool(r[5])) for r in rows]

    def get_version(self, subject: str, version: int | None, *, include_deleted: bool = False) -> SubjectVersion:
        """One version; ``version=None`` means the latest live one."""
        with self._read() as db:
            rows = self._versions(db, subject)
        return self._pick(subject, rows, version, include_deleted)

    @staticmethod
    def _pick(
        subject: str, rows: Sequence[SubjectVersion], version: int | None, include_deleted: bool
    ) -> SubjectVersion:
        visible = [r for r in rows if include_deleted or not r.deleted]
        if not visible:
            raise subject_not_found(subject)
        if version is None:
            live = [r for r in visible if not r.deleted] or visible
            return live[-1]
        for row in visible:
            if row.version == version:
                return row
        raise version_not_found(subject, version)

    def lookup(self, subject: str, canonical: str, *, include_deleted: bool = False) -> SubjectVersion:
        """The newest version of ``subject`` holding this schema (40401 / 40403 otherwise)."""
        with self._read() as db:
            rows = self._versions(db, subject)
        visible = [r for r in rows if include_deleted or not r.deleted]
        if not visible:
            raise subject_not_found(subject)
        matches = [r for r in visible if r.schema == canonical]
        if not matches:
            raise schema_not_found()
        return matches[-1]

    def register(self, subject: str, canonical: str, schema_type: str, check: CompatibilityCheck) -> tuple[int, int]:
        """Add ``canonical`` as the next version of ``subject``; returns (schema id, version).

        The same schema already live under the subject returns its existing id and version without a
        compatibility check, as Confluent does.  Raises 409 when ``check`` reports reasons.
        """
        with self._write() as db:
            rows = self._versions(db, subject)
            live = [r for r in rows if not r.deleted]
            for row in reversed(live):
                if row.schema == canonical and row.schema_type == schema_type:
                    return row.schema_id, row.version
            reasons = check(self._level(db, subject), live)
            if reasons:
                raise incompatible_schema(subject, reasons)
            found = db.execute(
                "SELECT id FROM schemas WHERE schema_type = ? AND canonical = ?", (schema_type, canonical)
            ).fetchone()
            if found is not None:
                schema_id = int(found[0])
            else:
                cur = db.execute("INSERT INTO schemas (schema_type, canonical) VALUES (?, ?)", (schema_type, canonical))
                schema_id = int(cur.lastrowid or 0)
            # Numbering continues after soft-deleted versions; only a permanent delete frees numbers.
            version = (rows[-1].version if rows else 0) + 1
            db.execute(
                "INSERT INTO subject_versions (subject, version, schema_id) VALUES (?, ?, ?)",
                (subject, version, schema_id),
            )
            return schema_id, version

    def delete_subject(self, subject: str, *, permanent: bool = False) -> list[int]:
        with self._write() as db:
            rows = self._versions(db, subject)
            if not rows:
                raise subject_not_found(subject)
            live = [r.version for r in rows if not r.deleted]
            if not permanent:
                if not live:
                    raise subject_soft_deleted(subject)
                db.execute("UPDATE subject_versions SET deleted = 1 WHERE subject = ?", (subject,))
                return live
            if live:
                raise subject_not_soft_deleted(subject)
            db.execute("DELETE FROM subject_versions WHERE subject = ?", (subject,))
            # The subject is gone for good: its compatibility override goes with it.
            db.execute("DELETE FROM subject_config WHERE subject = ?", (subject,))
            return [r.version for r in rows]

    def delete_version(self, subject: str, version: int | None, *, permanent: bool = False) -> int:
        """Soft- or hard-delete one version (``None`` = latest live); returns its number."""
        with self._write() as db:
            rows = self._versions(db, subject)
            if not rows:
                raise subject_not_found(subject)
            row = self._pick(subject, rows, version, include_deleted=permanent)
            if not permanent:
                if row.deleted:
                    raise version_soft_deleted(subject, row.version)
                db.execute(
                    "UPDATE subject_versions SET deleted = 1 WHERE subject = ? AND version = ?",
                    (subject, row.version),
                )
            else:
                if not row.deleted:
                    raise version_not_soft_deleted(subject, row.version)
                db.execute("DELETE FROM subject_versions WHERE subject = ? AND version = ?", (subject, row.version))
            return row.version

    # --- schemas by id -------------------------------------------------------------------------

    def schema_by_id(self, schema_id: int) -> tuple[str, str]:
        """(canonical text, schema type); 40403 once no subject version (even soft-deleted) uses it."""
        with self._read() as db:
            row = db.execute(
                "SELECT s.canonical, s.schema_type FROM schemas s WHERE s.id = ? "
                "AND EXISTS (SELECT 1 FROM subject_versions v WHERE v.schema_id = s.id)",
                (schema_id,),
            ).fetchone()
        if row is None:
            raise schema_not_found(schema_id)
        return str(row[0]), str(row[1])

    def versions_of_schema(self, schema_id: int, *, include_deleted: bool = False) -> list[tuple[str, int]]:
        self.schema_by_id(schema_id)  # 40403 for an unknown id rather than an empty list
        with self._read() as db:
            rows = db.execute(
                "SELECT subject, version, deleted FROM subject_versions WHERE schema_id = ? ORDER BY subject, version",
                (schema_id,),
            ).fetchall()
        return [(str(s), int(v)) for s, v, d in rows if include_deleted or not d]

    # --- compatibility config ------------------------------------------------------------------

    @staticmethod
    def _level(db: sqlite3.Connection, subject: str | None) -> str:
        if subject is not None:
            row = db.execute(_SUBJECT_LEVEL_SQL, (subject,)).fetchone()
            if row is not None:
                return str(row[0])
        row = db.execute("SELECT compatibility FROM global_config WHERE id = 1").fetchone()
        return str(row[0]) if row is not None else DEFAULT_LEVEL

    def global_level(self) -> str:
        with self._read() as db:
            return self._level(db, None)

    def subject_level(self, subject: str) -> str | None:
        """The subject's own level, None when it follows the global one."""
        with self._read() as db:
            row = db.execute(_SUBJECT_LEVEL_SQL, (subject,)).fetchone()
        return str(row[0]) if row is not None else None

    def effective_level(self, subject: str) -> str:
        with self._read() as db:
            return self._level(db, subject)

    def set_global_level(self, level: str) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO global_config (id, compatibility) VALUES (1, ?) "
                "ON CONFLICT (id) DO UPDATE SET compatibility = excluded.compatibility",
                (level,),
            )

    def reset_global_level(self) -> str:
        """Back to the default (BACKWARD); returns the level that was set."""
        with self._write() as db:
            old = self._level(db, None)
            db.execute("DELETE FROM global_config")
            return old

    def set_subject_level(self, subject: str, level: str) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO subject_config (subject, compatibility) VALUES (?, ?) "
                "ON CONFLICT (subject) DO UPDATE SET compatibility = excluded.compatibility",
                (subject, level),
            )

    def delete_subject_level(self, subject: str) -> str:
        """Drop the subject's override; returns it (40401 / 40408 when there is none)."""
        with self._write() as db:
            row = db.execute(_SUBJECT_LEVEL_SQL, (subject,)).fetchone()
            if row is None:
                if not self._versions(db, subject):
                    raise subject_not_found(subject)
                raise subject_config_not_found(subject)
            db.execute("DELETE FROM subject_config WHERE subject = ?", (subject,))
            return str(row[0])
