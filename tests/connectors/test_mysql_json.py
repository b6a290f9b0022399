"""MySQL binary JSON against the MySQL 8-family server: stream text = the server's SELECT text.

On MySQL 8 (Aurora MySQL 3) a JSON column's binlog bytes are the server's binary JSON; a
snapshot reads the column with SELECT, i.e. the server's own JSON text. Documents written by
INSERT and UPDATE are streamed through the fast decoder (no event may fall back) and through
mysql-replication's path, and both must give exactly the text SELECT returns. The decoder itself
(connectors.mysql.json_binary) is also checked on bytes captured from the server.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pytest
from pymysqlreplication.row_event import WriteRowsEvent

from connectors.events import Column, TableId, TableSchema
from connectors.mysql import binlog, rows
from connectors.mysql.columns import ConvertedRows, RowConverter
from connectors.mysql.fastrows import FastPathRejected, fallback_counts
from connectors.mysql.fastrows_values import json_document
from connectors.mysql.json_binary import BinaryJson, JsonBinaryError, decimal_text, double_text, json_text
from connectors.mysql.schema import TableDefinition
from connectors.mysql.types import MySQLType, UnconvertibleValueError, binlog_fixup
from tests.conftest import TestDatabase
from tests.connectors.test_mysql_source import (
    execute,
    make_source,
    position_of,
    query,
    rows_of,
    stream_all,
)

CONTROL = "CONVERT(CONCAT('a', CHAR(0), CHAR(8), CHAR(9), CHAR(10), CHAR(12), CHAR(13), CHAR(31), CHAR(127), '\"\\\\/') USING utf8mb4)"
# (label, SQL expression of a JSON document): every binary JSON type, the escaping of strings,
# unicode keys, key order, opaque values, both container formats, scalars at the top level.
DOCUMENTS = [
    ("nested", """'{"a": 1, "b": [1, 2], "c": {"d": null, "e": [true, false, []]}}'"""),
    ("empty object", "'{}'"),
    ("empty array", "'[]'"),
    ("bare string", "'\"a bare string\"'"),
    ("bare unicode", "'\"𠮷田😀\"'"),
    ("bare null", "'null'"),
    ("bare true", "'true'"),
    ("bare int16", "'-32768'"),
    ("bare uint64", "'18446744073709551615'"),
    ("bare int64", "'-9223372036854775808'"),
    ("bare double", "'1.5'"),
    ("bare negative zero", "'-0.0'"),
    (
        "integers",
        "'[0, -1, 32767, -32768, 65535, 65536, 2147483647, -2147483648, 4294967295, 4294967296,"
        " 9223372036854775807, -9223372036854775808, 9223372036854775808, 18446744073709551615]'",
    ),
    (
        "doubles",
        "'[1.0, -0.0, 0.1, 1e15, 1e14, 1.5e-7, 1e-15, 1e-16, 0.30000000000000004, 100.0,"
        " 1234567890123456.7, -1e-5, 2.5e-5, 1.7976931348623157e308, 5e-324, -2.2250738585072014e-308,"
        " 123456789.123456789, 1e21, 9007199254740993.0]'",
    ),
    ("unicode", f"JSON_OBJECT('𠮷田', '😀', 'ünï', JSON_ARRAY('é', '中文', '\u2028'), 'ctl', {CONTROL})"),
    ("key order", """'{"bb": 1, "a": 2, "ccc": 3, "": 4, "B": 5, "é": 6}'"""),
    (
        "decimals",
        "JSON_ARRAY(CAST(1.50 AS DECIMAL(10,2)), CAST(-0.001 AS DECIMAL(5,2)), CAST(-12.345 AS DECIMAL(65,30)),"
        " CAST(0.5 AS DECIMAL(3,1)), CAST(7 AS DECIMAL(5,0)), CAST(-0.5 AS DECIMAL(5,5)),"
        " 99999999999999999999999999999999999.999999999999999999999999999999,"
        " CAST(-123456789012345678901234567890.123456789 AS DECIMAL(65,9)))",
    ),
    (
        "temporals",
        "JSON_ARRAY(CAST('2024-02-29' AS DATE), CAST('2024-02-29 23:59:58.25' AS DATETIME(2)),"
        " CAST('-838:59:59' AS TIME), CAST('-01:02:03.5' AS TIME(1)), CAST('100:00:00.000001' AS TIME(6)),"
        " TIMESTAMP'2024-05-06 07:08:09', CAST('0001-01-01 00:00:00.000001' AS DATETIME(6)),"
        " CAST('9999-12-31 23:59:59.999999' AS DATETIME(6)))",
    ),
    (
        "opaque bytes",
        "JSON_ARRAY(x'00ff', CAST('abc' AS BINARY), b'101', REPEAT(x'ab', 100), YEAR('2024-01-01'))",
    ),
    ("long strings", "JSON_ARRAY(REPEAT('x', 127), REPEAT('y', 128), REPEAT('é', 9000), REPEAT('z', 20000))"),
    (
        "large object",
        "JSON_OBJECT('big', REPEAT('a', 70000), 'n', -70000, 'u', 3000000000, 'arr',"
        " JSON_ARRAY(1, -2, 70000, -70000, 3000000000, -3000000000, true, false, null, 1.5, 'str'))",
    ),
    (
        "large array",
        "JSON_ARRAY(REPEAT('b', 70000), 1, -2, 65535, -32768, 2147483647, -2147483648, 4294967295,"
        " true, false, null, 1.5, '😀', JSON_OBJECT('k', 65535, 'l', JSON_ARRAY()))",
    ),
    ("deep", """'[[[[[[[[[[{"deep": [[[["x", {"y": [1.25]}]]]]}]]]]]]]]]]'"""),
    ("many keys", "JSON_OBJECT(" + ", ".join(f"'k{i}', {i * 7919 - 1000}" for i in range(300)) + ")"),
]
LARGE_OBJECT, LARGE_ARRAY = 0x01, 0x03


def assert_same(fast: ConvertedRows, library: ConvertedRows) -> None:
    assert fast.ops == library.ops
    assert fast.rejected == library.rejected
    for i, (a, b) in enumerate(zip(fast.arrays, library.arrays, strict=True)):
        assert a.type == b.type and a.equals(b), (i, a.to_pylist()[:3], b.to_pylist()[:3])


@pytest.fixture
def both_paths(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """Decode every rows event with the fast path (it must not fall back) and with the library.

    The results must be identical; the list receives, per event, the raw row images the fast
    decoder read (the JSON columns' binary bytes).
    """
    images: list[dict[str, Any]] = []

    def decode(event: Any, table: rows.BinlogTable) -> ConvertedRows:
        if isinstance(event, WriteRowsEvent):
            images.append(
                {"columns": table.definition.schema.column_names, "rows": table.fast.decode_images(event)}
            )
        fast_images = rows._decode_fast(event, table)  # raises FastPathUnsupported if it would fall back
        fast = ConvertedRows(fast_images.ops, table.fast.convert(fast_images.images))
        library = rows._decode_with_library(event, table)
        assert_same(fast, library)
        return library

    monkeypatch.setattr(binlog, "decode_rows_event", decode)
    yield images


def insert_documents(db: TestDatabase) -> None:
    execute(db, "CREATE TABLE docs (id INT PRIMARY KEY, doc JSON, note JSON NOT NULL)")
    for i, (label, expression) in enumerate(DOCUMENTS):
        execute(db, f"INSERT INTO docs VALUES ({i}, {expression}, JSON_QUOTE('{label}'))")
    conn = db.admin_connect()
    execute(
        db,
        "INSERT INTO docs VALUES (100, NULL, 'null')",  # SQL NULL vs the JSON null literal
        "SET SESSION sql_mode = ''",
        "INSERT INTO docs (id, doc) VALUES (101, '[101]')",  # no value for note: stored as zero bytes
        conn=conn,
    )


def printed(db: TestDatabase) -> dict[int, tuple[str | None, str]]:
    """What SELECT (and so a snapshot) reads: the server's JSON text, per id."""
    return {row[0]: (row[1], row[2]) for row in query(db, "SELECT id, doc, note FROM docs ORDER BY id")}


def test_documents_stream_exactly_as_the_server_prints_them(
    mysql8_db: TestDatabase, both_paths: list[dict[str, Any]]
) -> None:
    source = make_source(mysql8_db)
    start = position_of(source)
    insert_documents(mysql8_db)
    inserted = printed(mysql8_db)
    execute(
        mysql8_db,
        "UPDATE docs SET doc = JSON_SET(doc, '$.added', JSON_ARRAY(id, 2.5, 'ü')) WHERE JSON_TYPE(doc) = 'OBJECT'",
        "UPDATE docs SET note = JSON_ARRAY(id, CAST(id AS DECIMAL(6,2)), id / 7e0) WHERE id % 3 = 0",
        "UPDATE docs SET id = id + 1000 WHERE id IN (1, 2)",  # key change: D old key, I new key
        "DELETE FROM docs WHERE id IN (3, 1001)",
    )
    final = printed(mysql8_db)
    before = fallback_counts()
    batches = stream_all(source, start)
    assert fallback_counts() == before  # both_paths also fails on any event the fast path leaves

    changes = rows_of(batches, "docs", meta=True)
    inserts = [r for r in changes if r["Op"] == "I" and r["id"] < 1000]
    assert {r["id"]: (r["doc"], r["note"]) for r in inserts} == inserted
    assert inserted[100] == (None, "null") and inserted[101] == ("[101]", "null")
    state: dict[int, tuple[str | None, str]] = {}
    for r in changes:
        if r["Op"] == "D":
            state.pop(r["id"])
        else:
            state[r["id"]] = (r["doc"], r["note"])
    assert state == final
    assert any('"added": [0, 2.5, "ü"]' in (doc or "") for doc, _ in final.values())
    assert both_paths, "the rows events went through both paths"


def test_the_library_path_streams_the_same_batches(mysql8_db: TestDatabase) -> None:
    source = make_source(mysql8_db)
    start = position_of(source)
    insert_documents(mysql8_db)
    execute(
        mysql8_db,
        "UPDATE docs SET doc = JSON_ARRAY(doc, id) WHERE id % 2 = 0",
        "DELETE FROM docs WHERE id = 5",
    )
    updated = query(mysql8_db, "SELECT COUNT(*) FROM docs WHERE id % 2 = 0")[0][0]
    until = position_of(source)
    before = fallback_counts()
    fast = stream_all(source, start, until=until)
    assert fallback_counts() == before
    with rows.library_decoding():
        library = stream_all(source, start, until=until)
    assert [b.changes for b in fast] == [b.changes for b in library]
    assert len(rows_of(fast, "docs")) == len(DOCUMENTS) + 2 + updated + 1


def test_captured_binary_documents_decode_to_the_server_text(
    mysql8_db: TestDatabase, both_paths: list[dict[str, Any]]
) -> None:
    source = make_source(mysql8_db)
    start = position_of(source)
    insert_documents(mysql8_db)
    texts = printed(mysql8_db)
    stream_all(source, start)
    captured: dict[int, tuple[bytes | None, bytes]] = {}
    for event in both_paths:
        id_at, doc_at, note_at = (event["columns"].index(c) for c in ("id", "doc", "note"))
        for image in event["rows"]:
            captured[image[id_at]] = (image[doc_at], image[note_at])
    assert captured.keys() == texts.keys()
    for row_id, (doc, note) in captured.items():
        assert (None if doc is None else json_text(doc), json_text(note)) == texts[row_id], DOCUMENTS[row_id]
    labels = {label: i for i, (label, _) in enumerate(DOCUMENTS)}
    assert captured[labels["large object"]][0][0] == LARGE_OBJECT  # type: ignore[index]
    assert captured[labels["large array"]][0][0] == LARGE_ARRAY  # type: ignore[index]
    assert captured[101][1] == b""  # an empty value is the JSON null literal
    # Cut short anywhere, a document is refused, never printed as some other text.
    for label in ("nested", "unicode", "decimals", "temporals", "bare string", "bare uint64"):
        doc = captured[labels[label]][0]
        assert doc is not None
        for end in range(1, len(doc)):
            with pytest.raises(JsonBinaryError):
                json_text(doc[:end])


# Bytes captured from the MySQL 9.7 server's binlog, with what its SELECT printed (the last three
# written by hand in the same format: the other literals and an int16 at the top level).
CAPTURED = [
    ("0002001e001200010013000100050100021400616202000a00050100050200", '{"a": 1, "b": [1, 2]}'),
    ("0c0bf0a0aeb7e794b0f09f9880", '"𠮷田😀"'),
    (
        "0207004100050080071900071d000921000a29000931000a3900ffff000000000080ffffffff00000000ffffffffffffff7f"
        "0000000000000080ffffffffffffffff",
        "[-32768, 65535, -2147483648, 4294967295, 9223372036854775807, -9223372036854775808, 18446744073709551615]",
    ),
    (
        "0208005c000b1c000b24000b2c000b34000b3c000b44000b4c000b5400000000000000f03f000000000000008000003426f56b0c43"
        "0000901ec4bcd64276830df4f521843ebc89d897b2d29c3c343333333333d33f03eb2af2548b1143",
        "[1.0, -0.0, 1e15, 100000000000000.0, 0.00000015, 1e-16, 0.30000000000000004, 1234567890123456.8]",
    ),
    (
        "0003002a0019000000190002001b0003000402000401000c1e00c3a963746c0b0008090a0c0d1f7f225c2f",
        '{"": false, "é": true, "ctl": "\\u0000\\b\\t\\n\\f\\r\\u001f\x7f\\"\\\\/"}',
    ),
    (
        "0206004c000f16000f20000f2a000f34000f3e000f4800f6080c037ffffff3fea60a080000000000bab2190c0890d003fa7ebbb2"
        "190b08e05ef87cefffffff0c0800000009724cb3190f0200ff",
        '[-12.345, "2024-02-29", "2024-02-29 23:59:58.250000", "-01:02:03.500000", "2024-05-06 07:08:09.000000",'
        ' "base64:type15:AP8="]',
    ),
    ("", "null"),
    ("0400", "null"),
    ("0401", "true"),
    ("0402", "false"),
    ("0500ff", "-256"),
]


@pytest.mark.parametrize(("hex_bytes", "text"), CAPTURED)
def test_json_text_of_captured_bytes(hex_bytes: str, text: str) -> None:
    assert json_text(bytes.fromhex(hex_bytes)) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.0, "0.0"),
        (-0.0, "-0.0"),
        (1.0, "1.0"),
        (1e15, "1e15"),
        (1e14, "100000000000000.0"),
        (123456789012345.0, "123456789012345.0"),
        (1234567890123456.7, "1234567890123456.8"),
        (1e-15, "0.000000000000001"),
        (1.5e-16, "1.5e-16"),
        (-1e-5, "-0.00001"),
        (1e21, "1e21"),
        (1.7976931348623157e308, "1.7976931348623157e308"),
        (5e-324, "5e-324"),
        (-2.5e-300, "-2.5e-300"),
    ],
)
def test_doubles_print_as_my_gcvt(value: float, text: str) -> None:
    assert double_text(value) == text


def test_decimals_keep_their_scale() -> None:
    # DECIMAL(10,2) 1.50 and -1.50: precision, scale, then MySQL's binary DECIMAL.
    assert decimal_text(bytes([10, 2]) + bytes.fromhex("8000000132")) == "1.50"
    assert decimal_text(bytes([10, 2]) + bytes.fromhex("7ffffffecd")) == "-1.50"
    with pytest.raises(JsonBinaryError):
        decimal_text(bytes([10, 2]) + bytes.fromhex("80000001"))  # one byte short


def test_bytes_that_are_not_a_document_are_refused_on_both_paths() -> None:
    bad = b"\x0c\x05ab"  # a string declared 5 bytes long with 2
    with pytest.raises(JsonBinaryError):
        json_text(bad)
    with pytest.raises(JsonBinaryError, match="unknown binary JSON type"):
        json_text(b"\x0e\x00")
    # The fast path hands the event to the library path, which quarantines the row with the reason.
    with pytest.raises(FastPathRejected):
        json_document([b"\x04\x01", bad])
    assert json_document([None, b"\x04\x01", b""]).equals(pa.array([None, "true", "null"]))
    fix = binlog_fixup(MySQLType("json"))
    assert fix is not None
    assert fix(BinaryJson(b"\x04\x02")) == "false"
    assert fix('{"mariadb": "text"}') == '{"mariadb": "text"}'
    with pytest.raises(UnconvertibleValueError, match="string runs past"):
        fix(BinaryJson(bad))
    with pytest.raises(UnconvertibleValueError, match="without its binary form"):
        fix({b"a": 1})  # the library's own decoding: not rebuilt by guessing


def test_a_bad_document_is_quarantined_not_guessed() -> None:
    types = (MySQLType("int"), MySQLType("json"))
    schema = TableSchema(
        TableId("s", "d", "t"),
        (Column("id", pa.int32(), False, "int"), Column("doc", pa.string(), True, "json")),
        ("id",),
    )
    converter = RowConverter.for_binlog(TableDefinition(schema, types), "UTC")
    converted = converter.convert(
        [[1, BinaryJson(b"\x0c\x05ab")], [2, BinaryJson(b"\x02\x00\x00\x04\x00")]], ["I", "I"]
    )
    assert converted.arrays[1].to_pylist() == ["[]"]
    assert [r.index for r in converted.rejected] == [0]
    assert "string runs past" in converted.rejected[0].reason
