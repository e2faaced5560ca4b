"""docs/metrics.md lists every metric /metrics can emit, so operators can look each one up."""

from __future__ import annotations

import re
from pathlib import Path

from liberator.metrics import Metrics

DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"


def test_every_emitted_metric_is_documented() -> None:
    metrics = Metrics("app")
    source = metrics.source("s", "postgres_wal")
    source.backlog_bytes = 10
    source.last_event_ms = 1
    sink = metrics.sink("k", "sql")
    sink.last_record_ms = 1
    emitted = set(re.findall(r"^# TYPE (\S+) ", metrics.prometheus(), re.MULTILINE))
    documented = set(re.findall(r"^\| `(liberator_[a-z_]+)` \|", DOC.read_text(), re.MULTILINE))
    assert emitted, "no metrics emitted"
    assert emitted - documented == set(), "emitted but not in docs/metrics.md"
    assert documented - emitted == set(), "documented but never emitted"
