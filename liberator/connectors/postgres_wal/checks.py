"""Start-up checks and the slot/publication set-up; every problem is one line naming the fix."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from liberator.connectors.postgres_wal.config import PostgresWalConfig
from liberator.connectors.postgres_wal.position import parse_lsn
from liberator.connectors.postgres_wal.tables import TableCatalog, split_name
from liberator.envelope import Envelope
from liberator.errors import FatalSourceError, LiberatorError


@dataclass(frozen=True)
class SlotState:
    plugin: str | None
    slot_type: str
    database: str | None
    active_pid: int | None
    confirmed_flush: int | None
    wal_status: str | None


def slot_state(conn: psycopg.Connection[Any], slot: str) -> SlotState | None:
    row = conn.execute(
        "SELECT plugin, slot_type, database, active_pid, confirmed_flush_lsn::text, wal_status"
        " FROM pg_replication_slots WHERE slot_name = %s",
        (slot,),
    ).fetchone()
    if row is None:
        return None
    return SlotState(row[0], row[1], row[2], row[3], None if row[4] is None else parse_lsn(row[4]), row[5])


def slot_holder(conn: psycopg.Connection[Any], pid: int) -> tuple[str, str]:
    """(application_name, a description naming the walsender pid, client address and start) of a session."""
    row = conn.execute(
        "SELECT application_name, client_addr::text, client_port, backend_start::text"
        " FROM pg_stat_replication WHERE pid = %s",
        (pid,),
    ).fetchone()
    if row is None:  # not visible to this role (pg_read_all_stats shows it), or just ended
        return "", f"walsender pid {pid}"
    application, address, port, since = row
    client = "a local socket" if address is None else f"{address}:{port}"
    return str(application or ""), (
        f"walsender pid {pid}, client {client}, application_name {application or '(none)'!r}, since {since}"
    )


def _qualified(name: str) -> str:
    schema, table = split_name(name)
    return sql.Identifier(schema, table).as_string(None)


def publication_sql(config: PostgresWalConfig, tables: list[str]) -> str:
    listed = ", ".join(_qualified(t) for t in tables)
    return f"CREATE PUBLICATION {config.publication} FOR TABLE {listed}"


# (source, table) pairs already warned about a missing before-image.
_WARNED: set[tuple[str, str]] = set()


def problems(
    conn: psycopg.Connection[Any], config: PostgresWalConfig, catalog: TableCatalog, log: logging.Logger
) -> list[str]:
    """Everything that would stop the source, one line each; warnings (REPLICA IDENTITY) are logged."""
    found: list[str] = []
    row = conn.execute(
        "SELECT current_setting('wal_level'), r.rolname, r.rolreplication OR r.rolsuper, r.rolsuper,"
        " current_database(), has_database_privilege(current_database(), 'CREATE')"
        " FROM pg_roles r WHERE r.rolname = current_user"
    ).fetchone()
    assert row is not None
    wal_level, role, may_replicate, superuser, database, may_create = row
    if wal_level != "logical":
        found.append(
            f"source {config.name}: wal_level is {wal_level}, logical decoding needs logical; run "
            "ALTER SYSTEM SET wal_level = logical; and restart PostgreSQL"
        )
    if not may_replicate:
        found.append(
            f"source {config.name}: role {role} may not use replication; run ALTER ROLE {role} REPLICATION; "
            "(as a superuser)"
        )
    try:
        tables = catalog.resolve()
    except LiberatorError as exc:
        return [*found, str(exc)]
    for name in tables:
        quoted = _qualified(name)
        allowed = conn.execute("SELECT has_table_privilege(%s, 'SELECT')", (quoted,)).fetchone()
        if not (allowed and allowed[0]):
            found.append(
                f"source {config.name}: role {role} cannot read {name}; run GRANT SELECT ON {quoted} TO {role};"
            )
        try:
            catalog.from_catalog(name)
        except LiberatorError as exc:
            found.append(str(exc))
        _relid, _columns, _key, identity = catalog.catalog_columns(name)
        if identity == "n":
            found.append(
                f"table {name} has REPLICA IDENTITY NOTHING, so its updates and deletes cannot be captured; "
                f"run ALTER TABLE {quoted} REPLICA IDENTITY DEFAULT;"
            )
        elif identity == "i":
            found.append(
                f"table {name} uses REPLICA IDENTITY USING INDEX, so deletes may lack the primary key; run "
                f"ALTER TABLE {quoted} REPLICA IDENTITY DEFAULT; (or FULL)"
            )
        elif identity == "d" and config.envelope != Envelope.state and config.replica_identity != "ignore":
            line = (
                f"table {name} has REPLICA IDENTITY DEFAULT: updates and deletes carry no before-image and "
                f"unchanged TOASTed values are unknown; run ALTER TABLE {quoted} REPLICA IDENTITY FULL;"
            )
            if config.replica_identity == "require_full":
                found.append(line)
            elif (config.name, name) not in _WARNED:
                _WARNED.add((config.name, name))  # once per process: every retry runs these checks again
                log.warning("%s", line)
    found += _publication_problems(conn, config, tables, may_create, superuser)
    if config.snapshot != "initial_only":
        found += _slot_problems(conn, config, database)
    return found


def _publication_problems(
    conn: psycopg.Connection[Any], config: PostgresWalConfig, tables: list[str], may_create: bool, superuser: bool
) -> list[str]:
    if config.snapshot == "initial_only":
        return []
    exists = conn.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (config.publication,)).fetchone()
    owned = all(
        r[0]
        for r in conn.execute(
            "SELECT pg_has_role(c.relowner, 'USAGE') FROM pg_class c WHERE c.oid = ANY(%s::regclass[])",
            ([_qualified(t) for t in tables],),
        ).fetchall()
    )
    if not exists:
        if not config.create:
            return [
                f"source {config.name}: publication {config.publication} does not exist; run "
                f"{publication_sql(config, tables)}; (or set `create: true`)"
            ]
        if not (superuser or (may_create and owned)):
            return [
                f"source {config.name}: publication {config.publication} does not exist and this role may not create "
                f"it; run {publication_sql(config, tables)}; as the tables' owner"
            ]
        return []
    published = {
        f"{r[0]}.{r[1]}"
        for r in conn.execute(
            "SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = %s", (config.publication,)
        ).fetchall()
    }
    missing = [t for t in tables if t not in published]
    if missing and not (config.create and (superuser or owned)):
        listed = ", ".join(_qualified(t) for t in missing)
        return [
            f"source {config.name}: publication {config.publication} lacks {', '.join(missing)}; run "
            f"ALTER PUBLICATION {config.publication} ADD TABLE {listed};"
        ]
    return []


def _slot_problems(conn: psycopg.Connection[Any], config: PostgresWalConfig, database: str) -> list[str]:
    slot = slot_state(conn, config.slot)
    drop = f"SELECT pg_drop_replication_slot('{config.slot}');"
    if slot is None:
        if not config.create:
            return [
                f"source {config.name}: replication slot {config.slot} does not exist; run SELECT "
                f"pg_create_logical_replication_slot('{config.slot}', 'pgoutput'); (or set `create: true`)"
            ]
        return []
    if slot.slot_type != "logical" or slot.plugin != "pgoutput":
        return [
            f"source {config.name}: slot {config.slot} is a {slot.slot_type} slot with plugin {slot.plugin}, not "
            f"pgoutput; choose another `slot:` or run {drop}"
        ]
    if slot.database != database:
        return [f"source {config.name}: slot {config.slot} belongs to database {slot.database}; choose another `slot:`"]
    if slot.wal_status == "lost":
        return [
            f"source {config.name}: slot {config.slot} has lost WAL it needs (max_slot_wal_keep_size); run {drop} "
            f"and `liberator offsets reset CONFIG --source {config.name}` to snapshot again"
        ]
    return []


def ensure_publication(conn: psycopg.Connection[Any], config: PostgresWalConfig, tables: list[str]) -> None:
    """Create the publication, or add missing tables to it, when allowed (checked by `problems`)."""
    exists = conn.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (config.publication,)).fetchone()
    try:
        if not exists:
            conn.execute(publication_sql(config, tables))
            return
        published = published_tables(conn, config)
        missing = [t for t in tables if t not in published]
        if missing:
            conn.execute(add_tables_sql(config, missing))
    except psycopg.errors.InsufficientPrivilege:
        raise FatalSourceError(
            f"source {config.name}: may not create or alter publication {config.publication}; run "
            f"{publication_sql(config, tables)}; as the tables' owner"
        ) from None


def published_tables(conn: psycopg.Connection[Any], config: PostgresWalConfig) -> set[str]:
    """The tables the publication covers now (every table for FOR ALL TABLES)."""
    rows = conn.execute(
        "SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = %s", (config.publication,)
    ).fetchall()
    return {f"{r[0]}.{r[1]}" for r in rows}


def add_tables_sql(config: PostgresWalConfig, tables: list[str]) -> str:
    return f"ALTER PUBLICATION {config.publication} ADD TABLE {', '.join(_qualified(t) for t in tables)}"
