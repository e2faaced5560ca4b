"""This daemon's stable identity on its host, for static consumer group membership (`group.instance.id`).

The identity must stay the same when the daemon restarts (so the broker hands a restarted sink its
partitions back at once instead of waiting out the dead member's session) and differ between daemons of one
config running at the same time (two members with one `group.instance.id` fence each other). The host name
alone gives the first but not the second when two daemons share a host, so each daemon also holds the
lowest free *slot*: an exclusive lock on a small file per config name and slot number. A daemon that dies,
even by kill -9, releases its lock with its process, so its restart takes the same slot again.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import socket
import tempfile
from pathlib import Path

log = logging.getLogger("liberator")

MAX_SLOTS = 64
# Kafka accepts these characters in a group.instance.id (as in topic names), at most 249 of them.
_NOT_ALLOWED = re.compile(r"[^A-Za-z0-9._-]")
MAX_ID = 249


def kafka_id(text: str) -> str:
    """`text` as a valid group.instance.id: other characters become '_', cut to Kafka's length limit."""
    return _NOT_ALLOWED.sub("_", text)[:MAX_ID]


def lock_dir() -> Path:
    """Where slot locks live: the user's runtime directory when there is one, else the temp directory."""
    return Path(os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir())


class InstanceSlot:
    """The lowest slot number of `app` on this host that no running daemon holds; held until `close()`."""

    def __init__(self, app: str, directory: Path | None = None) -> None:
        self.app = app
        self.host = socket.gethostname() or "localhost"
        self._directory = directory or lock_dir()
        self._file: int | None = None
        self.number = self._acquire()

    def _acquire(self) -> int:
        for number in range(MAX_SLOTS):
            path = self._directory / f"liberator-{kafka_id(self.app)}.slot{number}.lock"
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError as exc:
                # A read-only file system (a container's): one daemon per host is the norm there (a pod
                # has its own host name), so slot 0 it is; two such daemons on one host need group_instance_id.
                log.info("cannot lock %s (%s); using instance slot 0", path, exc.strerror)
                return 0
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue
            self._file = fd
            return number
        # Not reachable in practice; a daemon without a free slot still runs, with a host-wide fallback id.
        return os.getpid()

    @property
    def id(self) -> str:
        """host-slot: stable across restarts of this daemon, unique among the daemons of `app` running here."""
        return f"{self.host}-{self.number}"

    def close(self) -> None:
        if self._file is not None:
            os.close(self._file)  # releases the lock
            self._file = None
