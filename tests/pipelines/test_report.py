"""What `lakehouse show` and the demo print reads as an analyst expects: no Python reprs, short
positions, and the commands to run next (issue 13, items 5 and 8)."""

from __future__ import annotations

import datetime as dt
import os
import shlex
import sys
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from connectors.dynamodb.offset import ShardPosition, StreamPositions
from pipelines.config import parse_config
from pipelines.demo import next_steps
from pipelines.report import format_rows, format_table, format_value, short_position


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (None, "NULL"),
        (True, "true"),
        (42, "42"),
        (-0.5, "-0.5"),
        (Decimal("2"), "2"),
        (Decimal("1E+3"), "1000"),
        (Decimal("-0.000001"), "-0.000001"),
        (Decimal("12345678901234567890123456789.123456789"), "12345678901234567890123456789.123456789"),
        (dt.datetime(2024, 5, 1, 12, 30, tzinfo=ZoneInfo("UTC")), "2024-05-01 12:30:00+00:00"),
        (
            dt.datetime(2024, 1, 1, 9, 0, 0, 250000, tzinfo=ZoneInfo("America/St_Johns")),
            "2024-01-01 09:00:00.250000-03:30",
        ),
        (dt.datetime(2024, 5, 1, 12, 30), "2024-05-01 12:30:00"),
        (dt.date(1990, 2, 28), "1990-02-28"),
        (dt.time(23, 59, 1), "23:59:01"),
        (b"\xff", "0xff (1 byte)"),
        (bytes(range(256)) * 4, "0x0001020304050607… (1024 bytes)"),
        ("Søren Kierkegaard", "Søren Kierkegaard"),
        ("x" * 100, "x" * 39 + "…"),
        ("two\nlines", "two\\nlines"),
        ({"steps": Decimal("10"), "tags": ["a", "b"]}, '{steps: 10, tags: ["a", "b"]}'),
    ],
)
def test_values_read_as_an_analyst_expects(value: object, shown: str) -> None:
    assert format_value(value) == shown


def test_values_are_never_python_reprs() -> None:
    row = {
        "amount": Decimal("2"),
        "at": dt.datetime(2024, 5, 1, tzinfo=ZoneInfo("UTC")),
        "photo": b"\x89PNG" + bytes(5000),
        "note": "é" * 500,
    }
    shown = format_rows([row])
    for repr_piece in ("Decimal(", "datetime.", "ZoneInfo", "b'", "\\x00", "é" * 41):
        assert repr_piece not in shown
    assert "0x89504e4700000000… (5004 bytes)" in shown and "2024-05-01 00:00:00+00:00" in shown


def test_sample_rows_are_a_table_or_one_block_per_row_when_too_wide() -> None:
    rows: list[dict[str, object]] = [{"id": 1, "name": "Zoë", "_seq": 7}, {"id": 2, "name": None, "_seq": 8}]
    assert format_rows(rows, width=80).splitlines() == ["id  name", "--  ----", "1   Zoë", "2   NULL"]
    assert format_rows(rows, width=5).splitlines() == [
        "-[ row 1 ]-",
        "id   = 1",
        "name = Zoë",
        "-[ row 2 ]-",
        "id   = 2",
        "name = NULL",
    ]


def test_query_tables_show_binary_short_and_decimals_plain() -> None:
    table = format_table(["k", "v"], [[Decimal("1E+2"), b"\x00" * 64], [None, "x" * 60]])
    assert table.splitlines()[2:] == ["100  0x0000000000000000… (64 bytes)", "     " + "x" * 60]


UUID_A = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
UUID_B = "4f22ab58-82db-22f2-af44-d91bb0530673"


def _shards(open_: int, finished: int) -> str:
    shards = {f"shardId-{i:03d}": ShardPosition(100 + i) for i in range(open_)}
    shards |= {f"shardId-{open_ + i:03d}": ShardPosition(10 + i, finished=True) for i in range(finished)}
    half = dict(list(shards.items())[: len(shards) // 2])
    rest = dict(list(shards.items())[len(shards) // 2 :])
    return StreamPositions({"device_events": half, "daily_summary": rest}).serialize()


@pytest.mark.parametrize(
    ("position", "shown"),
    [
        (None, "-"),
        ("pg-lsn:0/16B3748", "LSN 0/16B3748"),
        ("mariadb-gtid:0-1-42", "GTID 0-1-42"),
        ("mariadb-gtid:", "GTID (none yet)"),
        ("mariadb-gtid:0-1-42,1-2-7,2-3-9", "GTID 0-1-42,1-2-7 +1 domains"),
        (f"mysql-gtid:{UUID_A}:1-5678", "GTID 3e11fa47:1-5678"),
        (f"mysql-gtid:{UUID_A}:1-10:12-20:30,{UUID_B}:1-3", "GTID 3e11fa47:1-30 (2 gaps) +1 server"),
        (f"mysql-gtid:{UUID_A}:blue:1-9", "GTID 3e11fa47:blue:1-9"),
        (_shards(10, 2), "12 shards: 10 open, 2 finished"),
        (_shards(1, 0), "1 shard: 1 open, 0 finished"),
        ("ddb-tip:2024-05-01T12:00:00+00:00", "stream tip at 2024-05-01 12:00:00+00:00"),
        ("ddb-replay:s3://archive/firehose/2024/05/01/events-0001.json.gz", "file events-0001.json.gz"),
    ],
)
def test_positions_are_short_and_readable(position: str | None, shown: str) -> None:
    assert short_position(position) == shown


def test_an_unknown_position_is_shortened_not_dumped() -> None:
    shown = short_position("future-kind:" + "x" * 500)
    assert len(shown) == 40 and shown.endswith("…")


def test_next_steps_say_where_the_lake_is_and_what_to_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LAKEHOUSE_MARIADB_PORT", "23306")
    monkeypatch.setenv("LAKEHOUSE_AURORA_MYSQL_PASSWORD", "never-printed")
    monkeypatch.delenv("LAKEHOUSE_CONFIG", raising=False)
    config = parse_config({"lake": {"root": "my-lake"}})
    text = next_steps(config, "conf/other.toml")
    lakehouse = shlex.quote(str(Path(sys.executable).parent / "lakehouse"))
    lakehouse += f" --config {tmp_path / 'conf' / 'other.toml'}"
    assert f"The lake is at {tmp_path / 'my-lake'}\n" in text
    assert f"(from {tmp_path})" in text
    for command in (
        f"{lakehouse} show --sample 3",
        f'{lakehouse} search "danish"',
        f"{lakehouse} query --use-case cost_of_care_per_plan_month",
    ):
        assert f"\n  {command} " in text
    dagster = next(line for line in text.splitlines() if "dagster dev" in line)
    assert "LAKEHOUSE_MARIADB_PORT=23306" in dagster
    assert f"LAKEHOUSE_CONFIG={tmp_path / 'conf' / 'other.toml'}" in dagster
    assert f"DAGSTER_HOME={tmp_path / '.dagster_home'}" in dagster
    assert dagster.rstrip().endswith("dev -m dagster_project.definitions")
    assert f"mkdir -p {tmp_path / '.dagster_home'}" in text and "http://127.0.0.1:3000" in text
    assert "stack down`" in text and "never-printed" not in text


def test_next_steps_offer_publish_when_the_demo_did_not_publish(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in [k for k in os.environ if k.startswith("LAKEHOUSE_")]:
        monkeypatch.delenv(name)
    (tmp_path / "lakehouse.toml").write_text("")
    text = next_steps(parse_config({}), None, searched=False, published=False)
    assert " --config" not in text and "search" not in text and "--use-case" not in text
    assert " publish " in text
    dagster = next(line for line in text.splitlines() if "dagster dev" in line)
    assert dagster.strip().startswith(f"DAGSTER_HOME={tmp_path / '.dagster_home'} ")
