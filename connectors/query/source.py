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
from collections.abc import Iterator
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from connectors.query.config import QuerySourceConfig
from connectors.query.position import QueryPosition, StreamCursor
from connectors.query.reader import TableReader, epoch_ms, epoch_us
from liberator import sqldb
from liberator.errors import FatalSourceError, LiberatorError, SchemaError
from liberator.events import ChangeEvent, Checkpoint, SourceItem, Stream
from liberator.positions import Position
from liberator.schema import TimestampType
from liberator.source import Source, SourceConfig, SourceContext


class QuerySource(Source[Any, Any]):
    config_model: ClassVar[type[SourceConfig]] = QuerySourceConfig
    position_type: ClassVar[type[Position]] = QueryPosition

    def __init__(self, config: SourceConfig, context: SourceContext) -> None:
        super().__init__(config, context)
        assert isinstance(config, QuerySourceConfig)
        self.cfg = config
        self._engine: sa.Engine | None = None
        self.phase = "starting"

    # -- plumbing -----------------------------------------------------------------------------------

    def _connect(self) -> tuple[sa.Connection, list[TableReader]]:
        if self._engine is None:
            self._engine = sqldb.create_engine(self.cfg.url, self.cfg)
        try:
            # AUTOCOMMIT: each page sees newly committed rows (REPEATABLE READ would freeze them) and no
            # transaction stays open between polls holding back vacuum.
            conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        except SQLAlchemyError as exc:
            raise sqldb.classify(exc, self.cfg.url, f"source {self.cfg.name}", self.cfg) from None
        readers = [TableReader(entry, self.cfg, self.context.app_name, conn.dialect.name) for entry in self.cfg.tables]
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
                    conn.execute(reader._select().limit(1)).all()
                except SQLAlchemyError as exc:
                    problems.append(
                        str(sqldb.classify(exc, self.cfg.url, f"source {self.cfg.name}: {reader.name}", self.cfg))
                    )
        return problems

    def streams(self) -> list[Stream]:
        conn, readers = self._connect()
        with conn:
            return [r.shape.stream for r in readers if r.shape is not None]

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    # -- reading ------------------------------------------------------------------------------------

    def read(self, start: Position | None) -> Iterator[SourceItem]:
        position = start if isinstance(start, QueryPosition) else QueryPosition()
        conn, readers = self._connect()
        stop = self.context.stop
        try:
            first_cycle = position == QueryPosition()
            self.phase = "snapshot" if first_cycle else "polling"
            last_reflect = time.monotonic()
            while not stop.is_set():
                if time.monotonic() - last_reflect >= self.cfg.schema_refresh:
                    self._refresh(conn, readers)
                    last_reflect = time.monotonic()
                for event_or_pos in self._poll_once(conn, readers, position):
                    if isinstance(event_or_pos, QueryPosition):
                        position = event_or_pos
                        continue
                    yield event_or_pos
                    position = event_or_pos.position  # type: ignore[assignment]
                    if stop.is_set():
                        return
                if self.phase == "snapshot":
                    self.context.log.info("snapshot done; polling every %.1fs", self.cfg.poll_interval)
                    self.phase = "polling"
                # Each finished poll is a checkpoint: an idle source still says it reads (after a retry,
                # /health shows it running again) and progress past never-stamped rows gets stored.
                yield Checkpoint(position)
                stop.wait(self.cfg.poll_interval)
        except DBAPIError as exc:
            raise sqldb.classify(exc, self.cfg.url, f"source {self.cfg.name}", self.cfg) from None
        finally:
            conn.close()

    def _refresh(self, conn: sa.Connection, readers: list[TableReader]) -> None:
        for reader in readers:
            if reader.reflect(conn):
                self.context.log.info("the shape of %s changed; new schemas will be checked before use", reader.name)

    def _poll_once(
        self, conn: sa.Connection, readers: list[TableReader], position: QueryPosition
    ) -> Iterator[ChangeEvent | QueryPosition]:
        batch = self.cfg.batch_size
        read_time_ms = int(time.time() * 1000)
        # Rows never stamped (NULL cursor) are read once, by key, before the ordered stream.
        for reader in readers:
            state = position.get(reader.name)
            if state.nulls_done:
                continue
            if not reader.cursor_nullable():
                position = position.with_cursor(reader.name, StreamCursor(state.cursor, None, True))
                yield position
                continue
            after = state.nulls_after
            while True:
                rows = reader.null_cursor_rows_after(conn, after, batch)
                for row in rows:
                    after = reader.key_of(row)
                    position = position.with_cursor(reader.name, StreamCursor(state.cursor, after, False))
                    yield self._event(reader, row, read_time_ms, position)
                if len(rows) < batch:
                    break
            position = position.with_cursor(reader.name, StreamCursor(state.cursor, None, True))
            yield position

        upper = self._upper_bound(conn, readers)
        streams = [
            self._keyed(
                reader,
                reader.rows_after(conn, position.get(reader.name).cursor, upper.get(reader.name), batch),
                index,
            )
            for index, reader in enumerate(readers)
        ]
        for _sort_key, _index, reader, row in heapq.merge(*streams, key=lambda item: (item[0], item[1])):
            position = position.with_cursor(reader.name, StreamCursor(reader.cursor_of(row), None, True))
            yield self._event(reader, row, read_time_ms, position)

    @staticmethod
    def _keyed(
        reader: TableReader, rows: Iterator[sa.Row[Any]], index: int
    ) -> Iterator[tuple[Any, int, TableReader, sa.Row[Any]]]:
        for row in rows:
            cursor = reader.cursor_of(row)[0]
            micros = epoch_us(cursor)
            yield (micros if micros is not None else cursor), index, reader, row

    def _upper_bound(self, conn: sa.Connection, readers: list[TableReader]) -> dict[str, object | None]:
        """Per stream: the newest cursor timestamp this poll may read (the database's now - safety delay)."""
        delay = dt.timedelta(seconds=self.cfg.safety_delay)
        bounds: dict[str, object | None] = {}
        cache: dict[bool, Any] = {}
        for reader in readers:
            assert reader.shape is not None
            if not reader.shape.time_cursor:
                bounds[reader.name] = None  # numeric cursors have no clock to wait on
                continue
            column_type = reader.shape.table.column(reader.cursor_columns[0]).type
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

    def _event(self, reader: TableReader, row: sa.Row[Any], read_time_ms: int, position: QueryPosition) -> ChangeEvent:
        shape = reader.shape
        assert shape is not None
        mapping = row._mapping
        try:
            key = shape.key_converter.convert(mapping)
            value = shape.value_converter.convert(mapping)
        except SchemaError as exc:
            raise FatalSourceError(str(exc)) from None
        millis = epoch_ms(mapping[f"_lib_c{0}"])
        return ChangeEvent(shape.stream, key, value, millis if millis is not None else read_time_ms, position)


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
