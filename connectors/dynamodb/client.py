"""The AWS clients of the DynamoDB source, with a fast path for GetRecords.

boto3's response parser walks every attribute of every record through the service model's
shapes: about 12k records/s on this machine, slower than our whole decode-and-write path. GetRecords
therefore goes through botocore as usual (signing, endpoint, credential chain, retries of throttling
and modelled errors) but a ``before-parse`` hook takes the 200 response body, hands botocore an
empty one to parse, and returns the body to us unparsed; `connectors.dynamodb.decode` reads the
records straight from JSON. Error responses are left alone, so botocore raises its usual modelled
exceptions (ExpiredIteratorException, TrimmedDataAccessException, ...).
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import boto3
import botocore.exceptions
import orjson

from connectors.aws import AwsRetries, client_config
from connectors.dynamodb.config import DynamoDBSourceConfig
from connectors.usage import instrument

_RAW_KEY = "LakehouseRawBody"
_EMPTY_BODY = b"{}"


@dataclass(frozen=True, slots=True)
class RecordsPage:
    """One GetRecords response, parsed from raw JSON."""

    records: list[dict[str, Any]]
    next_iterator: str | None
    size_bytes: int


def error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore ClientError ('' for anything else)."""
    if isinstance(exc, botocore.exceptions.ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def _keep_raw_body(response_dict: dict[str, Any], customized_response_dict: dict[str, Any], **_: Any) -> None:
    if response_dict.get("status_code") == 200:
        customized_response_dict[_RAW_KEY] = response_dict["body"]
        response_dict["body"] = _EMPTY_BODY


def _boto_key(key: Mapping[str, Any]) -> dict[str, Any]:
    """A wire-form key made ready for botocore, which base64-encodes binary values itself."""
    return {name: {"B": base64.b64decode(v["B"])} if "B" in v else dict(v) for name, v in key.items()}


class AwsClients:
    """boto3 clients for one source: DynamoDB (snapshots), Streams, and S3 (exports).

    Clients are created lazily and shared by threads (boto3 clients are thread-safe); credentials
    never leave the config's SecretStr except into botocore.
    """

    def __init__(self, config: DynamoDBSourceConfig) -> None:
        self._config = config
        self._lock = threading.Lock()
        self._clients: dict[str, Any] = {}

    def _make(self, service: str, endpoint: str | None, pool: int = 16) -> Any:
        aws = self._config.aws
        kwargs: dict[str, Any] = {"region_name": aws.region}
        if endpoint:
            kwargs["endpoint_url"] = endpoint
        if aws.access_key_id and aws.secret_access_key:
            kwargs["aws_access_key_id"] = aws.access_key_id
            kwargs["aws_secret_access_key"] = aws.secret_access_key.get_secret_value()
        retry = self._config.retry
        kwargs["config"] = client_config(
            AwsRetries(max_attempts=retry.attempts, read_timeout_seconds=30), max_pool_connections=pool
        )
        return instrument(boto3.session.Session().client(service, **kwargs), owner=self._config.name)

    def _client(self, service: str) -> Any:
        with self._lock:
            client = self._clients.get(service)
            if client is None:
                aws = self._config.aws
                if service == "dynamodbstreams":
                    client = self._make(service, aws.streams_endpoint_url or aws.endpoint_url)
                    client.meta.events.register("before-parse.dynamodb-streams.GetRecords", _keep_raw_body)
                elif service == "s3":
                    client = self._make(service, aws.endpoint_url)
                else:
                    client = self._make(service, aws.endpoint_url)
                    client.meta.events.register("before-parse.dynamodb.Scan", _keep_raw_body)
                self._clients[service] = client
            return client

    @property
    def dynamodb(self) -> Any:
        return self._client("dynamodb")

    @property
    def streams(self) -> Any:
        return self._client("dynamodbstreams")

    @property
    def s3(self) -> Any:
        return self._client("s3")

    def get_records(self, iterator: str, limit: int = 1000) -> RecordsPage:
        """One GetRecords call, its body parsed by `json` instead of botocore's shape walker."""
        response: Mapping[str, Any] = self.streams.get_records(ShardIterator=iterator, Limit=limit)
        body = response.get(_RAW_KEY)
        if body is None:  # another hook or a non-200 success; fall back to botocore's parse
            return RecordsPage(list(response.get("Records", [])), response.get("NextShardIterator"), 0)
        data = orjson.loads(body)  # several times json's speed: this is the stream's hot path
        return RecordsPage(data.get("Records", []), data.get("NextShardIterator"), len(body))

    def count_items(self, table: str) -> int:
        """Items in `table` now: Scan with Select=COUNT, every page (exact, unlike ItemCount)."""
        kwargs: dict[str, Any] = {"TableName": table, "Select": "COUNT"}
        total = 0
        while True:
            data = json.loads(self.dynamodb.scan(**kwargs)[_RAW_KEY])
            total += int(data["Count"])
            if not data.get("LastEvaluatedKey"):
                return total
            kwargs["ExclusiveStartKey"] = _boto_key(data["LastEvaluatedKey"])

    def scan_page(self, **kwargs: Any) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        """One Scan call: the items in wire-form DynamoDB JSON and the key to continue from.

        The returned key is ready to pass back as ExclusiveStartKey (binary values decoded: botocore
        base64-encodes them again on the way out).
        """
        response: Mapping[str, Any] = self.dynamodb.scan(**kwargs)
        body = response.get(_RAW_KEY)
        if body is None:
            raise RuntimeError("Scan response was parsed by botocore; the raw-body hook is not active")
        data = json.loads(body)
        last = data.get("LastEvaluatedKey")
        return data.get("Items", []), _boto_key(last) if last else None

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()
