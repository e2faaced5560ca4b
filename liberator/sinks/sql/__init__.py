"""The SQL sink: topics back into PostgreSQL, MySQL/MariaDB or SQLite tables (docs/sql_sink.md)."""

from liberator.sinks.sql.sink import SqlSink

__all__ = ["SqlSink"]
