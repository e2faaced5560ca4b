"""Child-process plumbing shared by the test-bed servers.

Every server the test bed starts:

* lives in its own temporary directory (:func:`make_workdir`), which records the owning pid so that a
  later session sweeps directories left behind by a session that was killed;
* writes stdout/stderr to a log file in that directory, whose tail goes into every startup error;
* is stopped by pid (:func:`stop_process`: a polite signal, then SIGKILL after a timeout);
* is registered with :func:`track` so an ``atexit`` hook stops it if the test session ends without
  stopping it, and, when started from the main thread and ``setpriv`` exists, it also gets a
  parent-death signal so that even a SIGKILLed test session leaves no server running. (The kernel ties
  that signal to the *thread* that forked the child, which is why it is only used from the main thread.)
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

from liberator.errors import LiberatorError

WORKDIR_PREFIX = "liberator-tb-"
_OWNER_FILE = "owner.pid"


class TestbedError(LiberatorError):
    """A test-bed server could not be installed, started or reached; the message says why."""

    __test__ = False  # not a pytest test class despite the name


def log_tail(path: Path | None, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file, or a note that there is none."""
    if path is None:
        return "(no log)"
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    tail = text.splitlines()[-lines:]
    return "\n".join(tail) if tail else f"(log {path} is empty)"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by a parent that is not us) counts as gone.
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False


def _sweep_stale_workdirs() -> None:
    """Remove test-bed directories whose owning process is gone (a session that was SIGKILLed)."""
    root = Path(tempfile.gettempdir())
    for d in root.glob(WORKDIR_PREFIX + "*"):
        try:
            owner = int((d / _OWNER_FILE).read_text().strip())
        except (OSError, ValueError):
            continue
        if owner != os.getpid() and not _pid_alive(owner):
            shutil.rmtree(d, ignore_errors=True)


def make_workdir(kind: str, owner_user: str | None = None) -> Path:
    """A fresh temporary directory for one server, optionally chowned to a system user."""
    _sweep_stale_workdirs()
    d = Path(tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{kind}-"))
    (d / _OWNER_FILE).write_text(f"{os.getpid()}\n")
    d.chmod(0o755)
    if owner_user is not None and os.geteuid() == 0:
        pw = pwd.getpwnam(owner_user)
        os.chown(d, pw.pw_uid, pw.pw_gid)
    return d


def system_user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def spawn(
    argv: Sequence[str],
    log_path: Path,
    *,
    run_as: str | None = None,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` with stdout/stderr appended to ``log_path``; the returned pid is the server's own.

    ``run_as`` switches to that system user when we are root (``setpriv`` execs in place, so the pid
    does not change). A parent-death SIGKILL is requested when possible (see the module docstring).
    """
    cmd = list(argv)
    wrap: list[str] = []
    setpriv = shutil.which("setpriv") or ("/usr/bin/setpriv" if os.path.exists("/usr/bin/setpriv") else None)
    switch_user = run_as is not None and os.geteuid() == 0
    if switch_user and setpriv is None:
        raise TestbedError(f"cannot run {cmd[0]} as {run_as}: setpriv (util-linux) is missing")
    if setpriv is not None:
        if switch_user:
            assert run_as is not None
            wrap += ["--reuid", run_as, "--regid", run_as, "--clear-groups"]
        if threading.current_thread() is threading.main_thread():
            wrap += ["--pdeathsig", "KILL"]
        if wrap:
            cmd = [setpriv, *wrap, "--", *cmd]
    full_env = dict(os.environ if env is None else env)
    if switch_user:
        assert run_as is not None
        full_env["HOME"] = pwd.getpwnam(run_as).pw_dir
        full_env["USER"] = full_env["LOGNAME"] = run_as
    log: IO[bytes] = open(log_path, "ab")  # noqa: SIM115 - handed to the child, closed below
    try:
        return subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=str(cwd) if cwd is not None else None,
            env=full_env,
            start_new_session=True,  # a Ctrl-C in the terminal reaches pytest, not the servers
        )
    except OSError as e:
        raise TestbedError(f"cannot start {cmd[0]}: {e}") from e
    finally:
        log.close()


def run_checked(
    argv: Sequence[str],
    what: str,
    *,
    run_as: str | None = None,
    cwd: Path | None = None,
    timeout: float = 120.0,
) -> str:
    """Run a setup command to completion; raise :class:`TestbedError` with its output if it fails."""
    cmd = list(argv)
    if run_as is not None and os.geteuid() == 0:
        cmd = ["setpriv", "--reuid", run_as, "--regid", run_as, "--clear-groups", "--", *cmd]
    try:
        done = subprocess.run(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=str(cwd) if cwd is not None else None,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise TestbedError(f"{what} failed: {e}") from e
    out = done.stdout.decode(errors="replace")
    if done.returncode != 0:
        tail = "\n".join(out.splitlines()[-30:])
        raise TestbedError(f"{what} failed (exit {done.returncode}): {' '.join(cmd)}\n{tail}")
    return out


def stop_process(
    proc: subprocess.Popen[bytes] | None,
    *,
    sig: int = signal.SIGTERM,
    timeout: float = 15.0,
) -> None:
    """Send ``sig`` to the process by pid, wait up to ``timeout`` seconds, then SIGKILL it."""
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, sig)
    try:
        proc.wait(timeout=timeout)
        return
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


# --- atexit safety net -------------------------------------------------------------------------

_live: dict[int, Callable[[], None]] = {}
_live_lock = threading.Lock()


def track(obj: object, stop: Callable[[], None]) -> None:
    """Remember a running server so the ``atexit`` hook can stop it."""
    with _live_lock:
        _live[id(obj)] = stop


def untrack(obj: object) -> None:
    with _live_lock:
        _live.pop(id(obj), None)


@atexit.register
def _stop_all() -> None:
    with _live_lock:
        stops = list(_live.values())
        _live.clear()
    for stop in reversed(stops):
        with contextlib.suppress(Exception):
            stop()


def descendants(pid: int) -> list[int]:
    """The pids of `pid`'s children, grandchildren... (from /proc), parents before their children."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text(encoding="ascii", errors="replace").rsplit(")", 1)[-1].split()
        except OSError:
            continue  # gone meanwhile
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found: list[int] = []
    todo = list(children.get(pid, []))
    while todo:
        child = todo.pop(0)
        found.append(child)
        todo.extend(children.get(child, []))
    return found


def wait_for_exit(pid: int, timeout: float) -> bool:
    """True once ``pid`` is gone (or a zombie), False if still alive after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while _pid_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True
