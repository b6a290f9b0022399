"""Session settings the world's writers need on the connections they are handed."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from pipelines.world.schema import WorldError


def check_mysql_connection(conn: Any) -> None:
    """Refuse a PyMySQL connection that cannot carry 4-byte UTF-8 (names like 𠮷田 need utf8mb4)."""
    charset = getattr(conn, "charset", None)
    if charset is not None and charset != "utf8mb4":
        raise WorldError(f"the MySQL connection uses charset {charset!r}; connect with charset='utf8mb4'")


@contextlib.contextmanager
def mysql_utc_session(conn: Any) -> Iterator[None]:
    """Run the block with session time_zone '+00:00', then restore the caller's setting.

    TIMESTAMP columns convert from the session zone on write; pinning it to UTC makes the naive
    UTC values the world passes mean the same instant on every server (Aurora defaults to UTC too).
    """
    check_mysql_connection(conn)
    with conn.cursor() as cur:
        cur.execute("SELECT @@session.time_zone")
        previous = cur.fetchone()[0]
        cur.execute("SET time_zone = '+00:00'")
    try:
        yield
    finally:
        # The connection may already be closed after an interrupted transaction.
        if getattr(conn, "open", True):
            with contextlib.suppress(Exception), conn.cursor() as cur:
                cur.execute("SET time_zone = %s", (previous,))


@contextlib.contextmanager
def transactional(conn: Any) -> Iterator[None]:
    """Run the block with autocommit off (so commit/rollback mean something), then restore it.

    Works for PyMySQL (``get_autocommit()``/``autocommit(bool)``) and psycopg2 (the ``autocommit``
    attribute). Callers hand in idle connections; neither driver lets autocommit change mid-transaction.
    """
    if callable(getattr(conn, "get_autocommit", None)):  # PyMySQL
        previous = bool(conn.get_autocommit())
        if previous:
            conn.autocommit(False)
        try:
            yield
        finally:
            if previous and getattr(conn, "open", True):
                with contextlib.suppress(Exception):
                    conn.autocommit(True)
        return
    previous = bool(conn.autocommit)  # psycopg2
    if previous:
        conn.autocommit = False
    try:
        yield
    finally:
        if previous and not getattr(conn, "closed", False):
            with contextlib.suppress(Exception):
                conn.rollback()  # nothing should be open; never leave a transaction behind
                conn.autocommit = True
