"""Binlog positions: MariaDB GTID positions and MySQL 8 / Aurora MySQL GTID sets."""

from __future__ import annotations

import pytest

from connectors.mysql.offset import MariaGtid, MariaGtidPosition, MySQLGtid, MySQLGtidSet
from connectors.offsets import OffsetError, parse_offset

A = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
B = "9f0bb25e-aa01-11ee-8c90-0242ac120002"


def test_mariadb_positions_order_per_domain_and_round_trip() -> None:
    p = MariaGtidPosition.parse("1-2-7, 0-1-42")
    assert str(p) == "0-1-42,1-2-7" and parse_offset(p.serialize()) == p
    assert (
        p.contains(MariaGtid(0, 9, 42))
        and not p.contains(MariaGtid(0, 1, 43))
        and not p.contains(MariaGtid(5, 1, 1))
    )
    assert MariaGtidPosition.parse("0-1-41") < p and not p <= MariaGtidPosition.parse("0-1-42")
    assert p.advance(MariaGtid(0, 1, 43)) == MariaGtidPosition.parse("0-1-43,1-2-7")
    with pytest.raises(OffsetError, match="names a domain twice"):
        MariaGtidPosition.parse("0-1-1,0-2-2")


def test_mysql_gtid_sets_parse_what_gtid_executed_prints() -> None:
    text = f"{B}:1-3,\n{A}:11-18:1-5:6-9,{A}:tag_a:1-2"
    s = MySQLGtidSet.parse(text)
    assert str(s) == f"{A}:1-9:11-18,{A}:tag_a:1-2,{B}:1-3"
    assert parse_offset(s.serialize()) == s
    assert s.contains(MySQLGtid(A, 9)) and not s.contains(MySQLGtid(A, 10))
    assert s.contains(MySQLGtid(f"{A}:tag_a", 2)) and not s.contains(MySQLGtid(B, 4))
    assert MySQLGtidSet.parse("") == MySQLGtidSet()


def test_mysql_gtid_sets_order_by_inclusion_and_advance() -> None:
    small = MySQLGtidSet.parse(f"{A}:1-5")
    big = MySQLGtidSet.parse(f"{A}:1-9,{B}:1")
    assert small <= big and small < big and not big <= small
    other = MySQLGtidSet.parse(f"{B}:1-3")
    assert not small <= other and not other <= small  # unrelated histories: neither contains the other
    assert small.advance(MySQLGtid(A, 6)) == MySQLGtidSet.parse(f"{A}:1-6")
    assert small.advance(MySQLGtid(A, 8)) == MySQLGtidSet.parse(f"{A}:1-5:8")
    # A new writer's UUID (failover) joins the set; the old UUID's history is kept.
    failed_over = small.advance(MySQLGtid(B.upper(), 1))
    assert failed_over.contains(MySQLGtid(B, 1)) and small < failed_over
    assert MySQLGtid.parse(f"{A.upper()}:42") == MySQLGtid(A, 42) and str(MySQLGtid(A, 42)) == f"{A}:42"


@pytest.mark.parametrize("bad", ["not-a-uuid:1-3", f"{A}:5-3", f"{A}:0", f"{A}:x-y", f"{A}:1-3:Bad-Tag"])
def test_bad_gtid_sets_are_named(bad: str) -> None:
    with pytest.raises(OffsetError, match="not a MySQL GTID set"):
        MySQLGtidSet.parse(bad)
