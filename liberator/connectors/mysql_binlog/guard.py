"""One binlog reader per server_id: a second daemon must not kick the running one off the server.

MySQL and MariaDB drop a replica when another connects with the same server_id (MariaDB error 4052 for the
one dropped). So before it reads anything the source makes sure nobody else uses its server_id:
- a named lock, `liberator server_id N`, held on the source's connection for as long as it reads. It needs
  no privilege, and the holder's connection (user, client address) is found in the process list. A killed
  daemon's lock goes with its connection; one left by this process's own earlier, broken session is taken
  back (KILL of our own connection).
- where the user may run SHOW SLAVE HOSTS (MariaDB: REPLICATION MASTER ADMIN; MySQL: REPLICATION SLAVE), a
  registered replica with the same server_id that is not this daemon (other tools, real replicas). The
  stream registers with `liberator pid PID on HOST` as its host, so such a listing names the daemon.
"""

from __future__ import annotations

import os
import re
import socket
from typing import Any

import pymysql  # type: ignore[import-untyped]

from liberator.connectors.mysql_binlog.config import MySQLBinlogConfig
from liberator.errors import FatalSourceError, TransientSourceError

_NO_PRIVILEGE = (1227, 1142, 1045)
_IDENTITY = re.compile(r"^liberator pid (\d+) on ")


def reader_identity(pid: int | None = None) -> str:
    """How this process registers as a replica (SHOW SLAVE HOSTS' Host column)."""
    return f"liberator pid {os.getpid() if pid is None else pid} on {socket.gethostname()}"[:60]


class ServerIdGuard:
    def __init__(self, config: MySQLBinlogConfig) -> None:
        self.config = config
        self.lock_name = f"liberator server_id {config.server_id}"
        self._session: int | None = None  # the connection id that held our lock last

    def acquire(self, conn: Any, leased: bool = False) -> None:
        """Hold the server_id's lock on `conn`, or raise naming who holds it (or uses the server_id).

        `leased`: this daemon holds the source's HA lease, so a holder is a daemon that lost it (cut off, or
        dying) whose session the server has not ended yet: that is waited for (transient), not an error."""
        with conn.cursor() as cur:
            cur.execute("SELECT GET_LOCK(%s, 0), IS_USED_LOCK(%s), CONNECTION_ID()", (self.lock_name, self.lock_name))
            got, holder, mine = cur.fetchone()
            if not got and holder is not None and holder == self._session:
                cur.execute(f"KILL {int(holder)}")  # this process's own earlier session, broken but not yet gone
                cur.execute("SELECT GET_LOCK(%s, 10), IS_USED_LOCK(%s)", (self.lock_name, self.lock_name))
                got, holder = cur.fetchone()
            if not got and leased:
                raise TransientSourceError(
                    f"source {self.config.name}: server_id {self.config.server_id} is still held by "
                    f"{self._describe(cur, holder)}, although this daemon holds the source's lease: that daemon "
                    "lost the lease and stops; waiting for the server to end its session"
                )
            if not got:
                raise self._in_use(f"another daemon holds it ({self._describe(cur, holder)})")
            self._session = int(mine)
            replica = self._registered_replica(cur)
        if replica is not None:
            raise self._in_use(f"replica {replica!r} is connected with it (SHOW SLAVE HOSTS)")

    def problem(self, conn: Any) -> str | None:
        """For `check`: the server_id in use by someone else, without taking it."""
        with conn.cursor() as cur:
            cur.execute("SELECT IS_USED_LOCK(%s)", (self.lock_name,))
            holder = cur.fetchone()[0]
            if holder is not None:
                return str(self._in_use(f"another daemon holds it ({self._describe(cur, holder)})"))
            replica = self._registered_replica(cur)
        if replica is not None:
            return str(self._in_use(f"replica {replica!r} is connected with it (SHOW SLAVE HOSTS)"))
        return None

    def _in_use(self, who: str) -> FatalSourceError:
        return FatalSourceError(
            f"source {self.config.name}: server_id {self.config.server_id} is in use on this server: {who}; two "
            "readers with one server_id kick each other off: stop the other one, or give this source its own "
            "`server_id`"
        )

    def _describe(self, cur: Any, holder: Any) -> str:
        if holder is None:
            return "a session that just ended; start again"
        cur.execute("SELECT USER, HOST FROM information_schema.PROCESSLIST WHERE ID = %s", (holder,))
        row = cur.fetchone()
        found = f"user {row[0]} from {row[1]}, " if row is not None else ""
        return f"{found}connection {holder}; if that daemon is gone, KILL {holder}; ends its session"

    def _registered_replica(self, cur: Any) -> str | None:
        """The Host of a registered replica using our server_id that is not this daemon, if the user may look."""
        rows: list[Any] = []
        for statement in ("SHOW REPLICAS", "SHOW SLAVE HOSTS"):
            try:
                cur.execute(statement)
                rows = list(cur.fetchall())
                break
            except pymysql.MySQLError as exc:
                if exc.args and exc.args[0] in _NO_PRIVILEGE:
                    return None  # the named lock alone guards against another daemon
                continue  # SHOW REPLICAS is MySQL >= 8.0.22 only
        for row in rows:
            server_id, host = int(row[0]), str(row[1] or "")
            if server_id == self.config.server_id and not _this_or_dead(host):
                return host
        return None


def _this_or_dead(host: str) -> bool:
    """Whether a registered replica's Host is this process, or a liberator process of this host that is gone."""
    match = _IDENTITY.match(host)
    if match is None or host != reader_identity(int(match.group(1))):
        return False  # not liberator, or another host
    pid = int(match.group(1))
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True  # a killed daemon whose stream the server has not dropped yet
    except PermissionError:
        return False
    return False
