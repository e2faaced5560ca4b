"""postgres_wal settings checked at load: the snapshot mode and workers."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from liberator.connectors.postgres_wal.config import PostgresWalConfig

BASE = {"name": "wal", "url": "postgresql://u@127.0.0.1/db", "tables": ["items"]}


def test_the_default_snapshot_stays_the_consistent_read() -> None:
    config = PostgresWalConfig.model_validate(BASE)
    assert (config.snapshot_mode, config.snapshot_workers) == ("consistent", 1)


def test_incremental_mode_needs_a_streaming_source() -> None:
    with pytest.raises(ValidationError, match="snapshot: initial_only does not stream"):
        PostgresWalConfig.model_validate({**BASE, "snapshot": "initial_only", "snapshot_mode": "incremental"})


def test_workers_are_bounded() -> None:
    with pytest.raises(ValidationError, match="snapshot_workers"):
        PostgresWalConfig.model_validate({**BASE, "snapshot_workers": 0})
