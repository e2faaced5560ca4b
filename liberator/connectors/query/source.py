"""Query-based capture: a keyset-paginated snapshot, then incremental polling on a cursor.

Every table is read in cursor order (timestamp, then tie-breakers), so the first run's bulk read and
the later polls are one mechanism, and several tables merge into one stream in timestamp order. Each
poll stops at the database's now() minus `safety_delay`: a transaction that commits later than that
with an older timestamp would be missed, which is the one inherent limit of this mode besides hard
deletes (invisible: use a CDC source for those).
"""

from __future__ import annotations

import datetime as dt
import heapq
import time
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar, cast

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from liberator import sqldb
from liberator.capture import BatchItem, CaptureSettings, Catalogue, ChangeBatch, Op, RowChange, Txn
from liberator.connectors.query.backfill import Backfiller
from liberator.connectors.query.config import QuerySourceConfig
from liberator.connectors.query.parallel import ParallelPages
from liberator.connectors.query.position import QueryPosition, StreamCursor
from liberator.connectors.query.reader import TableReader
from liberator.connectors.query.reconcile import DeleteReconciler
from liberator.connectors.query.signals import SignalTable
from liberator.envelope import Envelope
from liberator.errors import ConfigError, LiberatorError
from liberator.events import Checkpoint, SourceItem, Stream
from liberator.instants import epoch_ms, epoch_us
from liberator.positions import Position
from liberator.schema import TimestampType
from liberator.source import Source, SourceConfig, SourceContext

# Changes per batch: a page is cut into batches of at most this many rows, each with the position after it.
MAX_BATCH = 1000


class QuerySource(Source[QuerySourceConfig, QueryPosition]):
    config_model: ClassVar[type[SourceConfig]] = QuerySourceConfig
    position_type: ClassVar[type[Position]] = QueryPosition
    snapshots_on_demand: ClassVar[bool] = True
    table_moves: ClassVar[bool] = True

    def __init__(self, config: QuerySourceConfig, context: SourceContext) -> None:
        super().__init__(config, context)
        self.cfg = config
        self._engine: sa.Engine | None = None
        self.phase = "starting"
        settings = CaptureSettings(
            source=config.name,
            connector="query",
            app=context.app_name,
            envelope=Envelope.state,
            topic=config.topic,
            mask_salt=config.mask_salt,
            on_error=config.on_error,
            on_incompatible=config.on_incompatible,
            moves=context.topic_moves,
        )
        self.catalogue = Catalogue(settings, context.log)
        self.signals = (
            None
            if config.signal_table is None
            else SignalTable(config.signal_table, config.name, context.snapshots, context.log)
        )
        self.parallel = (
            None
            if config.snapshot_workers == 1
            else ParallelPages(self._engine_now, config.snapshot_workers, f"{config.name}-snapshot")
        )
        self.backfiller = Backfiller(
            context.snapshots, config.batch_size, MAX_BATCH, _changes, context.log, self.parallel
        )
        self.reconciler: DeleteReconciler | None = None
        if config.deletes == "reconcile":
            if context.topic_keys is None:
                raise ConfigError(f"source {config.name}: `deletes: reconcile` reads its topics: it needs a broker")
            self.reconciler = DeleteReconciler(
                context.topic_keys, config.reconcile_interval, config.batch_size, MAX_BATCH, context.log
            )

    # -- plumbing -----------------------------------------------------------------------------------

    def _engine_now(self) -> sa.Engine:
        if self._engine is None:
            # Parallel pages hold a connection each besides the source's own: the pool has room for them all.
            sizes = {} if self.parallel is None else {"pool_size": self.cfg.snapshot_workers + 1}
            self._engine = sqldb.create_engine(self.cfg.url, self.cfg, **sizes)
        return self._engine

    def _connect(self) -> tuple[sa.Connection, list[TableReader]]:
        engine = self._engine_now()
        try:
            # AUTOCOMMIT: each page sees newly committed rows (REPEATABLE READ would freeze them) and no
            # transaction stays open between polls holding back vacuum.
            conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        except SQLAlchemyError as exc:
            raise sqldb.classify(exc, self.cfg.url, f"source {self.cfg.name}", self.cfg) from None
        dialect = conn.dialect.name
        readers = [TableReader(entry, self.cfg, self.catalogue, dialect) for entry in self.cfg.tables]
        try:
            for reader in readers:
                reader.reflect(conn)
        except SQLAlchemyError as exc:
            conn.close()
            raise sqldb.classify(exc, self.cfg.url, f"source {self.cfg.name}", self.cfg) from None
        except LiberatorError:
            conn.close()
            raise
        return conn, readers

    def check(self) -> list[str]:
        try:
            conn, readers = self._connect()
        except LiberatorError as exc:
            return [str(exc)]
        problems: list[str] = []
        with conn:
            for reader in readers:
                try:
                    conn.execute(reader.select().limit(1)).all()
                except SQLAlchemyError as exc:
                    problems.append(
                        str(sqldb.classify(exc, self.cfg.url, f"source {self.cfg.name}: {reader.name}", self.cfg))
                    )
            signal_problem = None if self.signals is None else self.signals.problem(conn)
            if signal_problem is not None:
                problems.append(signal_problem)
        return problems

    def streams(self) -> list[Stream]:
        conn, readers = self._connect()
        with conn:
            return [s for r in readers if r.table is not None for s in r.table.streams()]

    def close(self) -> None:
        if self.parallel is not None:
            self.parallel.close()
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    # -- reading ------------------------------------------------------------------------------------

    def read(self, start: QueryPosition | None) -> Iterator[SourceItem]:
        position = start if start is not None else QueryPosition()
        conn, readers = self._connect()
        stop = self.context.stop
        try:
            first_cycle = position == QueryPosition()
            self.phase = "snapshot" if first_cycle else "polling"
            last_reflect = time.monotonic()
            replanned = False  # the last poll failed on an outdated plan and the shapes were re-read
            # Requests made before this read (a table moved to a new topic) are stored before anything is polled.
            position = yield from self.backfiller.take(conn, readers, position)
            while not stop.is_set():
                if time.monotonic() - last_reflect >= self.cfg.schema_refresh:
                    self._refresh(conn, readers)
                    last_reflect = time.monotonic()
                # A poll's rows are reads of the table's current state: `r` in the first cycle (the snapshot),
                # `u` later (a row whose cursor moved was written since).
                op = Op.read if self.phase == "snapshot" else Op.update
                try:
                    for batch in self._poll_once(conn, readers, position, op):
                        yield batch
                        position = cast(QueryPosition, batch.position)
                        if stop.is_set():
                            return
                except DBAPIError as exc:
                    if replanned or not sqldb.plan_outdated(exc):
                        raise
                    # A column's type changed since the page query was prepared: forget the plan, re-read
                    # the shapes (a new captured version, checked by the registry first) and poll again.
                    self.context.log.info("a captured table's column types changed; re-reading table shapes")
                    sqldb.forget_prepared(conn)
                    if self.parallel is not None:
                        self.parallel.reset()  # their plans are outdated too: new connections prepare anew
                    self._refresh(conn, readers)
                    last_reflect, replanned = time.monotonic(), True
                    continue
                replanned = False
                if self.phase == "snapshot":
                    self.context.log.info("snapshot done; polling every %.1fs", self.cfg.poll_interval)
                    self.phase = "polling"
                if self.reconciler is not None and self.reconciler.due():
                    yield from self.reconciler.run(conn, readers, position, stop)
                # Each finished poll is a checkpoint: an idle source still says it reads (after a retry,
                # /health shows it running again) and progress past never-stamped rows gets stored.
                yield Checkpoint(position)
                if self.signals is not None:  # its new rows are requests the backfills take right away
                    position = self.signals.poll(conn, position)
                for item in self.backfiller.step(conn, readers, position):  # snapshots on demand: one page
                    yield item
                    position = cast(QueryPosition, item.position)
                if not position.backfills:  # a backfill under way reads its next page right after the next poll
                    yield from self.context.idle(self.cfg.poll_interval)
        except DBAPIError as exc:
            raise sqldb.classify(exc, self.cfg.url, f"source {self.cfg.name}", self.cfg) from None
        finally:
            conn.close()

    def _refresh(self, conn: sa.Connection, readers: list[TableReader]) -> None:
        for reader in readers:
            reader.reflect(conn)  # a changed shape is a new captured version: its schemas are checked first

    def _poll_once(
        self, conn: sa.Connection, readers: list[TableReader], position: QueryPosition, op: Op
    ) -> Iterator[ChangeBatch]:
        limit = self.cfg.batch_size
        read_ms = int(time.time() * 1000)
        # Rows never stamped (NULL cursor) are read once, by key, before the ordered stream.
        for reader in readers:
            state = position.get(reader.name)
            if state.nulls_done:
                continue
            if not reader.cursor_nullable:
                position = position.with_cursor(reader.name, StreamCursor(state.cursor, None, True))
                continue
            after = state.nulls_after
            while True:
                page = reader.null_cursor_page(conn, after, limit)
                for start in range(0, len(page), MAX_BATCH):
                    rows = page[start : start + MAX_BATCH]
                    after = reader.key_of(rows[-1])
                    position = position.with_cursor(reader.name, StreamCursor(state.cursor, after, False))
                    yield ChangeBatch(_changes(reader, rows, op, read_ms), position)
                if len(page) < limit:
                    break
            position = position.with_cursor(reader.name, StreamCursor(state.cursor, None, True))

        upper = self._upper_bound(conn, readers)
        pages = [
            reader.pages_after(conn, position.get(reader.name).cursor, upper.get(reader.name), limit, self.parallel)
            for reader in readers
        ]
        if len(readers) == 1:
            (reader,) = readers
            for page in pages[0]:
                for start in range(0, len(page), MAX_BATCH):
                    rows = page[start : start + MAX_BATCH]
                    position = position.with_cursor(reader.name, StreamCursor(reader.cursor_of(rows[-1]), None, True))
                    yield ChangeBatch(_changes(reader, rows, op, read_ms), position)
            return
        # Several tables: one stream in timestamp order, merged row by row, cut into batches.
        keyed = (_keyed(r, p, i) for i, (r, p) in enumerate(zip(readers, pages, strict=True)))
        merged = heapq.merge(*keyed, key=lambda item: (item[0], item[1]))
        items: list[BatchItem] = []
        last: dict[int, tuple[TableReader, Sequence[Any]]] = {}
        txn: Txn | None = None
        stamp: object = None
        for _sort_key, index, reader, row in merged:
            cursor = row[reader.cursor_index[0]]
            if txn is None or cursor != stamp:
                millis = epoch_ms(cursor)
                txn, stamp = Txn(millis if millis is not None else read_ms), cursor
            assert reader.table is not None
            items.append(RowChange(reader.table, op, txn, None, reader.values(row)))
            last[index] = (reader, row)
            if len(items) >= MAX_BATCH:
                position = _moved(position, last)
                yield ChangeBatch(items, position)
                items, last = [], {}
        if items:
            yield ChangeBatch(items, _moved(position, last))

    def _upper_bound(self, conn: sa.Connection, readers: list[TableReader]) -> dict[str, object | None]:
        """Per stream: the newest cursor timestamp this poll may read (the database's now - safety delay)."""
        delay = dt.timedelta(seconds=self.cfg.safety_delay)
        bounds: dict[str, object | None] = {}
        cache: dict[bool, Any] = {}
        for reader in readers:
            assert reader.table is not None
            if not reader.time_cursor:
                bounds[reader.name] = None  # numeric cursors have no clock to wait on
                continue
            column_type = reader.table.full_shape.column(reader.cursor_columns[0]).type
            aware = isinstance(column_type, TimestampType) and column_type.with_timezone
            if aware not in cache:
                cache[aware] = _database_now(conn, aware)
            now = cache[aware]
            if isinstance(now, str):  # SQLite: text in, text out
                shifted = dt.datetime.fromisoformat(now) - delay
                bounds[reader.name] = shifted.strftime("%Y-%m-%d %H:%M:%S.%f")
            else:
                bounds[reader.name] = now - delay
        return bounds


def _changes(reader: TableReader, rows: Sequence[Sequence[Any]], op: Op, read_ms: int) -> list[BatchItem]:
    """One table's rows as row changes; the record time is the row's cursor timestamp (else the time of
    reading), and rows that share it share one Txn."""
    table = reader.table
    assert table is not None
    at = reader.cursor_index[0]
    cut = reader.width if reader.sliced else None
    out: list[BatchItem] = []
    append = out.append
    txn = Txn(read_ms)
    stamp: object = _NOTHING
    for row in rows:
        cursor = row[at]
        if cursor != stamp:
            millis = epoch_ms(cursor)
            txn, stamp = Txn(millis if millis is not None else read_ms), cursor
        append(RowChange(table, op, txn, None, row if cut is None else row[:cut]))
    return out


_NOTHING = object()


def _keyed(
    reader: TableReader, pages: Iterator[Sequence[Sequence[Any]]], index: int
) -> Iterator[tuple[Any, int, TableReader, Sequence[Any]]]:
    """A table's rows with the key they merge by: the cursor's time (comparable across column types), then
    the table's place in `tables:`."""
    at = reader.cursor_index[0]
    for page in pages:
        for row in page:
            cursor = row[at]
            micros = epoch_us(cursor)
            yield (micros if micros is not None else cursor), index, reader, row


def _moved(position: QueryPosition, last: dict[int, tuple[TableReader, Sequence[Any]]]) -> QueryPosition:
    """The position after a batch: each table that had rows in it stands at its last row's cursor."""
    for reader, row in last.values():
        position = position.with_cursor(reader.name, StreamCursor(reader.cursor_of(row), None, True))
    return position


def _database_now(conn: sa.Connection, aware: bool) -> Any:
    """The database's clock, in the same terms as the cursor column (so app and daemon clocks may differ)."""
    dialect = conn.dialect.name
    if dialect == "sqlite":
        sql = "SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')"
    elif dialect == "postgresql":
        sql = "SELECT CURRENT_TIMESTAMP" if aware else "SELECT LOCALTIMESTAMP"
    elif dialect in ("mysql", "mariadb"):
        # Our session runs in UTC (see sqldb); wall-clock DATETIMEs are written in the server's zone.
        sql = (
            "SELECT UTC_TIMESTAMP(6)" if aware else "SELECT CONVERT_TZ(UTC_TIMESTAMP(6), '+00:00', @@global.time_zone)"
        )
    else:
        sql = "SELECT CURRENT_TIMESTAMP"
    return conn.execute(sa.text(sql)).scalar_one()
