"""The world's two DynamoDB tables: device events and daily summaries, with streams turned on.

``device_events`` holds what wearables report (key ``patient_id`` N + ``event_time`` S) and
``daily_summary`` one item per patient and UTC day (key ``patient_id`` N + ``day`` S). Patient ids
are the MySQL world's, so the lake can join them. Both tables are on-demand and stream
NEW_AND_OLD_IMAGES, which the DynamoDB source needs for before/after images.

Only a boto3 ``dynamodb`` client passed in is used, so the same code runs against the moto server
and real DynamoDB. Streams are never disabled here: on moto 5.2.5 that breaks the table.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from botocore.exceptions import ClientError, WaiterError

from pipelines.world.schema import WorldError

__all__ = [
    "DEVICE_TABLE_KEYS",
    "EVENTS_TABLE",
    "SUMMARY_TABLE",
    "DeviceTables",
    "DeviceTablesError",
    "DeviceWorldError",
    "create_device_tables",
    "drop_device_tables",
]

log = logging.getLogger(__name__)

EVENTS_TABLE = "device_events"
SUMMARY_TABLE = "daily_summary"

# Logical table name -> ((partition key, type), (sort key, type)).
DEVICE_TABLE_KEYS: Mapping[str, tuple[tuple[str, str], tuple[str, str]]] = MappingProxyType(
    {
        EVENTS_TABLE: (("patient_id", "N"), ("event_time", "S")),
        SUMMARY_TABLE: (("patient_id", "N"), ("day", "S")),
    }
)
STREAM_VIEW_TYPE = "NEW_AND_OLD_IMAGES"

# DynamoDB table names: 3-255 characters of [a-zA-Z0-9_.-].
_PREFIX = re.compile(r"^[A-Za-z0-9_.-]{0,200}$")


class DeviceWorldError(WorldError):
    """The DynamoDB part of the world could not be created, seeded or changed."""


class DeviceTablesError(DeviceWorldError):
    """A device table is missing, still changing, or exists with a different shape."""


@dataclass(frozen=True, slots=True)
class DeviceTables:
    """Names and stream ARNs of the two device tables (``prefix`` + logical name)."""

    prefix: str
    device_events: str
    daily_summary: str
    device_events_stream_arn: str
    daily_summary_stream_arn: str

    def name(self, table: str) -> str:
        """The real name of logical table ``table`` (``device_events`` or ``daily_summary``)."""
        return {EVENTS_TABLE: self.device_events, SUMMARY_TABLE: self.daily_summary}[table]

    def stream_arn(self, table: str) -> str:
        """The stream ARN of logical table ``table``."""
        return {
            EVENTS_TABLE: self.device_events_stream_arn,
            SUMMARY_TABLE: self.daily_summary_stream_arn,
        }[table]


def table_names(prefix: str = "") -> dict[str, str]:
    """Logical name -> real name for ``prefix`` (checked to make valid DynamoDB names)."""
    if not _PREFIX.match(prefix):
        raise DeviceTablesError(f"table prefix {prefix!r} may only hold letters, digits, '_', '-' and '.'")
    return {logical: prefix + logical for logical in DEVICE_TABLE_KEYS}


def create_device_tables(
    client: Any, prefix: str = "", *, wait_delay_seconds: float = 2.0, wait_max_attempts: int = 150
) -> DeviceTables:
    """Create both tables if they do not exist and wait until they are ACTIVE.

    An existing table with the right key schema and a NEW_AND_OLD_IMAGES stream is left as it is.
    One with another key schema or stream setting raises ``DeviceTablesError`` naming it (nothing
    is changed: fixing it would mean dropping data or disabling a stream).
    """
    arns: dict[str, str] = {}
    for logical, name in table_names(prefix).items():
        (hash_name, hash_type), (range_name, range_type) = DEVICE_TABLE_KEYS[logical]
        try:
            client.create_table(
                TableName=name,
                KeySchema=[
                    {"AttributeName": hash_name, "KeyType": "HASH"},
                    {"AttributeName": range_name, "KeyType": "RANGE"},
                ],
                AttributeDefinitions=[
                    {"AttributeName": hash_name, "AttributeType": hash_type},
                    {"AttributeName": range_name, "AttributeType": range_type},
                ],
                BillingMode="PAY_PER_REQUEST",
                StreamSpecification={"StreamEnabled": True, "StreamViewType": STREAM_VIEW_TYPE},
            )
            log.info("created DynamoDB table %s", name)
        except ClientError as exc:
            if _error_code(exc) != "ResourceInUseException":
                raise DeviceTablesError(f"could not create table {name}: {exc}") from exc
            log.debug("DynamoDB table %s already exists; checking its shape", name)
        try:
            # Real DynamoDB takes seconds to create a table; moto answers ACTIVE at once.
            client.get_waiter("table_exists").wait(
                TableName=name,
                WaiterConfig={"Delay": wait_delay_seconds, "MaxAttempts": wait_max_attempts},
            )
        except WaiterError as exc:
            raise DeviceTablesError(f"table {name} did not become ACTIVE: {exc}") from exc
        description = client.describe_table(TableName=name)["Table"]
        arns[logical] = _check_shape(name, logical, description)
    names = table_names(prefix)
    return DeviceTables(
        prefix=prefix,
        device_events=names[EVENTS_TABLE],
        daily_summary=names[SUMMARY_TABLE],
        device_events_stream_arn=arns[EVENTS_TABLE],
        daily_summary_stream_arn=arns[SUMMARY_TABLE],
    )


def drop_device_tables(
    client: Any, prefix: str = "", *, wait_delay_seconds: float = 2.0, wait_max_attempts: int = 150
) -> list[str]:
    """Delete both tables (their streams go with them); return the names that existed.

    Missing tables are skipped. The streams are not disabled first, on purpose (see the module
    docstring); deleting the table is enough.
    """
    dropped = []
    for name in table_names(prefix).values():
        try:
            client.delete_table(TableName=name)
        except ClientError as exc:
            if _error_code(exc) == "ResourceNotFoundException":
                continue
            raise DeviceTablesError(f"could not delete table {name}: {exc}") from exc
        dropped.append(name)
    for name in dropped:
        try:
            client.get_waiter("table_not_exists").wait(
                TableName=name,
                WaiterConfig={"Delay": wait_delay_seconds, "MaxAttempts": wait_max_attempts},
            )
        except WaiterError as exc:
            raise DeviceTablesError(f"table {name} was not deleted in time: {exc}") from exc
        log.info("dropped DynamoDB table %s", name)
    return dropped


def _check_shape(name: str, logical: str, description: Mapping[str, Any]) -> str:
    """Raise unless table ``name`` has the key schema and stream of ``logical``; return its stream ARN."""
    (hash_name, hash_type), (range_name, range_type) = DEVICE_TABLE_KEYS[logical]
    want_keys = [(hash_name, "HASH"), (range_name, "RANGE")]
    have_keys = [(k["AttributeName"], k["KeyType"]) for k in description.get("KeySchema", [])]
    types = {a["AttributeName"]: a["AttributeType"] for a in description.get("AttributeDefinitions", [])}
    have_types = {hash_name: types.get(hash_name), range_name: types.get(range_name)}
    if have_keys != want_keys or have_types != {hash_name: hash_type, range_name: range_type}:
        raise DeviceTablesError(
            f"table {name} exists with key schema {have_keys} {types}, but {logical} needs "
            f"{hash_name} ({hash_type}, HASH) + {range_name} ({range_type}, RANGE); "
            "drop it or choose another prefix"
        )
    stream = description.get("StreamSpecification") or {}
    arn = description.get("LatestStreamArn")
    if not stream.get("StreamEnabled") or stream.get("StreamViewType") != STREAM_VIEW_TYPE or not arn:
        raise DeviceTablesError(
            f"table {name} exists without a {STREAM_VIEW_TYPE} stream ({stream or 'none'}); "
            "enable one on it, or drop it or choose another prefix"
        )
    return str(arn)


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
