"""DynamoDB JSON -> typed Arrow columns: every attribute type, drift, restarts, quarantine.

Unit tests (no services): records are built as the Streams API's wire JSON gives them.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import random
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from boto3.dynamodb.types import Binary, TypeDeserializer

from connectors.dynamodb.decode import Decoded, decode_items, decode_records
from connectors.dynamodb.layout import Drift, KeyAttribute, LayoutError, TableLayout
from connectors.events import TableId

TABLE = TableId("ddb", "dynamodb", "devices")
KEY = (KeyAttribute("device", "S"), KeyAttribute("ts", "N"))
T0 = 1_790_000_000  # epoch seconds
BIG38 = "12345678901234567890123456789012345678"
BIG39 = "123456789012345678901234567890123456789"


def record(
    seq: int,
    image: dict[str, Any] | None,
    event: str = "INSERT",
    old: dict[str, Any] | None = None,
    keys: dict[str, Any] | None = None,
    stamp: Any = None,
) -> dict[str, Any]:
    info: dict[str, Any] = {
        "ApproximateCreationDateTime": T0 + seq if stamp is None else stamp,
        "SequenceNumber": f"{seq:021d}",
        "SizeBytes": 100,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    some = image or old or {}
    info["Keys"] = keys or {k: some[k] for k in ("device", "ts") if k in some}
    if image is not None:
        info["NewImage"] = image
    if old is not None:
        info["OldImage"] = old
    return {"eventID": f"e{seq}", "eventName": event, "eventSource": "aws:dynamodb", "dynamodb": info}


def item(device: str, ts: int, **attrs: dict[str, Any]) -> dict[str, Any]:
    return {"device": {"S": device}, "ts": {"N": str(ts)}, **attrs}


def rows(decoded: Decoded) -> list[dict[str, Any]]:
    assert decoded.changes is not None
    return decoded.changes.data.to_pylist()


def wire(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """As json.loads of the wire gives them (fresh objects, nothing shared with the test)."""
    return json.loads(json.dumps(records))


def test_every_attribute_type_is_typed_exactly() -> None:
    layout = TableLayout(TABLE, KEY)
    raw = b"\x00\xffbin"
    image = item(
        "d1",
        1,
        name={"S": "Zürich ☃"},
        big={"N": BIG38},
        steps={"N": "1234"},
        temp={"N": "-21.125"},
        blob={"B": base64.b64encode(raw).decode()},
        online={"BOOL": True},
        note={"NULL": True},
        tags={"SS": ["a", "ö"]},
        readings={"NS": ["1.5", "-2", "0.000001"]},
        blobs={"BS": [base64.b64encode(b"x").decode(), base64.b64encode(b"\x00").decode()]},
        loc={
            "M": {"lat": {"N": "52.520000"}, "tags": {"SS": ["x"]}, "b": {"B": "AAE="}, "nil": {"NULL": True}}
        },
        hist={"L": [{"N": "12345678901234567890.123456789"}, {"BOOL": False}, {"L": []}, {"M": {}}]},
    )
    decoded = decode_records(layout, wire([record(1, image)]))
    assert decoded.changes is not None and not decoded.quarantined
    types = dict(zip(decoded.changes.data.schema.names, decoded.changes.data.schema.types, strict=True))
    assert types["device"] == pa.string()
    assert types["ts"] == pa.decimal128(38, 6)
    assert types["big"] == pa.decimal128(38, 0)
    assert types["steps"] == pa.decimal128(38, 6)
    assert types["temp"] == pa.decimal128(38, 6)
    assert types["blob"] == pa.binary()
    assert types["online"] == pa.bool_()
    assert "note" not in types  # NULL-only: no column until a value arrives
    assert types["tags"] == pa.list_(pa.string())
    assert types["readings"] == pa.list_(pa.decimal128(38, 6))
    assert types["blobs"] == pa.list_(pa.binary())
    assert types["loc"] == types["hist"] == pa.string()
    (row,) = rows(decoded)
    assert row["name"] == "Zürich ☃"
    assert row["big"] == Decimal(BIG38) and str(row["big"]) == BIG38
    assert row["steps"] == Decimal(1234) and row["temp"] == Decimal("-21.125")
    assert row["blob"] == raw and row["online"] is True
    assert row["tags"] == ["a", "ö"] and row["readings"] == [Decimal("1.5"), Decimal(-2), Decimal("0.000001")]
    assert row["blobs"] == [b"x", b"\x00"]
    # JSON text: exact number text, base64 binaries, sets as arrays, compact, unicode kept.
    assert row["loc"] == '{"lat":52.520000,"tags":["x"],"b":"AAE=","nil":null}'
    assert row["hist"] == "[12345678901234567890.123456789,false,[],{}]"
    assert row["Op"] == "I" and row["_position"] == f"{1:021d}" and row["_txid"] is None
    assert row["_commit_ts"] == dt.datetime.fromtimestamp(T0 + 1, dt.UTC)
    assert decoded.last_sequence == f"{1:021d}"
    assert layout.take_drift() == []


def test_a_39_digit_number_overflows_to_exact_text_and_is_counted() -> None:
    layout = TableLayout(TABLE, KEY)
    decode_records(layout, wire([record(1, item("d", 1, big={"N": BIG38}))]))
    decoded = decode_records(
        layout,
        wire([record(2, item("d", 2, big={"N": BIG39})), record(3, item("d", 3, big={"N": "0.5"}))]),
    )
    first, second = rows(decoded)
    assert first["big"] is None and first["big__n_text"] == BIG39
    assert second["big"] is None and second["big__n_text"] == "0.5"  # never rounded into decimal(38,0)
    assert layout.take_drift() == [Drift("big", "big__n_text", "number does not fit decimal128(38, 0)", 2)]
    assert layout.take_drift() == []  # taken means reset


def test_a_number_set_with_a_too_wide_member_goes_whole_to_text() -> None:
    layout = TableLayout(TABLE, KEY)
    decode_records(layout, wire([record(1, item("d", 1, ns={"NS": ["1.25", "2"]}))]))
    decoded = decode_records(
        layout,
        wire(
            [
                record(2, item("d", 2, ns={"NS": ["1", "0.0000001"]})),
                record(3, item("d", 3, ns={"NS": ["-7", "0.5"]})),
            ]
        ),
    )
    first, second = rows(decoded)
    assert first["ns"] is None and first["ns__ns_text"] == ["1", "0.0000001"]
    assert second["ns"] == [Decimal(-7), Decimal("0.5")] and second["ns__ns_text"] is None
    assert layout.take_drift() == [
        Drift("ns", "ns__ns_text", "number does not fit list<item: decimal128(38, 6)>", 1)
    ]


def test_a_new_number_attribute_is_sized_by_its_first_batch() -> None:
    layout = TableLayout(TABLE, KEY)
    decode_records(
        layout,
        wire(
            [
                record(1, item("d", 1, wide={"N": "1" * 35}, fine={"N": "0.12345678"})),
                record(2, item("d", 2, wide={"N": "-0.5"}, fine={"N": "3"})),
            ]
        ),
    )
    types = {c.name: c.type for c in layout.schema().columns}
    assert types["wide"] == pa.decimal128(38, 3)  # 35 integer digits leave room for 3
    assert types["fine"] == pa.decimal128(38, 8)


def test_drift_keeps_the_value_in_a_sibling_column() -> None:
    layout = TableLayout(TABLE, KEY)
    first = decode_records(layout, wire([record(1, item("d", 1, pulse={"N": "72"}))]))
    assert [c.name for c in first.changes.schema.columns] == ["device", "ts", "pulse"]  # type: ignore[union-attr]
    decoded = decode_records(
        layout,
        wire(
            [
                record(2, item("d", 2, pulse={"S": "high"})),
                record(3, item("d", 3, pulse={"N": "80"}, extra={"BOOL": False})),
                record(4, item("d", 4, pulse={"S": "low"})),
            ]
        ),
    )
    assert decoded.changes is not None
    assert decoded.changes.schema.column_names == ("device", "ts", "pulse", "pulse__s", "extra")
    got = [(r["pulse"], r["pulse__s"], r["extra"]) for r in rows(decoded)]
    assert got == [(None, "high", None), (Decimal(80), None, False), (None, "low", None)]
    assert layout.take_drift() == [Drift("pulse", "pulse__s", "S value; the attribute's column holds N", 2)]


def test_the_first_value_decides_an_attribute_seen_with_two_types_in_one_batch() -> None:
    layout = TableLayout(TABLE, KEY)
    decoded = decode_records(
        layout,
        wire([record(1, item("d", 1, v={"NULL": True})), record(2, item("d", 2, v={"M": {"a": {"S": "x"}}})),
              record(3, item("d", 3, v={"N": "1"}))]),
    )  # fmt: skip
    assert [(r["v"], r["v__n"]) for r in rows(decoded)] == [
        (None, None),
        ('{"a":"x"}', None),
        (None, Decimal(1)),
    ]


def test_modify_takes_the_new_image_and_remove_the_old_one_or_the_keys() -> None:
    layout = TableLayout(TABLE, KEY)
    old = item("d", 1, color={"S": "red"})
    new = item("d", 1, color={"S": "blue"})
    decoded = decode_records(
        layout,
        wire(
            [
                record(1, new, "MODIFY", old=old),
                record(2, None, "REMOVE", old=old),
                record(3, None, "REMOVE", keys={"device": {"S": "d"}, "ts": {"N": "1"}}),
            ]
        ),
    )
    got = [(r["Op"], r["device"], r["ts"], r["color"]) for r in rows(decoded)]
    assert got == [("U", "d", 1, "blue"), ("D", "d", 1, "red"), ("D", "d", 1, None)]
    assert decoded.last_sequence == f"{3:021d}"


def test_boto3_parsed_records_decode_like_wire_records() -> None:
    """boto3 gives ApproximateCreationDateTime as a datetime and B values as bytes."""
    image = item("d", 1, blob={"B": "AAE="}, loc={"M": {"b": {"B": "AAE="}}})
    from_wire = decode_records(TableLayout(TABLE, KEY), wire([record(1, image)]))
    parsed = wire([record(1, image)])
    parsed[0]["dynamodb"]["ApproximateCreationDateTime"] = dt.datetime.fromtimestamp(
        T0 + 1, dt.timezone(dt.timedelta(hours=-3, minutes=-30))
    )
    parsed[0]["dynamodb"]["NewImage"]["blob"] = {"B": b"\x00\x01"}
    parsed[0]["dynamodb"]["NewImage"]["loc"] = {"M": {"b": {"B": b"\x00\x01"}}}
    assert rows(decode_records(TableLayout(TABLE, KEY), parsed)) == rows(from_wire)


def test_fractional_epoch_seconds_become_microseconds() -> None:
    decoded = decode_records(TableLayout(TABLE, KEY), wire([record(1, item("d", 1), stamp=T0 + 0.123456)]))
    assert rows(decoded)[0]["_commit_ts"] == dt.datetime.fromtimestamp(T0, dt.UTC) + dt.timedelta(
        microseconds=123456
    )


def test_reserved_attribute_names_are_renamed() -> None:
    layout = TableLayout(TABLE, KEY)
    decoded = decode_records(
        layout, wire([record(1, item("d", 1, op={"S": "x"}, _SEQ={"N": "5"}, kind__s={"S": "y"}))])
    )
    (row,) = rows(decoded)
    assert (row["op__attr"], row["_SEQ__attr"], row["kind__s__attr"]) == ("x", Decimal(5), "y")
    assert row["Op"] == "I"


def test_images_without_a_key_or_with_a_malformed_value_are_quarantined() -> None:
    layout = TableLayout(TABLE, KEY)
    decoded = decode_records(
        layout,
        wire(
            [
                record(1, item("d", 1, n={"N": "1"})),
                record(2, {"ts": {"N": "2"}, "n": {"N": "2"}}),
                record(3, item("d", 3, n={"N": "not-a-number"})),
                record(4, item("d", 4, n={"N": "4"}, m={"M": {"x": {"N": "1,5"}}})),
                record(5, {"device": {"N": "5"}, "ts": {"N": "5"}}),
                record(6, item("d", 6, bad={"S": "x", "N": "1"})),
                record(7, item("d", 7)),
            ]
        ),
    )
    assert [r["ts"] for r in rows(decoded)] == [1, 7]
    reasons = {q.position[-1]: q.reason for q in decoded.quarantined}
    assert set(reasons) == {"2", "3", "4", "5", "6"}
    assert "'device'" in reasons["2"] and "missing" in reasons["2"]
    assert "'n'" in reasons["3"] and "not-a-number" in reasons["3"]
    assert "'m'" in reasons["4"]
    assert "'device'" in reasons["5"]
    assert "'bad'" in reasons["6"]
    q = decoded.quarantined[0]
    assert q.table == TABLE and q.commit_ts == dt.datetime.fromtimestamp(T0 + 2, dt.UTC)
    assert json.loads(q.payload)["eventID"] == "e2"
    assert decoded.last_sequence == f"{7:021d}"


def test_malformed_records_are_quarantined() -> None:
    good = record(1, item("d", 1))
    unknown = record(2, item("d", 2), event="UPSERT")
    keys_only = record(3, None, keys={"device": {"S": "d"}, "ts": {"N": "3"}})
    no_stamp = record(4, item("d", 4))
    del no_stamp["dynamodb"]["ApproximateCreationDateTime"]
    decoded = decode_records(TableLayout(TABLE, KEY), wire([good, unknown, keys_only, no_stamp]))
    assert len(rows(decoded)) == 1
    reasons = [q.reason for q in decoded.quarantined]
    assert "UPSERT" in reasons[0] and "NewImage" in reasons[1] and "ApproximateCreationDateTime" in reasons[2]


def test_a_batch_with_nothing_decodable_has_no_changes() -> None:
    decoded = decode_records(TableLayout(TABLE, KEY), wire([record(1, {"x": {"S": "no key"}})]))
    assert decoded.changes is None and len(decoded.quarantined) == 1
    empty = decode_records(TableLayout(TABLE, KEY), [])
    assert empty == Decoded(None, (), None)


FIRST = [
    record(1, item("d", 1, pulse={"N": "72.5"}, loc={"M": {"a": {"N": "1"}}}, tags={"SS": ["a"]})),
    record(2, item("d", 2, pulse={"S": "hi"}, big={"N": BIG39}, seq={"L": [{"S": "x"}]}, Op={"S": "o"})),
    record(3, item("d", 3, big={"N": BIG38}, s={"S": "text"}, ns={"NS": ["1", "2e3"]}, b={"B": "AA=="})),
]
LATER = [
    # Each drifts where the first batch set a type: a restart must not type these differently.
    record(4, item("d", 4, pulse={"S": "lo"}, loc={"S": "drifted"}, s={"M": {}}, seq={"M": {}}, big={"N": "1.5"})),
    record(5, item("d", 5, pulse={"N": "1"}, loc={"M": {}}, seq={"L": []}, new={"BOOL": True}, Op={"N": "1"})),
    record(6, item("d", 6, ns={"NS": [BIG39]}, tags={"SS": ["b"]}, b={"B": "AQ=="}, s={"L": []})),
]  # fmt: skip


def test_a_layout_adopted_from_the_lake_schema_decodes_identically(tmp_path: Path) -> None:
    running = TableLayout(TABLE, KEY)
    committed = decode_records(running, wire(FIRST)).changes
    assert committed is not None
    running.take_drift()
    # The lake's schema as a restarted pipeline gets it: read back from a Parquet change-log file.
    pq.write_table(committed.data, tmp_path / "changes.parquet")
    restarted = TableLayout(TABLE, KEY, known=pq.read_schema(tmp_path / "changes.parquet"))
    assert restarted.schema() == running.schema()
    after_restart = decode_records(restarted, wire(LATER))
    without_restart = decode_records(running, wire(LATER))
    assert after_restart == without_restart
    assert after_restart.changes is not None
    assert after_restart.changes.data.schema == without_restart.changes.data.schema  # type: ignore[union-attr]
    assert restarted.take_drift() == running.take_drift() != []
    # And again from the grown schema, the same records decode the same.
    again = TableLayout(TABLE, KEY, known=after_restart.changes.data.schema)
    assert decode_records(again, wire(LATER)) == decode_records(running, wire(LATER))


def test_without_type_notes_a_string_column_takes_the_kind_its_siblings_leave_or_its_first_value() -> None:
    """A known schema without field metadata (written by other tools): S, M and L are inferred."""
    running = TableLayout(TABLE, KEY)
    committed = decode_records(running, wire(FIRST)).changes
    assert committed is not None
    bare = pa.schema([f.remove_metadata() for f in committed.data.schema])
    restarted = TableLayout(TABLE, KEY, known=bare)
    undecided = {c.name for c in restarted.columns if c.code is None}
    assert undecided == {"loc", "seq", "s", "Op__attr"}  # only strings without drift siblings
    usual = [
        record(7, item("d", 7, loc={"M": {"x": {"N": "1"}}}, seq={"L": []}, s={"S": "t"}, Op={"S": "o"}))
    ]
    assert decode_records(restarted, wire(usual)) == decode_records(running, wire(usual))
    assert all(c.code is not None for c in restarted.columns)


def test_a_known_schema_this_layout_did_not_write_is_refused() -> None:
    with pytest.raises(LayoutError, match="'x__n'"):
        TableLayout(TABLE, KEY, known=pa.schema([("device", pa.string()), ("x__n", pa.decimal128(38, 6))]))
    with pytest.raises(LayoutError, match="'when'"):
        TableLayout(TABLE, KEY, known=pa.schema([("when", pa.timestamp("us"))]))
    with pytest.raises(LayoutError, match="key type is N"):
        TableLayout(TABLE, KEY, known=pa.schema([("ts", pa.string())]))


def test_snapshot_items_are_inserts_at_one_position() -> None:
    layout = TableLayout(TABLE, KEY)
    when = dt.datetime(2026, 11, 26, 12, 0, 0, 123456, tzinfo=dt.UTC)
    decoded = decode_items(
        layout, wire([item("a", 1, x={"N": "1"}), item("b", 2), {"x": {"N": "3"}}]), "p1", when
    )
    got = [(r["Op"], r["_position"], r["_commit_ts"], r["device"], r["x"]) for r in rows(decoded)]
    assert got == [("I", "p1", when, "a", Decimal(1)), ("I", "p1", when, "b", None)]
    assert decoded.last_sequence is None
    assert [q.position for q in decoded.quarantined] == ["p1"]


# -- against boto3's TypeDeserializer ---------------------------------------------------------
def _number(rnd: random.Random) -> str:
    return rnd.choice(
        [
            str(rnd.randint(-(10**12), 10**12)),
            f"{rnd.uniform(-1e6, 1e6):.4f}",
            "0.000001",
            BIG38[: rnd.randint(1, 30)],
        ]
    )


def _text(rnd: random.Random) -> str:
    return "".join(rnd.choice('aé☃"\\\n x') for _ in range(rnd.randint(0, 6)))


def _blob(rnd: random.Random) -> str:
    return base64.b64encode(rnd.randbytes(rnd.randint(0, 5))).decode()


def _random_value(rnd: random.Random, depth: int = 0) -> dict[str, Any]:
    kind = rnd.choice(["S", "N", "B", "BOOL", "NULL", "SS", "NS", "BS"] + (["M", "L"] if depth < 3 else []))
    if kind == "S":
        return {"S": _text(rnd)}
    if kind == "N":
        return {"N": _number(rnd)}
    if kind == "B":
        return {"B": _blob(rnd)}
    if kind == "BOOL":
        return {"BOOL": rnd.random() < 0.5}
    if kind == "NULL":
        return {"NULL": True}
    if kind == "SS":
        return {"SS": sorted({_text(rnd) + str(i) for i in range(rnd.randint(1, 3))})}
    if kind == "NS":
        return {"NS": sorted({_number(rnd) for _ in range(rnd.randint(1, 3))}, key=Decimal)}
    if kind == "BS":
        return {"BS": sorted({_blob(rnd) for _ in range(rnd.randint(1, 3))})}
    if kind == "M":
        return {"M": {f"k{i}": _random_value(rnd, depth + 1) for i in range(rnd.randint(0, 3))}}
    return {"L": [_random_value(rnd, depth + 1) for _ in range(rnd.randint(0, 3))]}


def _plain(value: Any) -> Any:
    """TypeDeserializer's value in our JSON text's terms: sets as sorted lists, binaries as base64."""
    if isinstance(value, Binary):
        return base64.b64encode(value.value).decode()
    if isinstance(value, set):
        return sorted(_plain(v) for v in value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _boto3_form(typed: dict[str, Any]) -> dict[str, Any]:
    """A typed value as a boto3 client returns it: binaries decoded from base64."""
    ((code, value),) = typed.items()
    if code == "B":
        return {"B": base64.b64decode(value)}
    if code == "BS":
        return {"BS": [base64.b64decode(v) for v in value]}
    if code == "M":
        return {"M": {k: _boto3_form(v) for k, v in value.items()}}
    if code == "L":
        return {"L": [_boto3_form(v) for v in value]}
    return typed


def test_values_agree_with_boto3_type_deserializer() -> None:
    rnd = random.Random(20261126)
    attrs = [f"a{i}" for i in range(8)]
    records = [
        record(i, item("d", i, **{a: _random_value(rnd) for a in attrs if rnd.random() < 0.7}))
        for i in range(300)
    ]
    layout = TableLayout(TABLE, KEY)
    decoded = decode_records(layout, wire(records))
    assert not decoded.quarantined
    deserializer = TypeDeserializer()
    columns = {c.name: c for c in layout.columns}
    for rec, row in zip(records, rows(decoded), strict=True):
        for name, typed in rec["dynamodb"]["NewImage"].items():
            expected = deserializer.deserialize(_boto3_form(typed))
            code = next(iter(typed))
            column = columns.get(name)
            if column is None or column.code != code:
                column = columns.get(f"{name}__{code.lower()}") or columns.get(f"{name}__{code.lower()}_text")
            if code == "NULL":
                assert column is None or row[column.name] is None
                continue
            assert column is not None, (name, code)
            got = row[column.name]
            if code in ("M", "L"):
                assert json.loads(got, parse_float=Decimal, parse_int=Decimal) == _plain(expected)
            elif code in ("SS", "NS", "BS"):
                assert sorted(Decimal(v) if code == "NS" else v for v in got) == sorted(
                    v.value if code == "BS" else v for v in expected
                )
            elif code == "B":
                assert got == expected.value
            else:
                assert (Decimal(got) if code == "N" else got) == expected
