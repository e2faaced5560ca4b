"""Install the Debian packages a test-bed server needs, only when its binaries are missing.

CI starts from a machine with nothing but Python, so the test bed installs PostgreSQL and MariaDB
itself (``scripts/setup`` does the same up front). Installing must not leave a system service running:
``mariadb-server``'s and ``postgresql``'s maintainer scripts try to start one, so while apt runs a
``/usr/sbin/policy-rc.d`` that answers 101 ("action forbidden") is put in place if none exists, and any
service that still came up on its default port is stopped again.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path

from liberator.embedded.ports import LOOPBACK, port_is_open
from liberator.embedded.process import TestbedError

POLICY_RC_D = Path("/usr/sbin/policy-rc.d")
_LOCK_PATH = Path("/tmp/liberator-testbed-apt.lock")
_EXTRA_DIRS = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")

# Services whose maintainer scripts may start a daemon: package -> (service name, default port).
_SERVICES: dict[str, tuple[str, int]] = {
    "postgresql": ("postgresql", 5432),
    "mariadb-server": ("mariadb", 3306),
}

POSTGRES_REQUIREMENTS: dict[str, str] = {
    "/usr/lib/postgresql/*/bin/initdb": "postgresql",
    "/usr/lib/postgresql/*/bin/postgres": "postgresql",
}
MARIADB_REQUIREMENTS: dict[str, str] = {
    "mariadbd": "mariadb-server",
    "mariadb-install-db": "mariadb-server",
    "mariadb-admin": "mariadb-client",
}

_apt_updated = False


def find_binary(spec: str) -> str | None:
    """Resolve a binary: an absolute path or glob (highest match wins), or a name looked up on PATH
    and in the usual sbin/bin directories (CI's PATH may lack /usr/sbin)."""
    if spec.startswith("/"):
        matches = sorted(glob.glob(spec)) if any(c in spec for c in "*?[") else [spec]
        found = [m for m in matches if os.access(m, os.X_OK)]
        return found[-1] if found else None
    hit = shutil.which(spec)
    if hit:
        return hit
    for d in _EXTRA_DIRS:
        p = os.path.join(d, spec)
        if os.access(p, os.X_OK):
            return p
    return None


def missing_packages(requirements: Mapping[str, str]) -> list[str]:
    """Debian packages (deduplicated, in order) whose binaries from ``requirements`` are missing."""
    pkgs: list[str] = []
    for binary, pkg in requirements.items():
        if find_binary(binary) is None and pkg not in pkgs:
            pkgs.append(pkg)
    return pkgs


@contextlib.contextmanager
def _apt_lock() -> Iterator[None]:
    with open(_LOCK_PATH, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def no_service_starts() -> Iterator[None]:
    """Forbid invoke-rc.d from starting services while apt runs (only if no policy is in place)."""
    if POLICY_RC_D.exists():
        yield
        return
    POLICY_RC_D.write_text("#!/bin/sh\n# written by liberator_testbed while apt-get runs\nexit 101\n")
    POLICY_RC_D.chmod(0o755)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            POLICY_RC_D.unlink()


def _apt(args: list[str], what: str) -> None:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive", NEEDRESTART_MODE="a")
    cmd = ["apt-get", "-o", "DPkg::Lock::Timeout=300", *args]
    done = subprocess.run(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, check=False
    )
    if done.returncode != 0:
        tail = "\n".join(done.stdout.decode(errors="replace").splitlines()[-20:])
        raise TestbedError(f"{what}: '{' '.join(cmd)}' failed with exit {done.returncode}:\n{tail}")


def ensure_apt_packages(requirements: Mapping[str, str], *, what: str = "test bed") -> list[str]:
    """Make sure every binary in ``requirements`` (binary name, absolute path or glob -> Debian
    package) exists, installing the missing packages with apt-get. Returns the packages installed."""
    global _apt_updated
    pkgs = missing_packages(requirements)
    if not pkgs:
        return []
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise TestbedError(
            f"{what} needs Debian package(s) {' '.join(pkgs)}, which are missing and cannot be installed "
            f"here (needs root and apt-get): run scripts/setup as root or 'apt-get install {' '.join(pkgs)}'"
        )
    with _apt_lock():
        pkgs = missing_packages(requirements)  # another process may have installed them meanwhile
        if not pkgs:
            return []
        ports_before = {pkg: port_is_open(LOOPBACK, _SERVICES[pkg][1]) for pkg in pkgs if pkg in _SERVICES}
        with no_service_starts():
            if not _apt_updated:
                _apt(["update", "-q"], f"{what}: apt-get update")
                _apt_updated = True
            _apt(
                ["install", "-y", "-q", "--no-install-recommends", *pkgs],
                f"{what}: installing {' '.join(pkgs)}",
            )
        for pkg, was_open in ports_before.items():
            service, port = _SERVICES[pkg]
            if not was_open and port_is_open(LOOPBACK, port):
                # The package's scripts started the system service anyway: stop it again.
                subprocess.run(
                    ["service", service, "stop"],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    check=False,
                )
    still = missing_packages(requirements)
    if still:
        raise TestbedError(f"{what}: installed {' '.join(pkgs)} but binaries are still missing ({' '.join(still)})")
    return pkgs
