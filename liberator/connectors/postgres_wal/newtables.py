"""Tables created while streaming that match a pattern of `tables:`: added to the publication, then backfilled.

A publication created by liberator lists its tables (FOR TABLE), so a table created later is not published:
the server never sends a change or a Relation message of it. So the source looks at the catalogue between
batches, at most every `status_interval`: a matching table that is not captured yet (or not published any
more: dropped and created again) is added with `ALTER PUBLICATION ... ADD TABLE` and captured from that
commit on; the rows it had before are only reachable by reading the table, so it gets an incremental
backfill between watermarks (liberator.connectors.postgres_wal.backfill). Per-key order holds as for any
backfill: its first low watermark is written after the ALTER committed, so every change the stream does not
carry is in the chunks. A publication FOR ALL TABLES covers the new table already; it is only captured.

A poll rather than a DDL event trigger: a trigger needs a superuser to install, runs inside the
application's DDL transactions (a failure there would fail their CREATE TABLE), and must be removed again;
the poll is one catalogue query per interval with the source's own privileges.
"""

from __future__ import annotations

import logging
import time
import uuid

import psycopg
from psycopg import sql

from liberator.connectors.postgres_wal import checks
from liberator.connectors.postgres_wal.backfill import WalBackfill
from liberator.connectors.postgres_wal.config import PostgresWalConfig
from liberator.connectors.postgres_wal.streaming import ChangeDecoder
from liberator.connectors.postgres_wal.tables import TableCatalog, split_name
from liberator.errors import LiberatorError
from liberator.snapshots import Backfill


class NewTables:
    def __init__(
        self,
        config: PostgresWalConfig,
        catalog: TableCatalog,
        captured: set[str],
        backfill: WalBackfill,
        decoder: ChangeDecoder,
        log: logging.Logger,
    ) -> None:
        self.config = config
        self.catalog = catalog
        self.captured = captured  # shared with the decoder and the backfills: a name added here is streamed
        self.backfill = backfill
        self.decoder = decoder
        self.log = log
        self._looked = time.monotonic()
        self._warned: set[str] = set()  # what was logged as not capturable or not publishable: once each

    def look(self) -> bool:
        """At most every status_interval: True when tables were added (their backfills are queued)."""
        now = time.monotonic()
        if now - self._looked < self.config.status_interval:
            return False
        self._looked = now
        conn = self.catalog.conn
        published = checks.published_tables(conn, self.config)
        found = [t for t in self.catalog.matching() if t not in self.captured or t not in published]
        found = [t for t in found if self._capturable(t)]
        if not found:
            return False
        unpublished = [t for t in found if t not in published]
        if unpublished and not self._publish(unpublished):
            found = [t for t in found if t in published]
            if not found:
                return False
        self.captured.update(found)
        self.decoder.capture(found)
        added = tuple(Backfill(f"new-{uuid.uuid4().hex[:8]}", name) for name in found)
        self.backfill.backfills = (*self.backfill.backfills, *added)
        self.backfill.desk.report_backfills(self.backfill.backfills)
        self.log.info("new table(s) %s: captured from now on, their rows read while streaming", ", ".join(found))
        return True

    def _capturable(self, name: str) -> bool:
        reason = None
        try:
            self.catalog.from_catalog(name)  # a primary key, types that map
        except LiberatorError as exc:
            reason = str(exc)
        quoted = sql.Identifier(*split_name(name)).as_string(None)
        readable = self.catalog.conn.execute("SELECT has_table_privilege(%s, 'SELECT')", (quoted,)).fetchone()
        if reason is None and not (readable and readable[0]):
            reason = f"this role cannot read it; run GRANT SELECT ON {quoted} TO {self.catalog.conn.info.user};"
        if reason is not None and name not in self._warned:
            self._warned.add(name)
            self.log.warning("new table %s matches `tables:` but is not captured: %s", name, reason)
        return reason is None

    def _publish(self, tables: list[str]) -> bool:
        statement = checks.add_tables_sql(self.config, tables)
        if self.config.create:
            try:
                self.catalog.conn.execute(statement)
                return True
            except psycopg.errors.InsufficientPrivilege:
                reason = "this role may not alter the publication (it must own it and the tables)"
        else:
            reason = "`create: false`"
        key = "publish " + ",".join(tables)
        if key not in self._warned:
            self._warned.add(key)
            self.log.warning(
                "new table(s) %s match `tables:` but are not in publication %s (%s); run %s; as their owner",
                ", ".join(tables),
                self.config.publication,
                reason,
                statement,
            )
        return False
