"""A throwaway PostgreSQL cluster for tests, benchmarks and the demo.

``PostgresServer`` runs the Debian PostgreSQL binaries (15 preferred) as the ``postgres`` system user on
a fresh ``initdb`` in a temporary directory, listening on 127.0.0.1 and a free port, ready for logical
replication (``wal_level=logical``) and tuned for speed, not durability (``fsync=off``...).

Authentication: the superuser ``postgres`` is trusted (no password); every other role must give its
scram-sha-256 password, over TCP and the unix socket alike, for normal and replication connections, so
wrong-password tests are real. :class:`PostgresInstance` holds the client-side helpers that the
testcontainers variant (``liberator_testbed.docker``) shares.
"""

from __future__ import annotations

import os
import re
import signal
import time
import urllib.parse
from pathlib import Path
from typing import Any, Self

from liberator.embedded.lifecycle import Lifecycle, SpawnedProcess
from liberator.embedded.ports import LOOPBACK, free_port, wait_until
from liberator.embedded.process import (
    TestbedError,
    make_workdir,
    run_checked,
    spawn,
    system_user_exists,
    track,
)
from liberator_testbed import install

_PG_HBA = """\
# written by liberator_testbed: the superuser is trusted, every other role needs its password
local   all          postgres                 trust
host    all          postgres  127.0.0.1/32   trust
local   replication  postgres                 trust
host    replication  postgres  127.0.0.1/32   trust
local   all          all                      scram-sha-256
host    all          all       127.0.0.1/32   scram-sha-256
local   replication  all                      scram-sha-256
host    replication  all       127.0.0.1/32   scram-sha-256
"""

_SETTINGS: dict[str, str] = {
    "listen_addresses": LOOPBACK,
    "wal_level": "logical",
    "max_replication_slots": "20",
    "max_wal_senders": "20",
    "max_connections": "200",
    "password_encryption": "scram-sha-256",
    # Test speed only: a crash loses the cluster, which is thrown away anyway.
    "fsync": "off",
    "full_page_writes": "off",
    # Not "off": logical decoding only sends WAL that is flushed, so asynchronous commits reach a slot up
    # to ~200 ms (wal_writer_delay) late. With fsync=off a synchronous commit costs nothing measurable.
    "synchronous_commit": "on",
}


def _quote(s: str) -> str:
    return urllib.parse.quote(s, safe="")


class PostgresInstance(Lifecycle):
    """Client-side helpers for a PostgreSQL server at ``host:port`` (native or container)."""

    flavor = "postgresql"

    def __init__(self, host: str, port: int, admin_user: str = "postgres", admin_password: str | None = None):
        self.host = host
        self.port = port
        self.admin_user = admin_user
        self.admin_password = admin_password

    def _credentials(self, user: str | None, password: str | None) -> tuple[str, str | None]:
        user = user or self.admin_user
        if password is None and user == self.admin_user:
            password = self.admin_password
        return user, password

    def url(
        self,
        database: str = "postgres",
        user: str = "postgres",
        password: str | None = None,
        driver: str | None = "psycopg",
    ) -> str:
        """SQLAlchemy URL ``postgresql+psycopg://...``; ``driver=None`` gives a libpq ``postgresql://``."""
        user, password = self._credentials(user, password)
        auth = _quote(user) + (f":{_quote(password)}" if password is not None else "")
        scheme = "postgresql" if driver is None else f"postgresql+{driver}"
        return f"{scheme}://{auth}@{self.host}:{self.port}/{_quote(database)}"

    def dsn(self, database: str = "postgres", user: str = "postgres", password: str | None = None) -> str:
        """libpq connection URL (what ``psycopg.connect`` takes)."""
        return self.url(database, user, password, driver=None)

    def connect(
        self,
        database: str = "postgres",
        user: str = "postgres",
        password: str | None = None,
        **kwargs: Any,
    ) -> Any:
        """An autocommit ``psycopg.Connection`` (pass ``replication="database"`` for a walsender)."""
        import psycopg

        kwargs.setdefault("autocommit", True)
        kwargs.setdefault("connect_timeout", 10)
        return psycopg.connect(self.dsn(database, user, password), **kwargs)

    def execute(
        self,
        sql: str,
        params: Any = None,
        *,
        database: str = "postgres",
        user: str = "postgres",
        password: str | None = None,
    ) -> list[tuple[Any, ...]]:
        """Run one statement in autocommit mode; return its rows (empty if it returns none)."""
        with self.connect(database, user, password) as conn, conn.cursor() as cur:
            cur.execute(sql, params)
            return [tuple(r) for r in cur.fetchall()] if cur.description else []

    def create_database(self, name: str, owner: str | None = None) -> None:
        from psycopg import sql

        stmt = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if owner is not None:
            stmt = sql.SQL("{} OWNER {}").format(stmt, sql.Identifier(owner))
        with self.connect() as conn:
            conn.execute(stmt)

    def drop_database(self, name: str) -> None:
        """Drop a database even if sessions or logical replication slots still use it."""
        from psycopg import sql

        with self.connect() as conn:
            deadline = time.monotonic() + 10
            while True:
                conn.execute(
                    "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots"
                    " WHERE database = %s AND active_pid IS NOT NULL",
                    (name,),
                )
                try:
                    conn.execute(
                        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = %s",
                        (name,),
                    )
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)  # the walsender is still shutting down
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def create_user(self, name: str, password: str, superuser: bool = False, replication: bool = False) -> None:
        """A login role that must authenticate with ``password`` (scram-sha-256)."""
        from psycopg import sql

        attrs = [
            "LOGIN",
            "SUPERUSER" if superuser else "NOSUPERUSER",
            "REPLICATION" if replication else "NOREPLICATION",
        ]
        stmt = sql.SQL("CREATE ROLE {} " + " ".join(attrs) + " PASSWORD {}").format(
            sql.Identifier(name), sql.Literal(password)
        )
        with self.connect() as conn:
            conn.execute(stmt)


def _version_key(path: str) -> tuple[int, str]:
    m = re.search(r"/postgresql/(\d+)/", path)
    return (int(m.group(1)) if m else 0, path)


def find_bindir(preferred_major: int = 15) -> Path:
    """The PostgreSQL server binary directory: $LIBERATOR_PG_BINDIR, else Debian's 15, else the newest."""
    env = os.environ.get("LIBERATOR_PG_BINDIR")
    if env:
        return Path(env)
    preferred = Path(f"/usr/lib/postgresql/{preferred_major}/bin")
    if (preferred / "postgres").exists():
        return preferred
    import glob

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=_version_key)
    if found:
        return Path(found[-1]).parent
    raise TestbedError("PostgreSQL server binaries not found under /usr/lib/postgresql (apt-get install postgresql)")


class PostgresServer(SpawnedProcess, PostgresInstance):
    """A throwaway PostgreSQL cluster; ``with PostgresServer() as pg: pg.url()``.

    Attributes once started: ``host``, ``port``, ``pid``, ``workdir``, ``data_dir``, ``socket_dir``,
    ``log_path``, ``bindir``. ``settings`` adds or overrides ``-c`` server settings.
    """

    what = "PostgreSQL"
    stop_signal = signal.SIGINT  # fast shutdown
    stop_timeout = 15.0

    def __init__(self, *, port: int | None = None, settings: dict[str, str] | None = None, timeout: float = 60.0):
        super().__init__(LOOPBACK, port or 0)
        self._requested_port = port
        self.settings = {**_SETTINGS, **(settings or {})}
        self.timeout = timeout
        self.bindir: Path | None = None

    @property
    def data_dir(self) -> Path:
        assert self.workdir is not None, "server not started"
        return self.workdir / "data"

    @property
    def socket_dir(self) -> Path:
        assert self.workdir is not None, "server not started"
        return self.workdir

    def start(self) -> Self:
        if self.running:
            return self
        install.ensure_apt_packages(install.POSTGRES_REQUIREMENTS, what="PostgreSQL test server")
        self.bindir = find_bindir()
        run_as = "postgres" if os.geteuid() == 0 else None
        if run_as and not system_user_exists(run_as):
            raise TestbedError("system user 'postgres' is missing (it comes with the Debian postgresql package)")
        self.port = self._requested_port or free_port()
        self.workdir = make_workdir("pg", owner_user=run_as)
        self.log_path = self.workdir / "postgres.log"
        try:
            run_checked(
                [
                    str(self.bindir / "initdb"),
                    "-D", str(self.data_dir),
                    "-A", "trust",
                    "-U", "postgres",
                    "-E", "UTF8",
                    "--locale=C",
                    "--no-sync",
                    "--no-instructions",
                ],
                "initdb",
                run_as=run_as,
                cwd=self.workdir,
            )  # fmt: skip
            (self.data_dir / "pg_hba.conf").write_text(_PG_HBA)
            argv = [str(self.bindir / "postgres"), "-D", str(self.data_dir), "-p", str(self.port)]
            argv += ["-k", str(self.socket_dir)]
            for k, v in self.settings.items():
                argv += ["-c", f"{k}={v}"]
            self._proc = spawn(argv, self.log_path, run_as=run_as, cwd=self.workdir)
            track(self, self.stop)
            wait_until(
                lambda: self.execute("SELECT 1") or None,
                what=f"PostgreSQL on {self.host}:{self.port}",
                timeout=self.timeout,
                process=self._proc,
                log_path=self.log_path,
            )
        except BaseException:
            self.stop()
            raise
        return self
