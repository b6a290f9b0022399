"""Item counts of DynamoDB tables from DescribeTable: no read capacity is consumed.

`ItemCount` is refreshed by DynamoDB about every six hours (DescribeTable documentation), so it
lags a busy table; a Scan with Select=COUNT is exact but reads (and pays for) the whole table.
"""

from __future__ import annotations

from collections.abc import Sequence

import botocore.exceptions

from connectors.dynamodb.client import AwsClients, error_code


def estimated_items(clients: AwsClients, tables: Sequence[str]) -> dict[str, int | None]:
    """DescribeTable's `ItemCount` of each of `tables` (None: the table does not exist)."""
    counts: dict[str, int | None] = {}
    for table in tables:
        try:
            description = clients.dynamodb.describe_table(TableName=table)["Table"]
        except botocore.exceptions.ClientError as exc:
            if error_code(exc) != "ResourceNotFoundException":
                raise
            counts[table] = None
            continue
        count = description.get("ItemCount")
        counts[table] = None if count is None else int(count)
    return counts
