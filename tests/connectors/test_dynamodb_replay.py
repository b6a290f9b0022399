"""Replaying DynamoDB Streams records from Lambda event files in a local lake Storage."""

from __future__ import annotations

import gzip
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from connectors.dynamodb.decode import decode_records
from connectors.dynamodb.layout import KeyAttribute, TableLayout
from connectors.dynamodb.replay import ReplayError, iter_event_files, read_event_file, table_of
from connectors.events import TableId
from connectors.lake.storage import Storage

ARN = "arn:aws:dynamodb:eu-west-1:123456789012:table/{}/stream/2026-11-26T12:00:00.000"


def lambda_record(table: str, seq: int, event: str = "INSERT", **attrs: dict[str, Any]) -> dict[str, Any]:
    """A record as AWS Lambda's DynamoDB trigger delivers it (AWS docs, "Using AWS Lambda with DynamoDB")."""
    keys = {"pk": {"S": f"k{seq}"}}
    image = {**keys, **attrs}
    info: dict[str, Any] = {
        "ApproximateCreationDateTime": 1_790_000_000 + seq,
        "Keys": keys,
        "SequenceNumber": f"{seq:021d}",
        "SizeBytes": 26,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    info["OldImage" if event == "REMOVE" else "NewImage"] = image
    return {
        "eventID": f"id{seq}",
        "eventName": event,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "eu-west-1",
        "dynamodb": info,
        "eventSourceARN": ARN.format(table),
    }


@pytest.fixture
def storage(tmp_path: Path) -> Storage:
    return Storage(str(tmp_path / "lake"))


def test_event_files_are_listed_in_name_order_under_a_prefix(storage: Storage) -> None:
    for path in [
        "replay/2026-11-26/b.json",
        "replay/2026-11-25/z.json.gz",
        "replay/2026-11-26/a.jsonl",
        "other/x",
    ]:
        storage.write_bytes(path, b"{}")
    assert list(iter_event_files(storage, "replay/")) == [
        "replay/2026-11-25/z.json.gz",
        "replay/2026-11-26/a.jsonl",
        "replay/2026-11-26/b.json",
    ]
    assert list(iter_event_files(storage, "replay/2026-11-26")) == [
        "replay/2026-11-26/a.jsonl",
        "replay/2026-11-26/b.json",
    ]
    assert list(iter_event_files(storage, "replay/2026-11-2")) == list(iter_event_files(storage, "replay"))
    assert list(iter_event_files(storage, "nothing/here")) == []


def test_one_event_json_lines_and_gzip_are_read(storage: Storage) -> None:
    r = [lambda_record("Orders", i, total={"N": str(i)}) for i in range(1, 6)]
    storage.write_bytes("in/1.json", json.dumps({"Records": r[:2]}, indent=2).encode())
    lines = "\n".join([json.dumps({"Records": [r[2]]}), "", json.dumps(r[3])]) + "\n"
    storage.write_bytes("in/2.jsonl.gz", gzip.compress(lines.encode()))
    storage.write_bytes("in/3.jsonl", (json.dumps(r[4]) + "\n").encode())
    got = [
        rec for path in iter_event_files(storage, "in/") for rec in read_event_file(storage.read_bytes(path))
    ]
    assert got == r[:5]
    # Pretty-printed events one after another (as `cat`-ed log captures are) read the same.
    concatenated = "\n".join(json.dumps({"Records": [x]}, indent=2) for x in r)
    assert read_event_file(concatenated.encode()) == r
    assert read_event_file(b"") == [] and read_event_file(b'{"Records": []}') == []


@pytest.mark.parametrize(
    ("content", "line"),
    [
        (b'{"Records": []}\n{"Records": []}\n{"Records": [}\n', 3),
        (b'{\n  "Records": [\n    {"dynamodb": {}},\n    oops\n  ]\n}', 4),
        (b"not json", 1),
    ],
)
def test_bad_json_names_its_line(content: bytes, line: int) -> None:
    with pytest.raises(ReplayError, match=rf"^line {line}: bad JSON"):
        read_event_file(content)
    with pytest.raises(ReplayError, match=rf"^line {line}: bad JSON"):
        read_event_file(gzip.compress(content))


def test_files_that_are_not_stream_events_are_refused() -> None:
    with pytest.raises(ReplayError, match="line 2: neither"):
        read_event_file(b'{"Records": []}\n{"hello": 1}\n')
    with pytest.raises(ReplayError, match="line 3: neither"):
        read_event_file(b'{\n"Records": []}\n[1]\n')
    with pytest.raises(ReplayError, match="'Records' is not a list"):
        read_event_file(b'{"Records": {"a": 1}}')
    with pytest.raises(ReplayError, match="corrupt gzip"):
        read_event_file(b"\x1f\x8b\x08\x00garbage")


def test_table_of_reads_the_stream_arn() -> None:
    assert table_of(lambda_record("Orders.v2-prod", 1)) == "Orders.v2-prod"
    assert table_of({"eventSourceARN": ARN.replace("aws", "aws-cn", 1).format("T")}) == "T"
    for arn in [
        None,
        "arn:aws:kinesis:eu-west-1:1:stream/x",
        "arn:aws:dynamodb:eu-west-1:1:table/T",
        "nonsense",
    ]:
        rec = {"eventID": "e9", "eventSourceARN": arn} if arn else {"eventID": "e9"}
        with pytest.raises(ReplayError, match="record 'e9'"):
            table_of(rec)


def test_replayed_records_decode_per_table(storage: Storage) -> None:
    events = [
        {
            "Records": [
                lambda_record("Orders", 1, total={"N": "9.99"}),
                lambda_record("Users", 2, name={"S": "Ann"}),
            ]
        },
        {"Records": [lambda_record("Orders", 3, "MODIFY", total={"N": "12.5"}, note={"S": "gift"})]},
        {"Records": [lambda_record("Orders", 4, "REMOVE", total={"N": "1"})]},
    ]
    storage.write_bytes("replay/0001.jsonl", "\n".join(json.dumps(e) for e in events).encode())
    by_table: dict[str, list[dict[str, Any]]] = {}
    for path in iter_event_files(storage, "replay/"):
        for rec in read_event_file(storage.read_bytes(path)):
            by_table.setdefault(table_of(rec), []).append(rec)
    assert sorted(by_table) == ["Orders", "Users"]
    layout = TableLayout(TableId("replay", "dynamodb", "Orders"), [KeyAttribute("pk", "S")])
    decoded = decode_records(layout, by_table["Orders"])
    assert decoded.changes is not None and not decoded.quarantined
    rows = [(r["Op"], r["pk"], r["total"], r["note"]) for r in decoded.changes.data.to_pylist()]
    assert rows == [
        ("I", "k1", Decimal("9.99"), None),
        ("U", "k3", Decimal("12.5"), "gift"),
        ("D", "k4", 1, None),
    ]
    assert decoded.last_sequence == f"{4:021d}"
