"""Connections and start-up checks: server settings, privileges, the stored position still on the server.

Every problem is one line naming the fix. `check()` lists them all; `read()` refuses to start on any.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pymysql  # type: ignore[import-untyped]

from liberator import sqldb
from liberator.connectors.mysql_binlog.config import MySQLBinlogConfig
from liberator.connectors.mysql_binlog.position import BinlogPosition, Coord, MariaDBGtidPos, MySQLGtidSet
from liberator.dbconnect import mysql_connect
from liberator.errors import FatalSourceError, LiberatorError, TransientSourceError


def connection_settings(config: MySQLBinlogConfig) -> dict[str, Any]:
    url = sqldb.parse_url(config.url)
    if not url.drivername.startswith(("mysql", "mariadb")):
        raise FatalSourceError(
            f"source {config.name}: {sqldb.redact(url)} is not a MySQL/MariaDB URL; write mysql://user:${{PW}}@host:3306/"
        )
    return {
        "host": url.host or "127.0.0.1",
        "port": url.port or 3306,
        "user": url.username or "",
        "password": url.password or "",
    }


def connect(config: MySQLBinlogConfig, **kwargs: Any) -> Any:
    settings = connection_settings(config)
    try:
        conn = mysql_connect(
            config,
            **settings,
            charset="utf8mb4",
            autocommit=True,
            init_command="SET time_zone = '+00:00'",
            **kwargs,
        )
    except pymysql.MySQLError as exc:
        raise classify(exc, config) from None
    return conn


def classify(exc: Exception, config: MySQLBinlogConfig) -> LiberatorError:
    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else 0
    if code == 4052 or (code == 1236 and "same server_uuid/server_id" in str(exc.args[1:])):
        # MariaDB 4052, MySQL 1236: another replica connected with our server_id and the server dropped us.
        # Reconnecting would drop that one in turn: an operator must choose.
        return FatalSourceError(
            f"source {config.name}: the server dropped this binlog stream because another replica connected with "
            f"the same server_id {config.server_id}; two readers with one server_id kick each other off: stop "
            "the other one (SHOW SLAVE HOSTS lists replicas) or give this source its own `server_id`"
        )
    if code == 1236:  # ER_MASTER_FATAL_ERROR_READING_BINLOG: purged or unknown position
        return FatalSourceError(
            f"source {config.name}: the server cannot send the binlog from the stored position ({exc.args[1]}); "
            "the changes since then are gone: re-snapshot with "
            f"`liberator offsets reset CONFIG --source {config.name}` and `liberator run CONFIG --from-scratch`"
        )
    return sqldb.classify(exc, config.url, f"source {config.name}", config)


@dataclass(frozen=True)
class ServerInfo:
    mariadb: bool
    version: str
    server_id: int
    gtid_mode: bool  # MySQL: gtid_mode=ON; MariaDB: always
    settings: dict[str, str]
    binlogs: tuple[str, ...]
    grants: tuple[str, ...]

    @property
    def label(self) -> str:
        return "MariaDB" if self.mariadb else "MySQL"


def server_info(conn: Any) -> ServerInfo:
    with conn.cursor() as cur:
        cur.execute("SELECT VERSION(), @@server_id")
        version, server_id = cur.fetchone()
        mariadb = "mariadb" in str(version).lower()
        settings: dict[str, str] = {}
        for name in ("log_bin", "binlog_format", "binlog_row_image", "binlog_row_metadata", "gtid_mode"):
            cur.execute("SHOW GLOBAL VARIABLES LIKE %s", (name,))
            row = cur.fetchone()
            if row is not None:
                settings[name] = str(row[1]).upper()
        binlogs: tuple[str, ...] = ()
        try:
            cur.execute("SHOW BINARY LOGS")
            binlogs = tuple(str(r[0]) for r in cur.fetchall())
        except pymysql.MySQLError:
            pass  # no binlog, or no privilege: reported by the checks
        cur.execute("SHOW GRANTS")
        grants = tuple(str(r[0]) for r in cur.fetchall())
    gtid_mode = mariadb or settings.get("gtid_mode") == "ON"
    return ServerInfo(mariadb, str(version), int(server_id), gtid_mode, settings, binlogs, grants)


_GLOBAL_GRANT = re.compile(r"^GRANT (.+?) ON \*\.\* TO ", re.IGNORECASE)


def global_privileges(grants: tuple[str, ...]) -> set[str]:
    privileges: set[str] = set()
    for grant in grants:
        match = _GLOBAL_GRANT.match(grant)
        if match:
            privileges |= {p.strip().upper() for p in match.group(1).split(",")}
    return privileges


def setting_problems(config: MySQLBinlogConfig, info: ServerInfo) -> list[str]:
    name = f"source {config.name}"
    problems: list[str] = []
    if info.settings.get("log_bin") != "ON":
        problems.append(f"{name}: the server writes no binlog; start it with log_bin (--log-bin) and a server_id")
    wanted = {"binlog_format": "ROW", "binlog_row_image": "FULL", "binlog_row_metadata": "FULL"}
    for variable, value in wanted.items():
        have = info.settings.get(variable)
        if have is None:
            problems.append(
                f"{name}: the server has no {variable} (too old); use MySQL >= 8.0.14 or MariaDB >= 10.5 "
                f"with {variable}={value}"
            )
        elif have != value:
            problems.append(
                f"{name}: {variable} is {have}, the binlog source needs {value}; set {variable}={value} in the "
                f"server config (or SET GLOBAL {variable}={value}; sessions opened before keep the old value)"
            )
    if info.server_id == config.server_id:
        problems.append(
            f"{name}: server_id {config.server_id} is the server's own id; give the source another server_id"
        )
    privileges = global_privileges(info.grants)
    if "ALL PRIVILEGES" not in privileges:
        needed = ["REPLICATION SLAVE", "BINLOG MONITOR" if info.mariadb else "REPLICATION CLIENT"]
        if info.mariadb:
            privileges |= {"BINLOG MONITOR"} if "REPLICATION CLIENT" in privileges else set()
        elif config.snapshot != "never" and config.snapshot_mode == "consistent":
            # FLUSH TABLES WITH READ LOCK, for the moment the snapshot starts; the incremental mode's chunks
            # take no lock (a blocking snapshot on demand without it is refused with the reason: blocking.py)
            needed.append("RELOAD")
        missing = [p for p in needed if p not in privileges]
        if missing:
            problems.append(
                f"{name}: the user lacks {', '.join(missing)}; run GRANT {', '.join(missing)} ON *.* TO <user>"
            )
    return problems


def select_problems(conn: Any, config: MySQLBinlogConfig, tables: list[tuple[str, str]]) -> list[str]:
    problems: list[str] = []
    with conn.cursor() as cur:
        for db, table in tables:
            try:
                cur.execute(f"SELECT 1 FROM {quote(db)}.{quote(table)} LIMIT 0")
                cur.fetchall()
            except pymysql.MySQLError as exc:
                problems.append(
                    f"source {config.name}: cannot read {db}.{table} ({exc.args[-1]}); "
                    f"run GRANT SELECT ON {db}.* TO <user>"
                )
    return problems


def position_problems(config: MySQLBinlogConfig, info: ServerInfo, position: BinlogPosition, conn: Any) -> list[str]:
    """The stored position must still be on the server: purged binlogs mean lost changes."""
    reset = (
        f"re-snapshot with `liberator offsets reset CONFIG --source {config.name}` and `liberator run CONFIG "
        "--from-scratch`, and keep binlogs longer"
    )
    name = f"source {config.name}"
    if info.binlogs and position.coord.file not in info.binlogs:
        oldest = Coord(info.binlogs[0], 4)
        if position.coord < oldest:
            return [
                f"{name}: the stored position {position.coord} is in a binlog the server purged (oldest: "
                f"{info.binlogs[0]}); the changes since then are lost to the binlog: {reset}"
            ]
        return [f"{name}: the stored binlog {position.coord.file} is unknown to the server; {reset}"]
    if isinstance(position.gtid, MySQLGtidSet):
        with conn.cursor() as cur:
            cur.execute("SELECT @@global.gtid_purged")
            purged = MySQLGtidSet.parse(str(cur.fetchone()[0] or ""))
        if not position.gtid.contains(purged):
            return [f"{name}: the server purged transactions after the stored GTID set {position.gtid}; {reset}"]
    return []


def current_point(conn: Any, info: ServerInfo) -> tuple[Coord, MySQLGtidSet | MariaDBGtidPos | None]:
    """Where the binlog ends now (for `snapshot: never` with no stored position)."""
    with conn.cursor() as cur:
        row = _binlog_status(cur)
        coord = Coord(str(row[0]), int(row[1]))
        if info.mariadb:
            cur.execute("SELECT BINLOG_GTID_POS(%s, %s)", (coord.file, coord.pos))
            return coord, MariaDBGtidPos.parse(str(cur.fetchone()[0] or ""))
        return coord, MySQLGtidSet.parse(str(row[4] or "")) if info.gtid_mode else None


def _binlog_status(cur: Any) -> Any:
    try:
        cur.execute("SHOW BINARY LOG STATUS")  # MySQL 8.2+
    except pymysql.MySQLError:
        cur.execute("SHOW MASTER STATUS")
    row = cur.fetchone()
    if row is None:
        raise FatalSourceError("the server writes no binlog; start it with log_bin (--log-bin)")
    return row


def binlog_status(cur: Any) -> Any:
    return _binlog_status(cur)


def quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def transient(exc: Exception, config: MySQLBinlogConfig) -> LiberatorError:
    error = classify(exc, config)
    return error if isinstance(error, FatalSourceError) else TransientSourceError(str(error))
