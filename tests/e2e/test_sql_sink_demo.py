"""The README demo end to end: the query source, the SQL sink into a second SQLite database, both agree."""

from __future__ import annotations

import io
from pathlib import Path

from liberator.demo import run_demo


def test_demo_replica_agrees_with_the_legacy_database(tmp_path: Path) -> None:
    out = io.StringIO()
    assert run_demo(duration=3, workdir=str(tmp_path), out=out) == 0, out.getvalue()
    text = out.getvalue()
    assert "both databases agree, row for row" in text
    assert "orders" in text and "identical" in text
    assert (tmp_path / "replica.db").exists()
