"""PostgreSQL change-data capture from logical replication (`type: postgres_wal`, plugin pgoutput)."""

from liberator.connectors.postgres_wal.source import PostgresWalSource

__all__ = ["PostgresWalSource"]
