"""The people-index world as a fixture (tests/search/people_world.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.search.people_world import World


@pytest.fixture
def world(mysql_db: Any, pg_db: Any, stack: Any, tmp_path: Path) -> Iterator[World]:
    w = World(mysql_db, pg_db, stack, tmp_path)
    yield w
    for name in w.client.indices.get(index=f"{w.alias}*"):
        w.client.indices.delete(index=name)
    w.package.unlink(missing_ok=True)
