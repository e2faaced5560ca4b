"""Typed configuration, validated at load with errors that name the file, line and dotted path."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from liberator import plugins, redaction
from liberator.errors import ConfigError, one_line
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


class HttpConfig(Model):
    listen: str = Field("127.0.0.1:9400", description="host:port serving /health (JSON) and /metrics")


class RawAppConfig(Model):
    name: str = Field(pattern=r"^[A-Za-z0-9._-]+$", description="the app's identity: client ids, offset keys")
    kafka: KafkaConfig
    schema_registry: RegistryConfig
    offsets: OffsetsConfig = OffsetsConfig()
    http: HttpConfig | None = Field(None, description="operator endpoint; off unless set")
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
    def shutdown_timeout(self) -> float:
        return self.raw.shutdown_timeout


def _first_error(exc: ValidationError, loaded: LoadedYaml, prefix: Loc, model: type[BaseModel]) -> ConfigError:
    # A typo shows up twice (unknown field + missing field); the unknown one names the real mistake.
    errors = sorted(exc.errors(include_url=False), key=lambda e: e["type"] != "extra_forbidden")
    err = errors[0]
    loc: Loc = prefix + tuple(part for part in err["loc"] if not _is_union_tag(part))
    message = err["msg"]
    kind = err["type"]
    if kind == "missing":
        message = "is required but missing"
    elif kind == "extra_forbidden":
        message = f"is not a known field; allowed here: {_fields_at(model, loc[len(prefix) : -1])}"
    elif kind == "model_type" and err.get("input") is None:
        message = f"is empty; give a mapping with {_fields_at(model, loc[len(prefix) :])}"
    elif kind == "literal_error":
        message = f"{_shown(err.get('input'))} is not allowed; {message.lower()}"
    elif kind == "value_error":
        message = message.removeprefix("Value error, ")  # our validators' messages name the value already
    elif "input" in err and not isinstance(err["input"], dict | list):
        message = f"{message} (got {_shown(err['input'])})"
    more = len(exc.errors()) - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return loaded.error(loc, message + suffix)


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
    loaded = load_yaml(path)
    redaction.remember_config(loaded.data)  # before validation: an error may quote any value
    if not isinstance(loaded.data, dict):
        raise loaded.error((), "the top level must be a mapping with name, kafka, schema_registry, sources")
    try:
        raw = RawAppConfig.model_validate(loaded.data)
    except ValidationError as exc:
        raise _first_error(exc, loaded, (), RawAppConfig) from None
    if raw.offsets.store == "file" and not raw.offsets.path:
        raise loaded.error(("offsets", "store"), "the file store needs offsets.path: a file to keep positions in")
    sources: list[SourceConfig] = []
    seen: set[str] = set()
    for index, entry in enumerate(raw.sources):
        loc: Loc = ("sources", index)
        if not isinstance(entry, dict) or "type" not in entry:
            known = ", ".join(sorted(plugins.available(plugins.SOURCE_GROUP)))
            raise loaded.error(loc, f"each source needs a type; installed: {known}")
        source_cls = plugins.load(plugins.SOURCE_GROUP, str(entry["type"]), _where(loaded, (*loc, "type")))
        model = source_cls.config_model
        try:
            config = model.model_validate(entry)
        except ValidationError as exc:
            raise _first_error(exc, loaded, loc, model) from None
        if config.name in seen:
            raise loaded.error((*loc, "name"), f"source name {config.name!r} is used twice; names must be unique")
        seen.add(config.name)
        sources.append(config)
    sinks: list[Any] = []
    for index, entry in enumerate(raw.sinks):
        loc = ("sinks", index)
        if not isinstance(entry, dict) or "type" not in entry:
            raise loaded.error(loc, "each sink needs a type")
        sink_cls = plugins.load(plugins.SINK_GROUP, str(entry["type"]), _where(loaded, (*loc, "type")))
        try:
            sinks.append(sink_cls.config_model.model_validate(entry))
        except ValidationError as exc:
            raise _first_error(exc, loaded, loc, sink_cls.config_model) from None
    if not sources and not sinks:
        raise loaded.error((), "no sources and no sinks: nothing to run; add a `sources:` list")
    return AppConfig(raw, sources, sinks, loaded.path)


def _where(loaded: LoadedYaml, loc: Loc) -> str:
    line = loaded.line_of(loc)
    return f"{loaded.path}:{line}: {dotted(loc)}" if line else loaded.path
