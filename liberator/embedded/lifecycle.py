"""What every test-bed server shares: start/stop with `with`, and for the ones spawned here, their process.

`Lifecycle` is the start/stop/context-manager contract of all servers, native or in a container.
`SpawnedProcess` is the process side of a server this test bed started itself on 127.0.0.1: its pid,
whether it runs, and a stop that signals it, waits for its port to close and removes its directory.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self

from liberator.embedded.ports import wait_for_port_closed
from liberator.embedded.process import TestbedError, descendants, stop_process, untrack


class Lifecycle:
    def start(self) -> Self:
        return self

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class SpawnedProcess(Lifecycle):
    """Mixed into a server class whose `start()` spawns `_proc` in `workdir` and listens on `host:port`."""

    what: ClassVar[str] = "server"  # for messages: "stopped <what>"
    stop_signal: ClassVar[int] = signal.SIGTERM  # the server's clean-shutdown signal
    stop_timeout: ClassVar[float] = 10.0  # seconds before SIGKILL

    host: str
    port: int
    workdir: Path | None = None
    log_path: Path | None = None
    _proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def freeze(self, frozen: bool = True) -> None:
        """SIGSTOP (or SIGCONT) the server and its child processes (PostgreSQL's backends): connections stay
        open and accepted at the TCP level, nothing answers, like a hung server or a network partition.
        Thaw it in a `finally`; `stop()` thaws it too."""
        if self._proc is None or not self.running:
            raise TestbedError(f"{self.what} is not running")
        sig = signal.SIGSTOP if frozen else signal.SIGCONT
        # The parent first when freezing, so it forks no new child meanwhile; last when thawing.
        pids = [self._proc.pid, *descendants(self._proc.pid)]
        for pid in pids if frozen else reversed(pids):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def stop(self) -> None:
        """The stop signal by pid, SIGKILL after `stop_timeout`, then remove the directory (data is gone)."""
        untrack(self)
        if self.running:
            self.freeze(False)  # a frozen process would ignore the stop signal until the SIGKILL
        was_running = self.running
        stop_process(self._proc, sig=self.stop_signal, timeout=self.stop_timeout)
        self._proc = None
        if was_running:
            wait_for_port_closed(self.host, self.port, what=f"stopped {self.what}", timeout=10)
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None
