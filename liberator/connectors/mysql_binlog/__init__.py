"""MySQL / MariaDB binlog change-data capture (`type: mysql_binlog`); see docs/mysql_binlog.md."""

from liberator.connectors.mysql_binlog.source import MySQLBinlogSource

__all__ = ["MySQLBinlogSource"]
