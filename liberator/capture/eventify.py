"""Row changes -> Kafka records: keys, change or state envelopes, tombstones, truncates, in tight loops.

The rules every source shares live here once:
- the key is the primary key's values (a Key record); a keyless record is only a truncate (op t);
- an update that changes the key is a delete of the old key and a create of the new one, each on its
  partition, so consumers folding by key never keep the old row;
- `envelope: change` wraps the row images in the change envelope (liberator.envelope); `envelope: state`
  publishes the row after the change, and a delete as a tombstone only;
- with either envelope a delete is followed by a tombstone on the same key, so compacted topics forget it;
- every envelope of a transaction gets the next `transaction.order` (1-based), counted per `Txn` (and on
  across the parts of one transaction that `Txn.continues` links);
- `envelope: debezium` (liberator.capture.debezium) and the transaction topic (liberator.capture.txmeta) count
  each transaction's events per table; their codecs wrap the table's own, so the other envelopes' path is
  untouched;
- a row that cannot be converted or transformed goes to its table's `on_error` policy (liberator.capture.rowerrors),
  with none of its records kept;
- a table version whose schemas the registry refuses stops the source, or with `on_incompatible: new_topic`
  moves the table to its next versioned topic (liberator.capture.moves) before its first record is made.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any

from liberator.avro import AvroEncoder, ChangeWriter, DatumError, RowEncoder, change_context
from liberator.capture.changes import Op, RowChange, Txn
from liberator.capture.debezium import debezium_value, source_block
from liberator.capture.rowerrors import CONVERSION, TRANSFORM, PoisonRow, RowErrors, TransformError
from liberator.capture.shaping import Shaping
from liberator.capture.tables import CapturedTable
from liberator.capture.txmeta import TransactionCounter
from liberator.envelope import Envelope, change_value
from liberator.errors import FatalSourceError, IncompatibleSchemaError, SchemaError
from liberator.events import ChangeEvent
from liberator.positions import Position

# (topic, key or None, value or None, record time ms, headers or None); key and value are framed Avro bytes
# (TableCodec), or datums (DatumCodec: tests, dry runs).
Record = tuple[str, Any, Any, int, list[tuple[str, bytes]] | None]


_CREATE = Op.create
_READ = Op.read


class DatumCodec:
    """One captured table's keys and values as Avro datums (dicts), as fastavro would encode them."""

    value_id: int | None = None  # the value schema's registry id (None: datums, not bytes)

    def __init__(self, table: CapturedTable, topic: str | None = None) -> None:
        self.table = table
        self.topic = table.stream.topic if topic is None else topic  # another topic: a route by column
        published = table.published
        names = [c.name for c in published.columns]
        index = tuple(names.index(k) for k in published.key)  # of published rows (a hook's output has its own)
        if len(index) == 1:
            (only,) = index
            self.key_of: Callable[[Sequence[Any]], tuple[Any, ...]] = lambda row: (row[only],)
        else:
            getter = itemgetter(*index)
            self.key_of = lambda row: getter(row)
        self._key_converter = table.key_converter
        self._value_converter = table.value_converter
        self.mask = table.mask

    def key(self, values: Sequence[Any]) -> Any:
        return self._key_converter.convert_values(values)

    def value_datum(self, values: Sequence[Any]) -> Any:
        """A row's Value datum (masked), whichever the codec's output is."""
        if self.mask is not None:
            values = self.mask(values)
        return self._value_converter.convert_values(values)

    def state(self, values: Sequence[Any]) -> Any:
        return self.value_datum(values)

    def envelope(
        self, op: Op, before: Sequence[Any] | None, after: Sequence[Any] | None, txn: Txn, order: int, ts_ms: int
    ) -> Any:
        convert = self._value_converter.convert_values
        if self.mask is not None:
            before = None if before is None else self.mask(before)
            after = None if after is None else self.mask(after)
        return change_value(
            op,
            None if before is None else convert(before),
            None if after is None else convert(after),
            self.table.info,
            position=txn.position,
            commit_ms=txn.commit_ms,
            snapshot=txn.snapshot,
            transaction_id=txn.id,
            order=order,
            ts_ms=ts_ms,
        )


class TableCodec(DatumCodec):
    """Encodes one captured table's keys and values with its registered schema ids (Confluent framing).

    The encoders are generated for the table's shape (`RowEncoder`), and a change envelope is put together
    from pre-encoded parts (`ChangeWriter`), the transaction's part encoded once per `Txn`: the bytes are
    those fastavro writes for the datums `DatumCodec` makes, at a fraction of the cost.
    """

    def __init__(self, table: CapturedTable, key_id: int, value_id: int, topic: str | None = None) -> None:
        super().__init__(table, topic)
        self.value_id = value_id
        shape = table.published
        self._key = RowEncoder.for_key(shape, schema_id=key_id).encode
        self._state = RowEncoder(shape, schema_id=value_id).encode
        self._body = RowEncoder(shape).encode
        self._writer = ChangeWriter(table.info, schema_id=value_id).write

    def key(self, values: Sequence[Any]) -> bytes:
        return self._key(values)

    def state(self, values: Sequence[Any]) -> bytes:
        if self.mask is not None:
            values = self.mask(values)
        return self._state(values)

    def envelope(
        self, op: Op, before: Sequence[Any] | None, after: Sequence[Any] | None, txn: Txn, order: int, ts_ms: int
    ) -> bytes:
        context = txn.encoded
        if context is None:
            context = txn.encoded = change_context(
                position=txn.position, commit_ms=txn.commit_ms, snapshot=txn.snapshot, transaction_id=txn.id
            )
        body = self._body
        if self.mask is not None:
            before = None if before is None else self.mask(before)
            after = None if after is None else self.mask(after)
        return self._writer(
            op, None if before is None else body(before), None if after is None else body(after), context, order, ts_ms
        )


class CountedCodec:
    """A table's codec whose envelopes are counted per transaction (liberator.capture.txmeta): the first event
    of a transaction is preceded by its BEGIN on the transaction topic."""

    def __init__(self, codec: DatumCodec, counter: TransactionCounter) -> None:
        self.codec = codec
        self.table = codec.table
        self.topic = codec.topic
        self.key_of = codec.key_of
        self.key = codec.key
        self.state = codec.state
        self.counter = counter

    def envelope(
        self, op: Op, before: Sequence[Any] | None, after: Sequence[Any] | None, txn: Txn, order: int, ts_ms: int
    ) -> Any:
        self.counter.counted(txn, self.table)
        return self.codec.envelope(op, before, after, txn, order, ts_ms)


class DebeziumCodec(CountedCodec):
    """`envelope: debezium` values (liberator.capture.debezium), as datums or framed bytes as the table's codec
    makes them; `source` is made once per transaction."""

    def __init__(self, codec: DatumCodec, counter: TransactionCounter) -> None:
        super().__init__(codec, counter)
        table = codec.table
        dialect = table.debezium
        assert dialect is not None and table.stream.value_schema is not None
        self.dialect = dialect
        value_id = codec.value_id
        self._encode = None if value_id is None else AvroEncoder(table.stream.value_schema, value_id).encode
        self._source: tuple[Txn | None, dict[str, Any]] = (None, {})

    def envelope(
        self, op: Op, before: Sequence[Any] | None, after: Sequence[Any] | None, txn: Txn, order: int, ts_ms: int
    ) -> Any:
        place = self.counter.counted(txn, self.table)
        known, source = self._source
        if known is not txn:
            source = source_block(self.dialect, self.table.source, self.table, txn)
            self._source = (txn, source)
        value = self.codec.value_datum
        datum = debezium_value(
            op,
            None if before is None else value(before),
            None if after is None else value(after),
            source,
            None if place is None else {"id": place[0], "total_order": place[1], "data_collection_order": place[2]},
            ts_ms,
        )
        return datum if self._encode is None else self._encode(datum)


Codec = DatumCodec | CountedCodec


class Eventifier:
    """Turns the items of a batch into records; `prepare` registers a table's schemas on first use."""

    def __init__(
        self,
        envelope: Envelope,
        prepare: Callable[[CapturedTable, str], DatumCodec],
        prepare_event: Callable[[ChangeEvent], tuple[Any, Any]],
        errors: RowErrors | None = None,
        move: Callable[[CapturedTable, IncompatibleSchemaError], None] | None = None,
    ) -> None:
        self.change = envelope is not Envelope.state
        self._prepare = prepare
        self._event = prepare_event
        self._codecs: dict[CapturedTable, Codec] = {}  # by identity: one per table version
        self._routed: dict[tuple[CapturedTable, str], Codec] = {}  # a table's codec per routed topic
        self.counter = TransactionCounter(prepare_event)
        # None (tests, dry runs): every poison row stops, whatever its table's policy says.
        self.errors = errors
        # Moves a table whose schemas the registry refused to its next topic (on_incompatible: new_topic);
        # None: every refusal stops the source.
        self._move = move

    def restart(self) -> None:
        """The source reads again from its last position (a retry): transactions are counted from their start."""
        self.counter.restart()

    def _codec(self, table: CapturedTable, topic: str | None = None) -> Codec:
        """The table's codec for `topic` (its own by default), made on its first change there (registering its
        schemas); counted where needed."""
        topic = table.stream.topic if topic is None else topic
        try:
            prepared = self._prepare(table, topic)
        except IncompatibleSchemaError as exc:
            if self._move is None or table.on_incompatible != "new_topic":
                raise
            if table.shaping is not None and table.shaping.router is not None:
                raise IncompatibleSchemaError(
                    f"{exc} (on_incompatible: new_topic does not move tables routed by a column; stop the source, "
                    "then route to new topics yourself)"
                ) from exc
            if topic != table.stream.topic:
                raise
            self._move(table, exc)  # table.stream is on the new topic from here on
            try:
                prepared = self._prepare(table, table.stream.topic)
            except IncompatibleSchemaError as again:
                raise IncompatibleSchemaError(
                    f"{again} (the registry refused it on the new topic too: on_incompatible: new_topic needs "
                    "subjects named by topic, schema_registry value_subject: topic or topic_record)"
                ) from again
        codec: Codec = prepared
        if table.debezium is not None:
            codec = DebeziumCodec(prepared, self.counter)
        elif table.transactions is not None:
            codec = CountedCodec(prepared, self.counter)
        return codec

    def records(
        self,
        items: Sequence[RowChange | ChangeEvent | PoisonRow],
        committed: Sequence[Txn] = (),
        position: Position | None = None,
    ) -> list[Record]:
        """The records of `items`; then the END of each transaction in `committed` (the transaction topic).
        `position` (the batch's) names where a poison row was found when its change carries no position."""
        out: list[Record] = []
        append = out.append
        counter = self.counter
        counter.append = append
        ts_ms = int(time.time() * 1000)  # the envelope's ts_ms: when liberator made the events
        change = self.change
        codecs = self._codecs
        for item in items:
            if item.__class__ is not RowChange:
                if item.__class__ is PoisonRow:
                    assert isinstance(item, PoisonRow)
                    self._poison(item, append, position)
                    continue
                assert isinstance(item, ChangeEvent)
                key, value = self._event(item)
                append((item.stream.topic, key, value, item.timestamp_ms, list(item.headers) or None))
                continue
            assert isinstance(item, RowChange)
            table = item.table
            txn = item.txn
            if txn.continues is not None:
                txn.take_order()
            mark, order = len(out), txn.order  # where this change's records start: a poison row keeps none
            opened, counted = counter.open, counter.events  # and no count on the transaction topic
            try:
                if table.shaping is not None:  # route by column, headers or a hook: not the hot path
                    self._shaped(append, item, table.shaping, ts_ms, change)
                    continue
                codec = codecs.get(table)
                if codec is None:
                    codec = codecs[table] = self._codec(table)
                matches = table.row_filter
                if matches is not None and item.op is not Op.truncate:
                    verdict = _filtered(item, matches)
                    if verdict is None:
                        continue  # the row is not published
                    item = verdict
                op = item.op
                if op is _CREATE or op is _READ:  # the hot path: one record, the key from the new row
                    after = item.after
                    assert after is not None
                    key_values = codec.key_of(after)
                    if None in key_values:
                        _check_key(table, key_values)
                    if change:
                        txn.order += 1
                        value = codec.envelope(op, None, after, txn, txn.order, ts_ms)
                    else:
                        value = codec.state(after)
                    append((codec.topic, codec.key(key_values), value, txn.timestamp_ms, list(item.headers) or None))
                else:
                    self._emit(append, codec, item, ts_ms, change, None)
            except DatumError as exc:
                del out[mark:]
                txn.order = order
                counter.undo(opened, counted, table.name)
                self._poison(PoisonRow.of_change(item, str(exc), CONVERSION, table.on_error), append, position)
            except TransformError as exc:
                del out[mark:]
                txn.order = order
                counter.undo(opened, counted, table.name)
                self._poison(PoisonRow.of_change(item, str(exc), TRANSFORM, table.on_error), append, position)
        if committed:
            counter.committed(committed)
        return out

    def _poison(self, row: PoisonRow, append: Callable[[Record], None], position: Position | None) -> None:
        if self.errors is None:
            raise FatalSourceError(row.reason)
        self.errors.handle(row, append, position)

    def _shaped(
        self, append: Callable[[Record], None], item: RowChange, shaping: Shaping, ts_ms: int, change: bool
    ) -> None:
        """A change of a table with `route: {by: ...}`, `headers` or a `hook` (liberator.capture.shaping)."""
        table = item.table
        matches = table.row_filter
        if matches is not None and item.op is not Op.truncate:
            verdict = _filtered(item, matches)
            if verdict is None:
                return
            item = verdict
        for planned, topic, tombstone in shaping.plan(item):  # a row error here is the caller's, for on_error
            codec = self._routed.get((table, topic))
            if codec is None:
                codec = self._routed[(table, topic)] = self._codec(table, topic)
            self._emit(append, codec, planned, ts_ms, change, tombstone)

    def _emit(
        self,
        append: Callable[[Record], None],
        codec: Codec,
        item: RowChange,
        ts_ms: int,
        change: bool,
        tombstone: tuple[tuple[str, bytes], ...] | None,
    ) -> None:
        """The records of one change (with `tombstone`: the headers of a delete's tombstone)."""
        op, txn = item.op, item.txn
        if op is _CREATE or op is _READ:
            assert item.after is not None
            self._upsert(append, codec, item, op, None, codec.key_of(item.after), txn, ts_ms, change)
        elif op is Op.update:
            assert item.after is not None
            new_key = codec.key_of(item.after)
            old_key = item.key if item.key is not None else (
                None if item.before is None else codec.key_of(item.before)
            )  # fmt: skip
            if old_key is not None and tuple(old_key) != new_key:
                # The key changed: the old key is deleted, the new one created (each on its partition).
                self._delete(append, codec, item, old_key, txn, ts_ms, change, tombstone)
                self._upsert(append, codec, item, Op.create, None, new_key, txn, ts_ms, change)
            else:
                self._upsert(append, codec, item, op, item.before, new_key, txn, ts_ms, change)
        elif op is Op.delete:
            if item.key is None and item.before is None:
                raise ValueError(f"a delete of {item.table.name} carries no row and no key")
            key = item.key if item.key is not None else codec.key_of(item.before)  # type: ignore[arg-type]
            self._delete(append, codec, item, key, txn, ts_ms, change, tombstone)
        else:  # a truncate: keyless
            value = codec.envelope(Op.truncate, None, None, txn, _next_order(txn), ts_ms)
            append((codec.topic, None, value, txn.timestamp_ms, None))

    @staticmethod
    def _upsert(
        append: Callable[[Record], None],
        codec: Codec,
        item: RowChange,
        op: Op,
        before: Sequence[Any] | None,
        key_values: Sequence[Any],
        txn: Txn,
        ts_ms: int,
        change: bool,
    ) -> None:
        _check_key(item.table, key_values)
        key = codec.key(key_values)
        assert item.after is not None
        if change:
            value = codec.envelope(op, before, item.after, txn, _next_order(txn), ts_ms)
        else:
            value = codec.state(item.after)
        append((codec.topic, key, value, txn.timestamp_ms, list(item.headers) or None))

    @staticmethod
    def _delete(
        append: Callable[[Record], None],
        codec: Codec,
        item: RowChange,
        key_values: Sequence[Any],
        txn: Txn,
        ts_ms: int,
        change: bool,
        tombstone: tuple[tuple[str, bytes], ...] | None = None,
    ) -> None:
        _check_key(item.table, key_values)
        key = codec.key(key_values)
        if change:
            # With `headers`, the old row's headers (`tombstone`) also go on the delete of an update's old key.
            headers = item.headers if tombstone is None else tombstone
            value = codec.envelope(Op.delete, item.before, None, txn, _next_order(txn), ts_ms)
            append((codec.topic, key, value, txn.timestamp_ms, list(headers) or None))
        append((codec.topic, key, None, txn.timestamp_ms, list(tombstone) if tombstone else None))  # the tombstone


def _filtered(item: RowChange, matches: Callable[[Sequence[Any]], bool]) -> RowChange | None:
    """The change to publish under a row filter (liberator.capture.filters), or None: the change itself when
    its row matches; for an update that leaves the filter (its old image matched), a delete of the key."""
    op = item.op
    if op is Op.delete:
        return item if item.before is None or matches(item.before) else None
    assert item.after is not None
    if matches(item.after):
        return item
    if op is Op.update and item.before is not None and matches(item.before):
        return RowChange(item.table, Op.delete, item.txn, before=item.before, key=item.key, headers=item.headers)
    return None


def _next_order(txn: Txn) -> int:
    """The next 1-based place in the transaction: every envelope of it counts, whichever table it is of."""
    txn.order += 1
    return txn.order


def _check_key(table: CapturedTable, key_values: Sequence[Any]) -> None:
    for value in key_values:
        if value is None:
            raise SchemaError(
                f"table {table.name}: a change arrived without its primary key values; check that the table's "
                "key columns are NOT NULL (PostgreSQL: the replica identity must be the primary key or FULL)"
            )
