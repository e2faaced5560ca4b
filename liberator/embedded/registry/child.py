"""The project's embedded schema registry (``liberator.embedded.registry.server``) in a child process.

No Confluent Schema Registry, Karapace or Apicurio build is installable on these machines, so tests,
benchmarks and the demo use liberator's own Confluent-compatible registry, run as
``python -c "from liberator.embedded.registry.server import serve; serve(host, port, data_path)"`` so that it
does not depend on the CLI. It is the same in the native and the testcontainers test bed.
"""

from __future__ import annotations

import os
import sys
import urllib.request
from pathlib import Path
from typing import Self

import liberator
from liberator.embedded.lifecycle import SpawnedProcess
from liberator.embedded.ports import LOOPBACK, free_port, wait_until
from liberator.embedded.process import make_workdir, spawn, track


def _answers(url: str) -> bool | None:
    with urllib.request.urlopen(f"{url}/subjects", timeout=2) as resp:
        return True if resp.status == 200 else None


class EmbeddedRegistry(SpawnedProcess):
    """A schema registry on 127.0.0.1 and a free port; ``with EmbeddedRegistry() as r: r.url``.

    ``data_path`` is where the registry keeps its schemas; by default a path inside a temporary
    directory that :meth:`stop` removes. Give your own to keep schemas across a restart (it is then
    left in place).
    """

    what = "schema registry"

    def __init__(self, *, port: int | None = None, data_path: Path | str | None = None, timeout: float = 30.0):
        self.host = LOOPBACK
        self.port = port or 0
        self._requested_port = port
        self._given_data_path = Path(data_path) if data_path is not None else None
        self.data_path: Path | None = self._given_data_path
        self.timeout = timeout

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> Self:
        if self.running:
            return self
        self.port = self._requested_port or free_port()
        self.workdir = make_workdir("registry")
        self.log_path = self.workdir / "registry.log"
        self.data_path = self._given_data_path or (self.workdir / "registry.db")
        args = f"{self.host!r}, {self.port}, {str(self.data_path)!r}"
        code = f"from liberator.embedded.registry.server import serve; serve({args})"
        # Make this checkout importable in the child even when liberator is not pip-installed.
        src_root = str(Path(liberator.__file__).resolve().parent.parent)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (src_root, env.get("PYTHONPATH", "")) if p)
        env["PYTHONUNBUFFERED"] = "1"
        try:
            self._proc = spawn([sys.executable, "-c", code], self.log_path, cwd=self.workdir, env=env)
            track(self, self.stop)
            wait_until(
                lambda: _answers(self.url),
                what=f"schema registry at {self.url}",
                timeout=self.timeout,
                process=self._proc,
                log_path=self.log_path,
            )
        except BaseException:
            self.stop()
            raise
        return self
