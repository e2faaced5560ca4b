"""Free loopback ports and waiting for servers, with errors that show the server's own log."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from liberator.embedded.process import TestbedError, log_tail

LOOPBACK = "127.0.0.1"

T = TypeVar("T")

_handed_out: set[int] = set()
_handed_lock = threading.Lock()


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that is free on ``host`` now and was not handed out before by this process."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = int(s.getsockname()[1])
        with _handed_lock:
            if port not in _handed_out:
                _handed_out.add(port)
                return port
    raise TestbedError(f"could not find a free TCP port on {host}")


def port_is_open(host: str, port: int, timeout: float = 0.2) -> bool:
    """True if something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _startup_failure(
    what: str,
    detail: str,
    log_path: Path | None,
) -> TestbedError:
    return TestbedError(f"{what} {detail}; last lines of {log_path or 'its log'}:\n{log_tail(log_path)}")


def wait_until(
    probe: Callable[[], T | None],
    *,
    what: str,
    timeout: float = 30.0,
    interval: float = 0.05,
    process: subprocess.Popen[bytes] | None = None,
    log_path: Path | None = None,
) -> T:
    """Call ``probe`` until it returns something other than ``None`` (exceptions count as "not yet").

    Fails fast, with the tail of ``log_path``, if ``process`` exits meanwhile; fails after ``timeout``
    seconds with the last probe error and the log tail.
    """
    deadline = time.monotonic() + timeout
    last_error = ""
    while True:
        if process is not None and process.poll() is not None:
            raise _startup_failure(what, f"exited with code {process.returncode} while starting", log_path)
        try:
            result = probe()
        except Exception as e:  # the probe's failures are the normal "not ready yet" case
            last_error = f"{type(e).__name__}: {e}".splitlines()[0]
            result = None
        if result is not None:
            return result
        if time.monotonic() >= deadline:
            detail = f"was not ready after {timeout:g}s" + (f" (last error: {last_error})" if last_error else "")
            raise _startup_failure(what, detail, log_path)
        time.sleep(interval)


def wait_for_port(
    host: str,
    port: int,
    *,
    what: str,
    timeout: float = 30.0,
    process: subprocess.Popen[bytes] | None = None,
    log_path: Path | None = None,
) -> None:
    """Wait until ``host:port`` accepts connections (see :func:`wait_until` for the failure modes)."""
    wait_until(
        lambda: True if port_is_open(host, port) else None,
        what=f"{what} on {host}:{port}",
        timeout=timeout,
        process=process,
        log_path=log_path,
    )


def wait_for_port_closed(host: str, port: int, *, what: str, timeout: float = 15.0) -> None:
    """Wait until nothing accepts connections on ``host:port`` any more."""
    deadline = time.monotonic() + timeout
    while port_is_open(host, port):
        if time.monotonic() >= deadline:
            raise TestbedError(f"{what} still accepts connections on {host}:{port} after {timeout:g}s")
        time.sleep(0.05)
