"""A throwaway MariaDB server (standing in for MySQL, which Debian 12 does not package).

``MariaDBServer`` runs Debian's ``mariadbd`` as the ``mysql`` system user on a fresh
``mariadb-install-db`` data directory in a temporary directory, listening on 127.0.0.1 and a free
port, with the binlog settings a row-based CDC reader needs (ROW format, FULL row image and row
metadata, strict GTIDs).

Authentication: ``root`` has no password (from localhost/127.0.0.1 only); users made with
:meth:`MySQLInstance.create_user` must give their password, so wrong-password tests are real.
A CDC user needs ``grants=("REPLICATION SLAVE", "REPLICATION CLIENT", "SELECT")``
(``REPLICATION CLIENT`` is MariaDB's ``BINLOG MONITOR`` and MySQL's own privilege).
:class:`MySQLInstance` holds the client-side helpers that the testcontainers MySQL 8 variant shares.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import urllib.parse
from collections.abc import Sequence
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


def _pymysql() -> Any:
    return importlib.import_module("pymysql")  # untyped library: keep it Any


def _quote(s: str) -> str:
    return urllib.parse.quote(s, safe="")


def quote_ident(name: str) -> str:
    """A MySQL identifier in backticks."""
    return "`" + name.replace("`", "``") + "`"


class MySQLInstance(Lifecycle):
    """Client-side helpers for a MySQL-protocol server at ``host:port`` (native MariaDB or container)."""

    flavor = "mariadb"  # or "mysql"; e.g. mysql-replication's is_mariadb

    def __init__(self, host: str, port: int, admin_user: str = "root", admin_password: str | None = None):
        self.host = host
        self.port = port
        self.admin_user = admin_user
        self.admin_password = admin_password

    @property
    def is_mariadb(self) -> bool:
        return self.flavor == "mariadb"

    def _credentials(self, user: str | None, password: str | None) -> tuple[str, str | None]:
        user = user or self.admin_user
        if password is None and user == self.admin_user:
            password = self.admin_password
        return user, password

    def url(
        self,
        database: str | None = None,
        user: str = "root",
        password: str | None = None,
        driver: str | None = "pymysql",
    ) -> str:
        """SQLAlchemy URL ``mysql+pymysql://user[:pw]@127.0.0.1:PORT[/database]`` (``driver=None``: ``mysql://``)."""
        user, password = self._credentials(user, password)
        auth = _quote(user) + (f":{_quote(password)}" if password is not None else "")
        scheme = "mysql" if driver is None else f"mysql+{driver}"
        path = f"/{_quote(database)}" if database else ""
        return f"{scheme}://{auth}@{self.host}:{self.port}{path}"

    def connection_settings(self, user: str = "root", password: str | None = None) -> dict[str, Any]:
        """Keyword arguments for pymysql / mysql-replication's ``connection_settings``."""
        user, password = self._credentials(user, password)
        return {"host": self.host, "port": self.port, "user": user, "password": password or ""}

    def connect(
        self,
        database: str | None = None,
        user: str = "root",
        password: str | None = None,
        **kwargs: Any,
    ) -> Any:
        """An autocommit ``pymysql`` connection."""
        kwargs.setdefault("autocommit", True)
        kwargs.setdefault("connect_timeout", 10)
        kwargs.setdefault("charset", "utf8mb4")
        return _pymysql().connect(database=database, **self.connection_settings(user, password), **kwargs)

    def execute(
        self,
        sql: str,
        params: Any = None,
        *,
        database: str | None = None,
        user: str = "root",
        password: str | None = None,
    ) -> list[tuple[Any, ...]]:
        """Run one statement with autocommit; return its rows (empty if it returns none)."""
        conn = self.connect(database, user, password)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return [tuple(r) for r in cur.fetchall()] if cur.description else []
        finally:
            conn.close()

    def create_database(self, name: str) -> None:
        self.execute(f"CREATE DATABASE {quote_ident(name)} CHARACTER SET utf8mb4")

    def drop_database(self, name: str) -> None:
        self.execute(f"DROP DATABASE IF EXISTS {quote_ident(name)}")

    def create_user(
        self,
        name: str,
        password: str,
        grants: Sequence[str] = ("ALL PRIVILEGES",),
        on: str = "*.*",
    ) -> None:
        """``name@'%'`` identified by ``password`` with ``grants`` on ``on`` (e.g. ``"db.*"``)."""
        conn = self.connect()
        try:
            account = f"{conn.escape(name)}@'%'"
            with conn.cursor() as cur:
                cur.execute(f"CREATE USER {account} IDENTIFIED BY {conn.escape(password)}")
                if grants:
                    cur.execute(f"GRANT {', '.join(grants)} ON {on} TO {account}")
        finally:
            conn.close()


class MariaDBServer(SpawnedProcess, MySQLInstance):
    """A throwaway MariaDB server; ``with MariaDBServer() as db: db.url("shop")``.

    Attributes once started: ``host``, ``port``, ``pid``, ``workdir``, ``data_dir``, ``socket_path``,
    ``log_path``. ``extra_args`` are appended to the ``mariadbd`` command line.
    """

    flavor = "mariadb"
    what = "MariaDB"
    stop_timeout = 30.0

    def __init__(self, *, port: int | None = None, extra_args: Sequence[str] = (), timeout: float = 60.0):
        super().__init__(LOOPBACK, port or 0)
        self._requested_port = port
        self.extra_args = list(extra_args)
        self.timeout = timeout

    @property
    def data_dir(self) -> Path:
        assert self.workdir is not None, "server not started"
        return self.workdir / "data"

    @property
    def socket_path(self) -> Path:
        assert self.workdir is not None, "server not started"
        return self.workdir / "mysqld.sock"

    def _argv(self, as_root: bool) -> list[str]:
        assert self.workdir is not None
        mariadbd = install.find_binary("mariadbd")
        assert mariadbd is not None
        user = ["--user=mysql"] if as_root else []
        return [
            mariadbd,
            "--no-defaults",  # must come first
            *user,
            f"--datadir={self.data_dir}",
            f"--socket={self.socket_path}",
            f"--pid-file={self.workdir / 'mysqld.pid'}",
            f"--tmpdir={self.workdir}",
            f"--port={self.port}",
            f"--bind-address={LOOPBACK}",
            "--skip-name-resolve",
            "--server-id=1",
            f"--log-bin={self.data_dir / 'binlog'}",
            "--binlog-format=ROW",
            "--binlog-row-image=FULL",
            "--binlog-row-metadata=FULL",
            "--gtid-domain-id=0",
            "--gtid-strict-mode=ON",
            "--log-slave-updates",
            "--character-set-server=utf8mb4",
            "--collation-server=utf8mb4_general_ci",
            "--max-connections=300",
            # Test speed only: a crash loses the server, which is thrown away anyway.
            "--innodb-flush-log-at-trx-commit=0",
            "--sync-binlog=0",
            *self.extra_args,
        ]

    def _ping(self) -> bool | None:
        admin = install.find_binary("mariadb-admin")
        assert admin is not None
        done = subprocess.run(
            [
                admin,
                "--no-defaults",
                f"--socket={self.socket_path}",
                "--user=root",
                "--connect-timeout=2",
                "ping",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )
        return True if done.returncode == 0 else None

    def start(self) -> Self:
        if self.running:
            return self
        install.ensure_apt_packages(install.MARIADB_REQUIREMENTS, what="MariaDB test server")
        as_root = os.geteuid() == 0
        if as_root and not system_user_exists("mysql"):
            raise TestbedError("system user 'mysql' is missing (it comes with the Debian mariadb-server package)")
        self.port = self._requested_port or free_port()
        self.workdir = make_workdir("mariadb", owner_user="mysql" if as_root else None)
        self.log_path = self.workdir / "mariadbd.log"
        install_db = install.find_binary("mariadb-install-db")
        assert install_db is not None
        try:
            run_checked(
                [
                    install_db,
                    "--no-defaults",
                    *(["--user=mysql"] if as_root else []),
                    f"--datadir={self.data_dir}",
                    "--auth-root-authentication-method=normal",
                    "--skip-test-db",
                ],
                "mariadb-install-db",
                cwd=self.workdir,
            )
            self._proc = spawn(
                self._argv(as_root), self.log_path, run_as="mysql" if as_root else None, cwd=self.workdir
            )
            track(self, self.stop)
            wait_until(
                self._ping,
                what=f"MariaDB on {self.host}:{self.port}",
                timeout=self.timeout,
                process=self._proc,
                log_path=self.log_path,
            )
            # root@127.0.0.1 normally exists already; make sure TCP root logins work either way.
            conn = self.connect(unix_socket=str(self.socket_path))
            try:
                with conn.cursor() as cur:
                    cur.execute("CREATE USER IF NOT EXISTS 'root'@'127.0.0.1'")
                    cur.execute("GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION")
            finally:
                conn.close()
        except BaseException:
            self.stop()
            raise
        return self
