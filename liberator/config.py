"""Typed configuration, validated at load with errors that name the file, line and dotted path."""

from __future__ import annotations

import difflib
import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails

from liberator import plugins, redaction
from liberator.errors import ConfigError, ConfigProblems, one_line
from liberator.registry.subjects import SubjectStrategy
from liberator.source import SourceConfig
from liberator.yamlfile import LoadedYaml, Loc, dotted, load_yaml

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(value: Any) -> float:
    """'500ms', '2s', '5m', '1h' or a number of seconds, as seconds."""
    if isinstance(value, bool):
        raise ValueError("a duration such as 500ms, 2s, 5m or 1h")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"{one_line(repr(value), 80)} is not a duration; write e.g. 500ms, 2s, 5m or 1h")
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatabaseTimeouts(BaseModel):
    """How long a database may take to accept a connection and to answer on it.

    Part of every source and sink that talks to a database: a server (or host) that accepts connections
    and never answers then costs one timeout and a retry, never a hang."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    connect_timeout: Duration = Field(
        10.0, gt=0, description="opening a connection, the server's greeting and the login included "
        "(PostgreSQL counts whole seconds, at least 2)"
    )  # fmt: skip
    read_timeout: Duration = Field(
        60.0, gt=0, description="the longest a statement or a replication stream may go without an answer "
        "(the binlog and the WAL stream hear from the server every few seconds); then the connection counts "
        "as lost and is retried; raise it for statements that run longer"
    )  # fmt: skip


# `snapshot_workers`: reads at once, each on its own connection. More than the database server's cores rarely
# helps, and each worker holds a connection for as long as the source runs.
MAX_SNAPSHOT_WORKERS = 16


def snapshot_workers_field(description: str) -> Any:
    """The `snapshot_workers` setting of every source with parallel snapshot reads: 1 (one reader, the
    default) to MAX_SNAPSHOT_WORKERS; `description` says what its source reads at once."""
    return Field(1, ge=1, le=MAX_SNAPSHOT_WORKERS, description=description)


class SnapshotWorkers(BaseModel):
    """How many chunks of an incremental snapshot are read at once (liberator.watermarks): part of the CDC
    sources whose snapshots go between watermarks."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    snapshot_workers: int = snapshot_workers_field(
        "chunks read at once, each on its own connection, inside one pair of watermarks (incremental "
        "snapshots: snapshots on demand, new tables, the initial snapshot with snapshot_mode: incremental)"
    )


class SnapshotMode(BaseModel):
    """How the initial snapshot of a CDC source (postgres_wal, mysql_binlog) reads its tables: part of those
    sources, whose `snapshot` field it checks against."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    snapshot_mode: Literal["consistent", "incremental"] = Field(
        "consistent",
        description="how `snapshot: initial` reads the tables: consistent: in REPEATABLE READ transactions at one "
        "consistent cut (postgres_wal: the slot's exported snapshot, a crash re-reads the unfinished tables whole; "
        "mysql_binlog: a crash goes on after the last key in a new transaction); incremental: in chunks between "
        "watermarks while streaming from the start point (no long transaction; a crash resumes after the last "
        "chunk published; docs/snapshots.md)",
    )

    @model_validator(mode="after")
    def _incremental_needs_streaming(self) -> Self:
        # `snapshot` is the source's own field (every source that takes this mixin has one).
        if self.snapshot_mode == "incremental" and getattr(self, "snapshot", None) == "initial_only":
            raise ValueError(
                "snapshot_mode: incremental reads the tables while streaming, and snapshot: initial_only does not "
                "stream; use snapshot: initial, or snapshot_mode: consistent"
            )
        return self


class TopicDefaults(Model):
    partitions: int = Field(1, ge=1, description="partitions of topics liberator creates")
    replication_factor: int = Field(-1, description="-1: the broker's default")
    config: dict[str, str] = Field({}, description="topic configs, e.g. cleanup.policy, retention.ms")


class KafkaConfig(Model):
    bootstrap_servers: str = Field(description="host:port[,host:port...]")
    settings: dict[str, str | int | float | bool] = Field(
        {}, description="librdkafka settings applied last (security.protocol, sasl.*, linger.ms, ...)"
    )
    create_topics: bool = Field(True, description="create missing topics (with topic_defaults) before publishing")
    max_in_flight: int = Field(
        20_000, ge=1, description="per source: records handed to Kafka and not yet acknowledged, at most"
    )
    max_in_flight_bytes: int = Field(
        64 << 20, ge=1024, description="per source: their key and value bytes, at most (memory is bounded by these)"
    )
    topic_defaults: TopicDefaults = TopicDefaults()


Compatibility = Literal[
    "BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE", "FULL", "FULL_TRANSITIVE", "NONE"
]


class RegistryConfig(Model):
    url: str = Field(description="Confluent-compatible schema registry")
    basic_auth: str | None = Field(None, description='"user:password"; use ${ENV} or ${file:...}')
    compatibility: Compatibility | None = Field(
        "BACKWARD", description="set on each new subject before its first schema; null keeps the registry's"
    )
    key_subject: SubjectStrategy = Field(
        "topic",
        description="subject name strategy for keys: topic (<topic>-key, Confluent's TopicNameStrategy), "
        "record (the record's full name, RecordNameStrategy), topic_record (<topic>-<record>, TopicRecordNameStrategy)",
    )
    value_subject: SubjectStrategy = Field(
        "topic",
        description="subject name strategy for values: topic (<topic>-value), record, topic_record (as key_subject)",
    )


class OffsetsConfig(Model):
    store: Literal["kafka", "file"] = Field("kafka", description="kafka: a compacted topic; file: a local file")
    path: str | None = Field(None, description="the file store's file (replaced atomically, fsynced)")
    topic: str = Field("liberator-offsets", description="the kafka store's compacted topic")
    flush_interval: Duration = Field(1.0, description="how often acknowledged positions are stored")
    stall_warning: Duration = Field(
        300.0,
        description="warn (log, /health, /metrics) when a source's stored position has not moved for this long "
        "although Kafka acknowledged its events meanwhile; 0 turns the warning off",
    )

    @field_validator("path")
    @classmethod
    def _path_not_empty(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("path is empty; give a file path or remove the field")
        return value


def _off_is_off(value: object) -> object:
    return "off" if value is False else value  # YAML 1.1 reads a bare `off` as false


class HaConfig(Model):
    """Single writer, hot standby (docs/ha.md): a lease per source, held in the source's own database."""

    mode: Annotated[Literal["off", "lease"], BeforeValidator(_off_is_off)] = Field(
        "lease",
        description="lease: before a source reads, it takes a session lock in its database (PostgreSQL advisory "
        "lock, MySQL/MariaDB GET_LOCK, SQLite file lock); a second daemon with the same config stands by "
        "(phase: standby) and takes over when the leader dies; off: no lease (several daemons then need "
        "sources that share work, such as the outbox's skip_locked)",
    )
    takeover: Duration = Field(
        15.0,
        ge=3.0,
        description="a standby takes over within this after the leader dies; the leader confirms its lease "
        "every takeover/3 and stops publishing once it could not for 2/3 of it, and the database ends the "
        "lease's session after `takeover` without a word from the leader",
    )


class HttpConfig(Model):
    listen: str = Field(
        "127.0.0.1:9400", description="host:port serving /health (JSON), /health/live, /health/ready and /metrics"
    )
    live_timeout: Duration = Field(
        60.0, gt=0, description="/health/live answers 503 once the daemon's main loop has not ticked for this long "
        "(it ticks every second; storing a position on a frozen broker may hold one tick up to 30s)"
    )  # fmt: skip


class ProgressConfig(Model):
    interval: Duration = Field(
        10.0, description="off a terminal: one snapshot progress log line per table this often (0: none; on a "
        "terminal with text logs, progress bars instead)"
    )  # fmt: skip


class RawAppConfig(Model):
    name: str = Field(pattern=r"^[A-Za-z0-9._-]+$", description="the app's identity: client ids, offset keys")
    kafka: KafkaConfig
    schema_registry: RegistryConfig
    offsets: OffsetsConfig = OffsetsConfig()
    http: HttpConfig | None = Field(None, description="operator endpoint; off unless set")
    progress: ProgressConfig = Field(
        ProgressConfig(), description="snapshot progress per table: bars on a terminal, else log lines"
    )
    ha: HaConfig = HaConfig()
    sources: list[dict[str, Any]] = Field([], description="each validated by its `type`'s model, below")
    sinks: list[dict[str, Any]] = Field([], description="each validated by its `type`'s model, below")
    shutdown_timeout: Duration = Field(
        30.0, gt=0, description="after SIGTERM/SIGINT the daemon exits within this, whatever a server is doing: "
        "a source or sink still stuck in a call then is named, what is acknowledged is stored, the exit code is 1"
    )  # fmt: skip


class AppConfig:
    """The validated config: top-level settings plus each source's own validated model."""

    def __init__(self, raw: RawAppConfig, sources: list[SourceConfig], sinks: list[Any], path: str):
        self.raw = raw
        self.sources = sources
        self.sinks = sinks
        self.path = path

    @property
    def name(self) -> str:
        return self.raw.name

    @property
    def kafka(self) -> KafkaConfig:
        return self.raw.kafka

    @property
    def schema_registry(self) -> RegistryConfig:
        return self.raw.schema_registry

    @property
    def offsets(self) -> OffsetsConfig:
        return self.raw.offsets

    @property
    def http(self) -> HttpConfig | None:
        return self.raw.http

    @property
    def progress(self) -> ProgressConfig:
        return self.raw.progress

    @property
    def ha(self) -> HaConfig:
        return self.raw.ha

    @property
    def shutdown_timeout(self) -> float:
        return self.raw.shutdown_timeout


Problem = tuple[Loc, ConfigError]  # where in the file, and the one-line error naming the fix


def _validation_problems(
    exc: ValidationError, loaded: LoadedYaml, prefix: Loc, model: type[BaseModel]
) -> list[Problem]:
    """Each distinct problem pydantic found, one line each (not one per union member tried)."""
    errors = exc.errors(include_url=False)
    located = [(prefix + tuple(part for part in err["loc"] if not _is_union_tag(part)), err) for err in errors]
    unknown: dict[Loc, list[str]] = {}  # the unknown field names under each mapping
    for loc, err in located:
        if err["type"] == "extra_forbidden":
            unknown.setdefault(loc[:-1], []).append(str(loc[-1]))
    problems: list[Problem] = []
    seen: set[Loc] = set()
    for loc, err in located:
        if loc in seen or _unreadable(loaded, loc):
            continue  # a union reports each member; an unreadable value was reported as such
        seen.add(loc)
        kind = err["type"]
        if kind == "missing" and difflib.get_close_matches(str(loc[-1]), unknown.get(loc[:-1], []), n=1):
            continue  # a typo: the unknown field's line says which name was meant
        problems.append((loc, loaded.error(loc, _message(err, loc, prefix, model))))
    return problems


def _message(err: ErrorDetails, loc: Loc, prefix: Loc, model: type[BaseModel]) -> str:
    message = err["msg"]
    kind = err["type"]
    if kind == "missing":
        return "is required but missing"
    if kind == "extra_forbidden":
        allowed = _fields_at(model, loc[len(prefix) : -1])
        meant = difflib.get_close_matches(str(loc[-1]), allowed.split(", "), n=1)
        hint = f"did you mean {meant[0]!r}? " if meant else ""
        return f"is not a known field; {hint}allowed here: {allowed}"
    if kind == "model_type" and err.get("input") is None:
        return f"is empty; give a mapping with {_fields_at(model, loc[len(prefix) :])}"
    if kind == "literal_error":
        return f"{_shown(err.get('input'))} is not allowed; {message.lower()}"
    if kind == "value_error":
        return message.removeprefix("Value error, ")  # our validators' messages name the value already
    if "input" in err and not isinstance(err["input"], dict | list):
        return f"{message} (got {_shown(err['input'])})"
    return message


def _unreadable(loaded: LoadedYaml, loc: Loc) -> bool:
    return any(loc[: len(bad)] == bad for bad, _ in loaded.problems)


def _shown(value: object) -> str:
    """A value as the file has it, cut short: the operator needs to recognise it, not read all of it."""
    return one_line(repr(value), 80)


def _fields_at(model: type[BaseModel], loc: Loc) -> str:
    """The field names of the (nested) model found at `loc` below `model`."""
    for part in loc:
        field = model.model_fields.get(str(part))
        nested = getattr(field.annotation, "model_fields", None) if field else None
        if field is None or nested is None:
            break
        model = field.annotation  # type: ignore[assignment]
    return ", ".join(model.model_fields)


def _is_union_tag(part: object) -> bool:
    return isinstance(part, str) and (part.startswith("function-") or part in {"str", "int", "float", "bool"})


def load_config(path: str | Path) -> AppConfig:
    """The validated config; a ConfigError naming the problem (ConfigProblems when there are several)."""
    config, problems = read_config(path)
    if len(problems) == 1:
        raise problems[0]
    if problems:
        raise ConfigProblems(problems)
    assert config is not None
    return config


def read_config(path: str | Path) -> tuple[AppConfig | None, list[ConfigError]]:
    """Every problem of the file, in file order, and the config of its valid part: None when the top level
    has a problem; else without the sources and sinks that have one (so `check` can still try the rest).
    A file that cannot be read as a config at all (not YAML, too big) raises its one ConfigError."""
    loaded = load_yaml(path, keep_problems=True)
    redaction.remember_config(loaded.data)  # before validation: an error may quote any value
    if not isinstance(loaded.data, dict):
        raise loaded.error((), "the top level must be a mapping with name, kafka, schema_registry, sources")
    problems: list[Problem] = list(loaded.problems)
    raw: RawAppConfig | None = None
    try:
        raw = RawAppConfig.model_validate({k: v for k, v in loaded.data.items() if k not in ("sources", "sinks")})
    except ValidationError as exc:
        problems += _validation_problems(exc, loaded, (), RawAppConfig)
    offsets = raw.offsets if raw is not None else _valid_or_none(OffsetsConfig, loaded.data.get("offsets") or {})
    if offsets is not None and offsets.store == "file" and not offsets.path:
        error = loaded.error(("offsets", "store"), "the file store needs offsets.path: a file to keep positions in")
        problems.append((("offsets", "store"), error))
    entries = {kind: loaded.data.get(kind) or [] for kind in ("sources", "sinks")}
    for kind, listed in entries.items():
        if not isinstance(listed, list):
            problems.append(((kind,), loaded.error((kind,), f"must be a list (got {_shown(listed)})")))
            entries[kind] = []
    sources = _validated(loaded, "sources", plugins.SOURCE_GROUP, entries["sources"], problems)
    sinks = _validated(loaded, "sinks", plugins.SINK_GROUP, entries["sinks"], problems)
    if raw is not None:
        problems += _moves_need_topic_subjects(loaded, raw.schema_registry, entries["sources"], sources)
    unreadable = _unreadable(loaded, ("sources",)) or _unreadable(loaded, ("sinks",))
    if not entries["sources"] and not entries["sinks"] and not unreadable:
        error = loaded.error((), "no sources and no sinks: nothing to run; add a `sources:` list")
        problems.append(((), error))
    problems.sort(key=lambda problem: (loaded.line_of(problem[0]) or 0) if problem[0] else math.inf)
    top_level_ok = raw is not None and not any(loc[:1] not in (("sources",), ("sinks",)) for loc, _ in problems)
    config = AppConfig(raw, sources, sinks, loaded.path) if raw is not None and top_level_ok else None
    return config, [error for _, error in problems]


def _moves_need_topic_subjects(
    loaded: LoadedYaml, registry: RegistryConfig, entries: list[Any], sources: list[Any]
) -> list[Problem]:
    """on_incompatible: new_topic moves a table to subjects of its new topic: refused when subjects do not
    depend on the topic (RecordNameStrategy), which would refuse the schema again."""
    strategies = {registry.key_subject, registry.value_subject}
    if "record" not in strategies:
        return []
    out: list[Problem] = []
    names = [entry.get("name") if isinstance(entry, dict) else None for entry in entries]
    for source in sources:
        if getattr(source, "moves_tables", None) is not None and source.moves_tables():
            loc: Loc = ("sources", names.index(source.name), "on_incompatible")
            message = (
                "new_topic needs subjects named by topic, but schema_registry names them by "
                "record (the new topic's subjects would refuse the schema again); use key_subject and "
                "value_subject topic or topic_record, or on_incompatible: stop"
            )
            out.append((loc, loaded.error(loc, message)))
    return out


def _valid_or_none(model: type[OffsetsConfig], data: object) -> OffsetsConfig | None:
    """`data` as `model` when valid (its problems are reported with the whole file's)."""
    try:
        return model.model_validate(data)
    except ValidationError:
        return None


def _validated(loaded: LoadedYaml, kind: str, group: str, entries: list[Any], problems: list[Problem]) -> list[Any]:
    """The valid entries of `sources:` or `sinks:`; the problems of the others appended to `problems`."""
    valid: list[Any] = []
    names: set[str] = set()
    singular = kind.removesuffix("s")
    for index, entry in enumerate(entries):
        loc: Loc = (kind, index)
        if not isinstance(entry, dict) or "type" not in entry:
            known = ", ".join(sorted(plugins.available(group)))
            problems.append((loc, loaded.error(loc, f"each {singular} needs a type; installed: {known}")))
            continue
        try:
            plugin = plugins.load(group, str(entry["type"]), _where(loaded, (*loc, "type")))
        except ConfigError as error:
            problems.append(((*loc, "type"), error))
            continue
        model = plugin.config_model
        try:
            config = model.model_validate(entry)
        except ValidationError as exc:
            problems += _validation_problems(exc, loaded, loc, model)
            continue
        if hasattr(config, "moves_tables") and config.moves_tables() and not getattr(plugin, "table_moves", False):
            # A moved table is read again into its new topic by the source's incremental snapshot.
            message = (
                f"new_topic needs the source to read a moved table again into its new topic with its incremental "
                f"snapshots, which {entry['type']} sources do not do yet; use on_incompatible: stop"
            )
            problems.append(((*loc, "on_incompatible"), loaded.error((*loc, "on_incompatible"), message)))
            continue
        if any(bad[: len(loc)] == loc for bad, _ in loaded.problems):
            continue  # a value of it could not be read (reported): validated as None, not usable
        name = str(getattr(config, "name", ""))
        if name in names:
            message = f"{singular} name {name!r} is used twice; names must be unique"
            problems.append(((*loc, "name"), loaded.error((*loc, "name"), message)))
            continue
        names.add(name)
        valid.append(config)
    return valid


def _where(loaded: LoadedYaml, loc: Loc) -> str:
    line = loaded.line_of(loc)
    return f"{loaded.path}:{line}: {dotted(loc)}" if line else loaded.path


_AVRO_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def published_names(renames: dict[str, str]) -> dict[str, str]:
    """A `rename:` map ({column: published name}) whose new names are Avro names, as every field must be."""
    for column, new in renames.items():
        if not _AVRO_NAME.fullmatch(new):
            raise ValueError(
                f"rename: {column}: {new!r} is not an Avro field name (letters, digits, _; no digit first)"
            )
    return renames
