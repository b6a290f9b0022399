"""`lakehouse stream` stands by for a held lease without touching the source."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from connectors.lake.config import LakeConfig
from connectors.lake.lake import Lake
from connectors.mysql.config import MySQLSourceConfig
from pipelines.capture import runner


def test_a_standby_stream_opens_its_source_only_once_it_holds_the_lease(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A standby may wait for days: it must hold no connection or replication slot meanwhile."""
    lake = Lake(LakeConfig(root=str(tmp_path / "lake")))
    config = MySQLSourceConfig(
        name="standby",
        host="127.0.0.1",
        port=1,
        user="u",
        password="p",
        database="d",
        tables=("t",),
        server_id=7,
    )
    opened = threading.Event()

    class Opened(Exception):
        pass

    def open_source(cfg: Any) -> Any:
        opened.set()
        raise Opened(cfg.name)

    monkeypatch.setattr(runner, "open_source", open_source)
    holder = lake.lease("standby", "another stream")
    holder.acquire()
    stop, errors = threading.Event(), []
    reports: list[runner.SyncReport] = []

    def stream() -> None:
        try:
            reports.append(runner.stream_configured(lake, config, stop=stop))
        except BaseException as e:
            errors.append(e)

    first = threading.Thread(target=stream)
    first.start()
    time.sleep(1.5)
    assert first.is_alive() and not opened.is_set() and not errors  # standing by, source untouched
    stop.set()
    first.join(30)
    assert not first.is_alive() and not opened.is_set() and not errors
    assert reports[0].commits == 0
    stop.clear()
    holder.release()
    second = threading.Thread(target=stream)
    second.start()
    second.join(30)
    assert opened.is_set() and [type(e) for e in errors] == [Opened]  # opened once the lease was free
