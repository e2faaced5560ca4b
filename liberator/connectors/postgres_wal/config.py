"""`type: postgres_wal`: settings of the PostgreSQL logical-replication source."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from liberator.capture.moves import TableIncompatiblePolicies
from liberator.capture.rowerrors import TableErrorPolicies
from liberator.capture.transforms import TableTransforms
from liberator.capture.txmeta import TransactionSettings
from liberator.config import DatabaseTimeouts, Duration, SnapshotWorkers
from liberator.envelope import Envelope
from liberator.outbox import OutboxRouting
from liberator.source import SourceConfig

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_$]{0,62}$")


class WalOutboxConfig(OutboxRouting):
    """Domain events from the WAL: inserts into an outbox table and/or `pg_logical_emit_message` messages.

    The routing rules (columns, topic, payload, on_invalid...) are the outbox source's (docs/outbox.md).
    """

    table: str | None = Field(None, description="schema.table of the outbox table: each insert is one event")
    message_prefix: str | None = Field(
        None, description="logical messages with this prefix carry one event as a JSON object of the columns"
    )

    @model_validator(mode="after")
    def _one_input(self) -> WalOutboxConfig:
        if self.table is None and self.message_prefix is None:
            raise ValueError("give the outbox `table`, a `message_prefix`, or both")
        return self


class PostgresWalConfig(
    SourceConfig,
    DatabaseTimeouts,
    SnapshotWorkers,
    TableTransforms,
    TableErrorPolicies,
    TableIncompatiblePolicies,
    TransactionSettings,
):
    type: Literal["postgres_wal"] = "postgres_wal"
    url: str = Field(description="postgresql://user:password@host:port/database (libpq URL)")
    tables: list[str] = Field(
        min_length=1, description="schema.table names or fnmatch patterns (public.order_*); default schema public"
    )
    slot: str = Field("liberator", description="logical replication slot (pgoutput)")
    publication: str = Field("liberator", description="publication naming the captured tables")
    create: bool = Field(True, description="create the slot and publication when missing (needs the privileges)")
    snapshot: Literal["initial", "never", "initial_only"] = Field(
        "initial",
        description="initial: read the tables first, then stream; never: stream only; initial_only: read once",
    )
    snapshot_chunk: int = Field(10_000, ge=1, le=1_000_000, description="rows per primary-key chunk of the snapshot")
    snapshot_mode: Literal["consistent", "incremental"] = Field(
        "consistent",
        description="how `snapshot: initial` reads the tables: consistent: in one REPEATABLE READ transaction on the "
        "slot's exported snapshot (a consistent cut; a crash re-reads the unfinished tables whole); incremental: "
        "in chunks between watermarks while streaming from the slot's point (no long transaction; a crash resumes "
        "after the last chunk published; docs/snapshots.md)",
    )
    envelope: Envelope = Field(
        Envelope.change,
        description="change: before/after/op/source records; state: the row itself; debezium: Debezium's "
        "envelope, field for field (docs/envelopes.md)",
    )
    topic: str = Field("{source}.{schema}.{table}", description="template; also {app}")
    replica_identity: Literal["warn", "require_full", "ignore"] = Field(
        "warn",
        description="tables without REPLICA IDENTITY FULL have no before-images: warn, refuse to start, or ignore",
    )
    truncate: Literal["warn", "fail", "publish"] = Field(
        "warn",
        description="TRUNCATE of a captured table: log a warning and go on, stop the source, or publish an "
        "op 't' change event with a null key per table (change envelope only)",
    )
    infinity: Literal["clamp", "fail"] = Field(
        "clamp", description="timestamp/date 'infinity': clamp to 9999-12-31T23:59:59.999999 / 0001-01-01, or stop"
    )
    toast_placeholder: str = Field(
        "__liberator_unchanged_toast__",
        description="stands for an unchanged TOASTed text/bytes value whose old value is unknown",
    )
    status_interval: Duration = Field(
        10.0,
        description="how often the server hears the acknowledged LSN, and the catalogue is looked at for new "
        "tables matching `tables` (docs/snapshots.md)",
    )
    heartbeat: Duration = Field(
        0.0, description="write a pg_logical_emit_message this often, so an idle database's slot advances; 0: off"
    )
    outbox: WalOutboxConfig | None = Field(None, description="publish outbox rows / messages as domain events")
    signal_table: str | None = Field(
        None,
        description="schema.table with columns id, type, data (as Debezium's signal table): an inserted row of type "
        "execute-snapshot asks for an incremental or blocking snapshot (docs/snapshots.md)",
    )

    @model_validator(mode="after")
    def _incremental_needs_streaming(self) -> PostgresWalConfig:
        if self.snapshot_mode == "incremental" and self.snapshot == "initial_only":
            raise ValueError(
                "snapshot_mode: incremental reads the tables while streaming, and snapshot: initial_only does not "
                "stream; use snapshot: initial, or snapshot_mode: consistent"
            )
        return self

    @model_validator(mode="after")
    def _truncate_needs_change_envelope(self) -> PostgresWalConfig:
        if self.truncate == "publish" and self.envelope == Envelope.state:
            raise ValueError(
                "truncate: publish needs envelope: change (a state record cannot say 'truncated'); "
                "set envelope: change or truncate: warn"
            )
        return self

    @field_validator("signal_table")
    @classmethod
    def _qualified_signal_table(cls, value: str | None) -> str | None:
        return value if value is None or "." in value else f"public.{value}"

    @field_validator("slot", "publication")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        if not _IDENTIFIER.match(value):
            raise ValueError(f"{value!r}: use lower-case letters, digits and _ (a PostgreSQL identifier)")
        return value
