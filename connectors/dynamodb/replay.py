"""Read DynamoDB Streams records from files, as AWS Lambda receives them.

Teams often archive what a Lambda trigger received (``{"Records": [...]}`` events, one per file or
one per line, frequently gzipped by Firehose or a logging pipeline) and want to replay it into the
lake, or to test the decoder against real traffic. This module lists such files in a lake
`Storage` (a local directory or S3), reads them into the record dicts `decode_records` takes, and
tells each record's table from its ``eventSourceARN``.
"""

from __future__ import annotations

import gzip
import json
import re
import zlib
from collections.abc import Iterator
from typing import Any

from connectors.lake.storage import Storage

_GZIP_MAGIC = b"\x1f\x8b"
_DECODER = json.JSONDecoder()
_WHITESPACE = re.compile(r"[ \t\n\r]*")  # JSON's whitespace


class ReplayError(ValueError):
    """A file or record that is not a DynamoDB Streams event as Lambda delivers it."""


def iter_event_files(storage: Storage, prefix: str) -> Iterator[str]:
    """Paths of the files under `prefix`, in lexicographic order (so dated names replay in order).

    `prefix` is a path prefix relative to the storage root, as with an S3 listing: ``events/`` is
    a folder, ``events/2026-11-`` matches the files whose names start that way.
    """
    folder = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
    yield from sorted(e.path for e in storage.list_files(folder) if e.path.startswith(prefix))


def read_event_file(data: bytes) -> list[dict[str, Any]]:
    """The stream records in one file: Lambda events and/or single records, one after another.

    That covers one (pretty-printed) event and JSON Lines of events or records alike. gzip is
    detected by its magic bytes. Malformed JSON raises `ReplayError` naming the line.
    """
    if data[:2] == _GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as e:
            raise ReplayError(f"corrupt gzip data: {e}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ReplayError(f"not UTF-8 text: {e}") from None
    records: list[dict[str, Any]] = []
    position = _skip_space(text, 0)
    while position < len(text):
        try:
            value, end = _DECODER.raw_decode(text, position)
        except json.JSONDecodeError as e:  # its line number counts from the start of the file
            raise ReplayError(f"line {e.lineno}: bad JSON: {e.msg} (column {e.colno})") from None
        try:
            records.extend(_records(value))
        except ReplayError as e:
            raise ReplayError(f"line {text.count(chr(10), 0, position) + 1}: {e}") from None
        position = _skip_space(text, end)
    return records


def table_of(record: dict[str, Any]) -> str:
    """The table a record came from, from its ``eventSourceARN``.

    The ARN is ``arn:<partition>:dynamodb:<region>:<account>:table/<table>/stream/<label>``; the
    label is a timestamp and contains colons, so only the first five separate fields.
    """
    arn = record.get("eventSourceARN")
    parts = arn.split(":", 5) if isinstance(arn, str) else []
    resource = parts[5].split("/") if len(parts) == 6 else []
    if (
        len(resource) != 4
        or parts[0] != "arn"
        or parts[2] != "dynamodb"
        or resource[0] != "table"
        or not resource[1]
        or resource[2] != "stream"
    ):
        raise ReplayError(
            f"record {record.get('eventID')!r}: eventSourceARN {arn!r} is not a DynamoDB stream ARN "
            "(arn:aws:dynamodb:<region>:<account>:table/<table>/stream/<label>)"
        )
    return resource[1]


def _records(value: Any) -> list[dict[str, Any]]:
    """The records in one parsed JSON value: an event with "Records", or a single record."""
    if isinstance(value, dict) and "Records" in value:
        records = value["Records"]
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise ReplayError("'Records' is not a list of records")
        return records
    if isinstance(value, dict) and "dynamodb" in value:
        return [value]
    raise ReplayError("neither a stream event ({'Records': [...]}) nor a stream record")


def _skip_space(text: str, position: int) -> int:
    match = _WHITESPACE.match(text, position)
    return match.end() if match else position
