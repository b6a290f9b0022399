"""The sample "health and wellness" world used by ``lakehouse demo`` and the tests.

Two databases: ``health`` on Aurora MySQL (patients, assessments, surveys, plans, preferences,
insurance claims, search synonyms) and ``tenants`` on Aurora PostgreSQL (tenant directory and care
providers). ``create_world`` creates and seeds them from a seed; ``Workload`` keeps changing them.
``create_mysql_world`` seeds the same health rows on a second MySQL server (MySQL 8 for Aurora MySQL 3).
In DynamoDB, device events and daily summaries: ``create_device_tables``, ``seed_devices`` and
``DeviceWorkload`` (``pipelines.world.devices*``).
"""

from pipelines.world.devices import seed_devices
from pipelines.world.devices_schema import DeviceTables, create_device_tables, drop_device_tables
from pipelines.world.devices_workload import DeviceWorkload, DeviceWorkloadConfig
from pipelines.world.schema import TABLES, TABLES_BY_NAME, WorldError, WorldTable, drop_schema
from pipelines.world.setup import (
    DEFAULT_MYSQL_DATABASE,
    DEFAULT_POSTGRES_DATABASE,
    WorldSummary,
    create_databases,
    create_mysql_database,
    create_mysql_world,
    create_schema,
    create_world,
)
from pipelines.world.stats import Change, ChangeKind, WorkloadStats
from pipelines.world.workload import (
    DEFAULT_TABLE_WEIGHTS,
    OperationMix,
    Workload,
    WorkloadConfig,
    WorkloadError,
)

__all__ = [
    "DeviceTables",
    "DeviceWorkload",
    "DeviceWorkloadConfig",
    "create_device_tables",
    "drop_device_tables",
    "seed_devices",
    "DEFAULT_MYSQL_DATABASE",
    "DEFAULT_POSTGRES_DATABASE",
    "DEFAULT_TABLE_WEIGHTS",
    "TABLES",
    "TABLES_BY_NAME",
    "Change",
    "ChangeKind",
    "OperationMix",
    "Workload",
    "WorkloadConfig",
    "WorkloadError",
    "WorkloadStats",
    "WorldError",
    "WorldSummary",
    "WorldTable",
    "create_databases",
    "create_mysql_database",
    "create_mysql_world",
    "create_schema",
    "create_world",
    "drop_schema",
]
