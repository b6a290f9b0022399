"""MySQL / MariaDB binlog source: `MySQLSource`, its config and its GTID offsets."""

from connectors.mysql.config import MySQLSourceConfig
from connectors.mysql.offset import MariaGtid, MariaGtidPosition
from connectors.mysql.source import MySQLSource

__all__ = ["MariaGtid", "MariaGtidPosition", "MySQLSource", "MySQLSourceConfig"]
