"""Test support for the DynamoDB source: throw-away tables on moto and lake-vs-table comparison."""

from __future__ import annotations

import base64
import json
import random
import threading
import time
import uuid
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import pyarrow as pa

from connectors.dynamodb.config import DynamoDBSourceConfig
from connectors.lake.config import LakeConfig
from connectors.lake.lake import Lake
from pipelines.capture.runner import SyncReport, sync_source
from pipelines.capture.sources import open_source


def create_table(client: Any, name: str, *, range_key: bool = True) -> str:
    """A PAY_PER_REQUEST table ``pk`` (S) [+ ``sk`` (N)] with a NEW_AND_OLD_IMAGES stream; its ARN."""
    keys = [{"AttributeName": "pk", "KeyType": "HASH"}]
    attrs = [{"AttributeName": "pk", "AttributeType": "S"}]
    if range_key:
        keys.append({"AttributeName": "sk", "KeyType": "RANGE"})
        attrs.append({"AttributeName": "sk", "AttributeType": "N"})
    out = client.create_table(
        TableName=name,
        KeySchema=keys,
        AttributeDefinitions=attrs,
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    return str(out["TableDescription"]["LatestStreamArn"])


class DdbWorld:
    """A fresh DynamoDB table on moto, a fresh local lake, and helpers to compare the two."""

    def __init__(self, aws: dict[str, str], lake_root: Path, *, tables: int = 1, **config: Any) -> None:
        self.client = boto3.client("dynamodb", **aws)
        self.names = [f"t_{uuid.uuid4().hex[:10]}" for _ in range(tables)]
        for name in self.names:
            create_table(self.client, name)
        self.name = self.names[0]
        self.config = DynamoDBSourceConfig(
            name="devices",
            tables=tuple(self.names),
            aws={
                "endpoint_url": aws["endpoint_url"],
                "region": aws["region_name"],
                "access_key_id": aws["aws_access_key_id"],
                "secret_access_key": aws["aws_secret_access_key"],
            },
            settle_seconds=0,
            **config,
        )
        self.lake = Lake(LakeConfig(root=str(lake_root)))

    def put(self, item: dict[str, Any], table: str | None = None) -> None:
        self.client.put_item(TableName=table or self.name, Item=item)

    def delete(self, pk: str, sk: int, table: str | None = None) -> None:
        self.client.delete_item(TableName=table or self.name, Key={"pk": {"S": pk}, "sk": {"N": str(sk)}})

    def sync(self, **kwargs: Any) -> SyncReport:
        source = open_source(self.config)
        try:
            return sync_source(self.lake, source, **kwargs)
        finally:
            source.close()

    def table_items(self, table: str | None = None) -> dict[tuple[Any, ...], dict[str, Any]]:
        """The table now: key -> attribute name -> normalised value (see `normalise`)."""
        items: dict[tuple[Any, ...], dict[str, Any]] = {}
        kwargs: dict[str, Any] = {"TableName": table or self.name}
        while True:
            page = self.client.scan(**kwargs)
            for item in page["Items"]:
                row = {k: _sorted_sets(normalise(v)) for k, v in item.items()}
                items[(row["pk"], row["sk"])] = {k: v for k, v in row.items() if v is not None}
            if "LastEvaluatedKey" not in page:
                return items
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def lake_state(self, table: str | None = None) -> pa.Table:
        return self.lake.current(self.config.name).read(f"dynamodb__{table or self.name}".lower())

    def lake_items(self, table: str | None = None) -> dict[tuple[Any, ...], dict[str, Any]]:
        """The lake's current state, normalised like `table_items` (JSON text of maps parsed)."""
        state = self.lake_state(table)
        out: dict[tuple[Any, ...], dict[str, Any]] = {}
        for row in state.to_pylist():
            clean = {}
            for k, v in row.items():
                if k.startswith("_") or v is None:
                    continue
                clean[k] = lake_value(v)
            out[(clean["pk"], clean["sk"])] = clean
        return out

    def changelog(self, table: str | None = None) -> pa.Table:
        return self.lake.read_changelog(self.config.name, f"dynamodb__{table or self.name}".lower())


def normalise(value: dict[str, Any]) -> Any:
    """A wire-form (botocore-parsed) attribute value as the comparison sees it."""
    ((kind, raw),) = value.items()
    if kind == "S":
        return raw
    if kind == "N":
        return Decimal(raw)
    if kind == "B":
        return bytes(raw)
    if kind == "BOOL":
        return raw
    if kind == "NULL":
        return None
    if kind == "SS":
        return sorted(raw)
    if kind == "NS":
        return sorted(Decimal(x) for x in raw)
    if kind == "BS":
        return sorted(bytes(x) for x in raw)
    if kind == "M":
        return {k: _plain(v) for k, v in raw.items()}
    return [_plain(v) for v in raw]


def _plain(value: dict[str, Any]) -> Any:
    """Nested values as they appear in the lake's JSON text (binary as base64 text)."""
    ((kind, raw),) = value.items()
    if kind == "B":
        return base64.b64encode(bytes(raw)).decode()
    if kind == "BS":
        return sorted(base64.b64encode(bytes(x)).decode() for x in raw)
    return normalise(value)


def lake_value(value: Any) -> Any:
    if isinstance(value, list):
        return sorted(value)
    if isinstance(value, str) and value[:1] in "{[":
        try:
            parsed = json.loads(value, parse_float=Decimal, parse_int=Decimal)
        except ValueError:
            return value
        return _sorted_sets(parsed)
    return value


def _sorted_sets(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _sorted_sets(v) for k, v in value.items()}
    if isinstance(value, list):
        items = [_sorted_sets(v) for v in value]
        try:
            return sorted(items) if all(not isinstance(v, dict | list) for v in items) else items
        except TypeError:
            return items
    return value


class SplittingWriter(threading.Thread):
    """Changes items of the fake stream service's table `arn` until stopped, splitting a random
    open shard every `split_every` changes; counts the changes the model confirmed, by Op.
    Each put writes ``v`` = 1000 + its change number, so an item's values rise in write order."""

    def __init__(self, model: Any, arn: str, *, seed: int, split_every: int, pause: float) -> None:
        super().__init__(daemon=True)
        self.model, self.arn = model, arn
        self.rng = random.Random(seed)  # its own: the kill loops draw from theirs meanwhile
        self.split_every, self.pause = split_every, pause
        self.stop = threading.Event()
        self.counts: Counter[str] = Counter()

    def run(self) -> None:
        model, arn, rng = self.model, self.arn, self.rng
        n = 0
        while not self.stop.is_set():
            n += 1
            key = {"pk": {"S": f"d{rng.randrange(80)}"}, "sk": {"N": "0"}}
            exists = (key["pk"]["S"], key["sk"]["N"]) in {(k[0], str(k[1])) for k in model.items(arn)}
            if rng.random() < 0.2:
                if model.delete(arn, key) is not None:
                    self.counts["D"] += 1
            elif model.put(arn, {**key, "v": {"N": str(1000 + n)}}) is not None:
                self.counts["U" if exists else "I"] += 1
            if n % self.split_every == 0:
                model.split(arn, rng.choice(model.open_shard_ids(arn)))
            time.sleep(self.pause)

    def finish(self) -> None:
        self.stop.set()
        self.join(timeout=30)
