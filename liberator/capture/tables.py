"""The captured-table catalogue: every source's tables, their published shape, topic, schemas and versions.

A connector knows how to read its database's description of a table (pg_attribute, information_schema, a
Relation message, a TableMap event, SQLAlchemy reflection) and turns it into a neutral `TableSchema` with
every column. The catalogue owns what is the same for every source: which columns are published (excluded
columns dropped, key columns kept), the topic the table goes to, the Avro key and value schemas in the
source's envelope, the constant part of the envelope's `source` block, and a new version whenever the
published shape changes (so the runtime registers, and the registry checks, the new schemas before the
first record that uses them).
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from liberator.avro import DatumConverter, key_schema, namespace_for, value_schema
from liberator.capture.changes import Txn
from liberator.capture.debezium import DebeziumDialect, debezium_schema, named_key
from liberator.capture.filters import RowFilter, compile_filter
from liberator.capture.headers import HeaderRule, RecordHeaders
from liberator.capture.hooks import HookRule, HookStage
from liberator.capture.masks import Masker, MaskRule, masked
from liberator.capture.moves import OnIncompatible, TopicMoves
from liberator.capture.routes import RouteByColumn, RouteRule
from liberator.capture.rowerrors import OnError
from liberator.capture.shaping import Shaping
from liberator.capture.txmeta import transaction_stream
from liberator.envelope import Envelope, SourceInfo, change_schema
from liberator.errors import SchemaError
from liberator.events import Stream
from liberator.schema import TableSchema

_TOPIC_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
DEFAULT_TOPIC = "{source}.{schema}.{table}"


def render_topic(template: str, *, source: str, app: str, schema: str, table: str) -> str:
    """A topic name from a template with {source}, {app}, {schema}, {table}; unsafe characters become _."""
    return _TOPIC_UNSAFE.sub("_", template.format(source=source, app=app, schema=schema, table=table))


@dataclass(frozen=True)
class CaptureSettings:
    """What the core needs to know of a source to eventify its tables (from its validated config)."""

    source: str  # the source's name in the config
    connector: str  # its type: postgres_wal, mysql_binlog, query
    app: str  # the config's top-level name
    envelope: Envelope = Envelope.change
    topic: str = DEFAULT_TOPIC
    # Columns left out, per table: keys are "schema.table" (or a bare table name where `default_schema` matches).
    exclude: Mapping[str, Sequence[str]] = field(default_factory=dict)
    # The only columns published (key columns always are), per table (keyed as `exclude`); absent: all.
    include: Mapping[str, Sequence[str]] = field(default_factory=dict)
    # Column masks, per table (keyed as `exclude`): {column: rule} (liberator.capture.masks), and the salt of `hash`.
    mask: Mapping[str, Mapping[str, MaskRule]] = field(default_factory=dict)
    # Row filters, per table (keyed as `exclude`): an expression over the columns (liberator.capture.filters).
    filter: Mapping[str, str] = field(default_factory=dict)
    mask_salt: str | None = None
    # Columns published under another name, per table (keyed as `exclude`): {column: published name}.
    rename: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    # Topic by template or by a column's value, record headers, a Python hook, per table (keyed as `exclude`).
    route: Mapping[str, RouteRule] = field(default_factory=dict)
    headers: Mapping[str, HeaderRule] = field(default_factory=dict)
    hook: Mapping[str, HookRule] = field(default_factory=dict)
    default_schema: str | None = None
    truncate: str = "warn"  # warn | fail | publish
    # The connector's part of `envelope: debezium` (None: the connector does not offer it).
    debezium: DebeziumDialect | None = None
    # The transaction topic's template ({source}, {app}; liberator.capture.txmeta), or None: no such topic.
    transactions: str | None = None

    @property
    def tracks_transactions(self) -> bool:
        """Whether the core counts transactions' events: the connector then reports commits
        (`ChangeBatch.committed`)."""
        return self.envelope is Envelope.debezium or self.transactions is not None

    # What happens to a row that cannot become an event (liberator.capture.rowerrors), and per table (keyed as
    # `exclude`) where that differs.
    on_error: OnError = "stop"
    on_error_tables: Mapping[str, OnError] = field(default_factory=dict)
    # What happens when the registry refuses a table's new schema (liberator.capture.moves), and per table
    # (keyed as `exclude`) where that differs; `moves` knows the versioned topics of tables moved before.
    on_incompatible: OnIncompatible = "stop"
    on_incompatible_tables: Mapping[str, OnIncompatible] = field(default_factory=dict)
    moves: TopicMoves | None = None


class CapturedTable:
    """One version of one captured table as it is published; replaced (never changed) when the shape changes.

    `columns` are the published columns, by their names in the database; connectors hand row values in that
    order. Where columns are excluded, `pick` is the positions of the published columns among all of the
    table's columns (None when every column is published), for connectors that read whole rows. `published`
    is `shape` with the names the events use (`rename`): schemas, keys and datums are made from it.
    """

    __slots__ = (
        "debezium",
        "full_shape",
        "info",
        "key_converter",
        "key_index",
        "mask",
        "name",
        "on_error",
        "on_incompatible",
        "pick",
        "published",
        "row_filter",
        "schema_name",
        "shape",
        "shaping",
        "source",
        "stream",
        "table_name",
        "transaction_id",
        "transactions",
        "value_converter",
        "version",
    )

    def __init__(
        self,
        settings: CaptureSettings,
        full_shape: TableSchema,
        shape: TableSchema,
        pick: tuple[int, ...] | None,
        server: str,
        version: int,
        topic: str,
        published: TableSchema | None = None,
        mask: Masker | None = None,
        row_filter: RowFilter | None = None,
        on_error: OnError = "stop",
        shaping: Shaping | None = None,
        on_incompatible: OnIncompatible = "stop",
    ) -> None:
        self.full_shape = full_shape
        self.on_incompatible = on_incompatible  # a refused schema stops the source, or moves the table
        self.on_error = on_error  # what happens to a row of it that cannot become an event
        self.shaping = shaping  # route by column, headers, hook (None: none of them; the Eventifier's fast path)
        self.shape = shape
        self.row_filter = row_filter  # which rows are published (None: all), over `shape`'s values
        self.mask = mask  # hides masked columns' values in a row (None: nothing is masked)
        self.published = published = shape if published is None else published
        self.pick = pick
        self.version = version
        self.schema_name = shape.schema or ""
        self.table_name = shape.name
        self.name = shape.qualified_name
        names = [c.name for c in shape.columns]
        self.key_index = tuple(names.index(k) for k in shape.key)
        self.source = settings.source
        self.debezium = settings.debezium if settings.envelope is Envelope.debezium else None
        self.transaction_id: Callable[[Txn], str | None] = (
            _own_id if self.debezium is None else self.debezium.transaction_id
        )
        key, value = _schemas(settings, published, self.schema_name, self.table_name)
        self.stream = Stream(topic, key, value, self.name)
        self.transactions = None
        if settings.transactions is not None:
            self.transactions = transaction_stream(
                render_topic(settings.transactions, source=settings.source, app=settings.app, schema="", table="")
            )
        self.info = SourceInfo(settings.connector, settings.source, server, self.schema_name, self.table_name)
        self.value_converter = DatumConverter(published)
        self.key_converter = DatumConverter.for_key(published)

    def streams(self) -> list[Stream]:
        """Every stream the table publishes to: its routed topics' (`route: {by: ...}`), else its own."""
        router = None if self.shaping is None else self.shaping.router
        if router is None:
            return [self.stream]
        return [self.stream_to(topic) for topic in router.all_topics()]

    def stream_to(self, topic: str) -> Stream:
        """The table's stream on another topic (a route by column): the same schemas, that topic's subjects."""
        if topic == self.stream.topic:
            return self.stream
        return Stream(topic, self.stream.key_schema, self.stream.value_schema, self.stream.origin)

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.shape.columns)

    def __repr__(self) -> str:
        return f"CapturedTable({self.name} v{self.version} -> {self.stream.topic})"


class Catalogue:
    """The captured tables of one source, by qualified name, each at its newest published shape."""

    def __init__(self, settings: CaptureSettings, log: logging.Logger | None = None) -> None:
        self.settings = settings
        self.log = log or logging.getLogger(f"liberator.source.{settings.source}")
        self.server = ""
        self._tables: dict[str, CapturedTable] = {}

    def topic_for(self, schema: str, table: str, template: str | None = None) -> str:
        s = self.settings
        return render_topic(template or s.topic, source=s.source, app=s.app, schema=schema, table=table)

    def _for_table(self, settings: Mapping[str, Any], schema: str, table: str) -> Any:
        """A per-table setting (keyed "schema.table", or the bare table in the default schema), or None."""
        found = settings.get(f"{schema}.{table}" if schema else table)
        if found is None and schema == self.settings.default_schema:
            found = settings.get(table)
        return found

    def excluded(self, schema: str, table: str) -> list[str]:
        return list(self._for_table(self.settings.exclude, schema, table) or [])

    def included(self, schema: str, table: str) -> list[str] | None:
        found = self._for_table(self.settings.include, schema, table)
        return None if found is None else list(found)

    def filter_of(self, schema: str, table: str) -> str | None:
        found: str | None = self._for_table(self.settings.filter, schema, table)
        return found

    def masks(self, schema: str, table: str) -> dict[str, MaskRule]:
        return dict(self._for_table(self.settings.mask, schema, table) or {})

    def renamed(self, schema: str, table: str) -> dict[str, str]:
        return dict(self._for_table(self.settings.rename, schema, table) or {})

    def on_error(self, schema: str, table: str) -> OnError:
        found: OnError | None = self._for_table(self.settings.on_error_tables, schema, table)
        return self.settings.on_error if found is None else found

    def on_incompatible(self, schema: str, table: str) -> OnIncompatible:
        found: OnIncompatible | None = self._for_table(self.settings.on_incompatible_tables, schema, table)
        return self.settings.on_incompatible if found is None else found

    def get(self, name: str) -> CapturedTable | None:
        return self._tables.get(name)

    def table(
        self,
        full_shape: TableSchema,
        *,
        topic: str | None = None,
        exclude: Sequence[str] | None = None,
        rename: Mapping[str, str] | None = None,
        include: Sequence[str] | None = None,
        mask: Mapping[str, MaskRule] | None = None,
        row_filter: str | None = None,
        on_error: OnError | None = None,
        route: RouteRule | None = None,
        headers: HeaderRule | None = None,
        hook: HookRule | None = None,
        on_incompatible: OnIncompatible | None = None,
    ) -> CapturedTable:
        """The captured table for this shape: the known one when its published shape is unchanged, else a
        new version. The keyword arguments override the settings' per-table transforms (per-entry configs). The
        shape has every column of the table; an excluded column needs no type (None: it is never published)."""
        name = full_shape.qualified_name
        schema = full_shape.schema or ""
        if not full_shape.key:
            raise SchemaError(
                f"table {name} has no primary key; add one (ALTER TABLE {name} ADD PRIMARY KEY (...)) so its "
                "events have a key, or leave the table out of `tables`"
            )
        pick, shape = self._picked(full_shape, exclude, include)
        expression = self.filter_of(schema, full_shape.name) if row_filter is None else row_filter
        matches = compile_filter(name, shape, expression)
        rules = self.masks(schema, full_shape.name) if mask is None else dict(mask)
        masked_shape, masker = masked(name, shape, rules, self.settings.mask_salt)
        renames = self.renamed(schema, full_shape.name) if rename is None else dict(rename)
        published = _renamed(name, masked_shape, renames)
        topic_name = topic if topic is not None else self.topic_for(schema, full_shape.name)
        route = self._for_table(self.settings.route, schema, full_shape.name) if route is None else route
        if route is not None and route.topic is not None:
            topic_name = self.topic_for(schema, full_shape.name, route.topic)
        shaping = self._shaping(full_shape, shape, published, topic_name, masker, list(rules), route, headers, hook)
        policy = self.on_error(schema, full_shape.name) if on_error is None else on_error
        if on_incompatible is None:
            on_incompatible = self.on_incompatible(schema, full_shape.name)
        if on_incompatible == "new_topic" and self.settings.moves is not None:
            topic_name = self.settings.moves.current(topic_name)  # moved before (this run or an earlier one)
        if shaping is not None and shaping.hook is not None:
            published, masker = shaping.hook.output, None  # the hook sees masked values; its output is published
        known = self._tables.get(name)
        if (
            known is not None
            and known.shape == shape
            and known.published == published
            and (known.row_filter is None) == (matches is None)
            and (known.shaping is None) == (shaping is None)
            and known.on_error == policy
            and known.on_incompatible == on_incompatible
            and known.stream.topic == topic_name
        ):
            if known.pick != pick or known.full_shape != full_shape:
                # Only unpublished columns changed: same schemas, new positions to pick from.
                known.full_shape, known.pick = full_shape, pick
            return known
        version = 1 if known is None else known.version + 1
        table = CapturedTable(
            self.settings,
            full_shape,
            shape,
            pick,
            self.server,
            version,
            topic_name,
            published,
            masker,
            matches,
            policy,
            shaping,
            on_incompatible,
        )
        if known is not None:
            self.log.info("the shape of %s changed; its new schemas are checked before the next event", name)
        self._tables[name] = table
        return table

    def _picked(
        self, full_shape: TableSchema, exclude: Sequence[str] | None, include: Sequence[str] | None
    ) -> tuple[tuple[int, ...] | None, TableSchema]:
        """The positions of the published columns among all (None: all are) and the shape they make, after
        `include`/`exclude` (the arguments override the settings' per-table ones)."""
        name = full_shape.qualified_name
        schema = full_shape.schema or ""
        excluded = set(self.excluded(schema, full_shape.name) if exclude is None else exclude)
        all_names = [c.name for c in full_shape.columns]
        allowed = self.included(schema, full_shape.name) if include is None else list(include)
        if allowed is not None:
            # An allow-list: a column added to the table later stays unpublished until it is listed.
            missing_allowed = sorted(set(allowed) - set(all_names))
            if missing_allowed:
                raise SchemaError(f"table {name}: `include` names unknown columns {missing_allowed}")
            kept = set(allowed) | set(full_shape.key)
            excluded |= {c for c in all_names if c not in kept}
        unknown = excluded - set(all_names)
        if unknown:
            raise SchemaError(f"table {name}: `exclude` names unknown columns {sorted(unknown)}")
        if excluded & set(full_shape.key):
            raise SchemaError(
                f"table {name}: key columns cannot be excluded ({sorted(excluded & set(full_shape.key))})"
            )
        missing = [k for k in full_shape.key if k not in all_names]
        if missing:
            raise SchemaError(f"table {name}: key column(s) {', '.join(missing)} are not in the replicated columns")
        pick = tuple(i for i, c in enumerate(all_names) if c not in excluded) if excluded else None
        shape = full_shape
        if pick is not None:
            shape = TableSchema(
                full_shape.schema, full_shape.name, tuple(full_shape.columns[i] for i in pick), full_shape.key
            )
        return pick, shape

    def tables(self) -> list[CapturedTable]:
        return list(self._tables.values())

    def _shaping(
        self,
        full_shape: TableSchema,
        shape: TableSchema,
        published: TableSchema,
        topic: str,
        masker: Masker | None,
        masked_columns: list[str],
        route: RouteRule | None,
        headers: HeaderRule | None,
        hook: HookRule | None,
    ) -> Shaping | None:
        """The compiled route by column, headers and hook of a table version (the arguments override the
        settings' per-table ones); None without any of them."""
        name, schema = full_shape.qualified_name, full_shape.schema or ""
        headers = self._for_table(self.settings.headers, schema, shape.name) if headers is None else headers
        hook = self._for_table(self.settings.hook, schema, shape.name) if hook is None else hook
        router = None
        if route is not None and route.by is not None:
            router = RouteByColumn(name, shape, route, lambda t: self.topic_for(schema, shape.name, t))
        made = None if headers is None else RecordHeaders(name, shape, headers, masked_columns)
        stage = None if hook is None else HookStage(name, published, hook, masker)
        if router is None and made is None and stage is None:
            return None
        return Shaping(topic, router, made, stage)


def _schemas(
    settings: CaptureSettings, published: TableSchema, schema: str, table: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The key and value schemas of a table in the source's envelope."""
    if settings.envelope is Envelope.debezium:
        if settings.debezium is None:
            raise SchemaError(f"{settings.connector} sources have no envelope: debezium; use change or state")
        # Debezium's names: <prefix>.<schema>.<table>.Envelope/.Value/.Key, the prefix being the source.
        namespace = namespace_for(settings.source, schema, table)
        key = named_key(key_schema(published, namespace))
        return key, debezium_schema(value_schema(published, namespace), settings.debezium)
    namespace = namespace_for(settings.app, settings.source, schema, table)
    value = value_schema(published, namespace)
    if settings.envelope is Envelope.change:
        value = change_schema(value)
    return key_schema(published, namespace), value


def _own_id(txn: Txn) -> str | None:
    return txn.id


def _renamed(name: str, shape: TableSchema, rename: dict[str, str]) -> TableSchema:
    """`shape` with the published names of `rename` ({column: new name}); refuses names that clash."""
    if not rename:
        return shape
    columns = [c.name for c in shape.columns]
    unknown = sorted(set(rename) - set(columns))
    if unknown:
        raise SchemaError(f"table {name}: `rename` names columns that are not published: {unknown}")
    new_names = [rename.get(c, c) for c in columns]
    clashes = sorted({n for n in new_names if new_names.count(n) > 1})
    if clashes:
        raise SchemaError(f"table {name}: `rename` gives two columns the name {clashes[0]!r}; choose another")
    renamed = tuple(dataclasses.replace(c, name=rename.get(c.name, c.name)) for c in shape.columns)
    key = tuple(rename.get(k, k) for k in shape.key)
    return TableSchema(shape.schema, shape.name, renamed, key)
