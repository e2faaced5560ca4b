"""The query-based source (`type: query`): snapshot plus incremental polling on any SQLAlchemy store."""

from liberator.connectors.query.source import QuerySource

__all__ = ["QuerySource"]
