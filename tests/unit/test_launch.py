"""The entry point catches SIGTERM before it imports the CLI (whose imports are the slow part of start-up)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

# Runs `python -m liberator --help` with signal.signal spied on: each SIGTERM handler installed says
# whether the CLI was imported by then.
SPY = textwrap.dedent(
    """
    import runpy, signal, sys
    real = signal.signal
    def spy(signum, handler):
        if signum == signal.SIGTERM:
            print("SIGTERM handler; cli imported:", "liberator.cli" in sys.modules, flush=True)
        return real(signum, handler)
    signal.signal = spy
    sys.argv = ["liberator", "--help"]
    runpy.run_module("liberator", run_name="__main__", alter_sys=True)
    """
)


def test_sigterm_is_caught_before_the_cli_is_imported() -> None:
    result = subprocess.run([sys.executable, "-c", SPY], capture_output=True, text=True, timeout=60)
    lines = [line for line in result.stdout.splitlines() if line.startswith("SIGTERM handler")]
    assert lines, result.stdout + result.stderr
    assert lines[0] == "SIGTERM handler; cli imported: False", lines


def test_the_console_script_uses_the_early_entry_point() -> None:
    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    assert pyproject["project"]["scripts"]["liberator"] == "liberator.launch:main"
