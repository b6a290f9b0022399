"""A chunked initial snapshot killed again and again resumes from its last committed chunk.

The table starts with 30,000 rows, read in chunks of 100. `lakehouse sync --once` dies right after
the snapshot's first commit (the low watermark); then a writer thread changes the table (inserts,
updates, deletes, 1,000-row transactions) while `lakehouse stream` reads the chunks beside the
stream and is SIGKILLed at random moments and at the commit protocol's named steps. A final
`lakehouse sync --once` finishes. The test requires:
- the snapshot was interrupted mid-way several times (kills while chunks were still missing);
- no chunk was read into the lake twice and none is missing: the chunk rows, in commit order, have
  strictly increasing keys, every seed row the writer never touched is among them, and their count
  is what the chunk commits say;
- every change the writer committed is in the change log exactly once;
- the current state equals the source table row for row.
"""

from __future__ import annotations

import os
import random
import signal
from collections import Counter
from pathlib import Path

import pyarrow.compute as pc
import pytest

from connectors.lake.config import LakeConfig
from connectors.lake.lake import Lake
from tests.crash_support import REPO, catch_up, kill_streams_repeatedly, lakehouse
from tests.pipelines.test_crash import Writer, create_ledger, write_config

SEED_ROWS = 30_000
CHUNK_ROWS = 100


@pytest.mark.slow
@pytest.mark.parametrize("server", ["mariadb", "mysql8", "postgres"])
def test_killed_snapshot_resumes_from_its_last_chunk_under_writes(
    server: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    db = request.getfixturevalue({"mariadb": "mysql_db", "mysql8": "mysql8_db", "postgres": "pg_db"}[server])
    kind = "postgres" if server == "postgres" else "mysql"
    admin = create_ledger(db, kind, SEED_ROWS)
    config = write_config(
        tmp_path / "lakehouse.toml", db, tmp_path / "lake", kind, name="snap", chunk_rows=CHUNK_ROWS
    )
    env = {**os.environ, "CRASH_PW": db.cdc_password.get_secret_value(), "PYTHONPATH": str(REPO)}
    lake = Lake(LakeConfig(root=str(tmp_path / "lake")))
    source = f"snap_{kind}"
    commits = lake.commit_log(source)

    # The snapshot's first commit fixes the low watermark; the run dies right after it.
    first = lakehouse(config, "sync", "--once", env={**env, "LAKEHOUSE_CRASH_AT": "published"})
    assert first.wait(timeout=120) == -signal.SIGKILL
    begun = commits.latest()
    assert begun is not None and begun.seq == 1 and begun.kind == "snapshot" and begun.snapshots

    def under_way() -> bool:
        latest = commits.latest()
        return latest is not None and bool(latest.snapshots)

    interrupted: list[int] = []  # chunks committed at each kill that left the snapshot unfinished

    def count_interruption() -> None:
        latest = commits.latest()
        if latest is not None and latest.snapshots:
            interrupted.append(next(iter(latest.snapshots.values())).chunks)

    writer = Writer(db.admin_connect, kind, first_id=SEED_ROWS + 1, seed=11)
    writer.start()
    try:
        # Kill streams until the snapshot is done. A run reads a chunk in milliseconds, so it
        # dies at a commit-protocol step with a small probability each time it passes one (a
        # chunk passes several): every run commits a few chunks at most.
        kills = kill_streams_repeatedly(
            config, env, random.Random(5), until=lambda: not under_way(), after_kill=count_interruption,
            points=["staged", "committed", "published"], probability=0.05,
        )  # fmt: skip
    finally:
        writer.stop.set()
        writer.join(timeout=30)
    assert writer.error is None, writer.error
    assert len(set(interrupted)) >= 3, (
        f"the snapshot was interrupted at chunks {interrupted}; kills {dict(kills)}"
    )
    catch_up(config, env)
    assert not under_way()

    table = f"{db.name if kind == 'mysql' else 'public'}__ledger"
    records = [commits.read(n) for n in range(1, commits.latest_seq() + 1)]
    chunk_commits = [r for r in records if r.kind == "chunk"]
    log = lake.read_changelog(source, table).sort_by("_seq")
    from_chunks = log.filter(pc.less(log["_seq"], 2 << 32))  # rows of the snapshot begun by commit 1
    assert from_chunks.num_rows == sum(r.rows for r in chunk_commits)
    keys = from_chunks["id"].to_pylist()
    assert all(a < b for a, b in zip(keys, keys[1:], strict=False)), "a key was read into the lake twice"
    untouched = set(range(1, SEED_ROWS + 1)) - writer.touched
    assert untouched <= set(keys), f"{len(untouched - set(keys))} untouched seed rows are in no chunk"

    streamed = log.filter(pc.greater_equal(log["_seq"], 2 << 32))
    assert dict(Counter(streamed["Op"].to_pylist())) == dict(writer.counts), f"kills {dict(kills)}"
    inserted = pc.filter(streamed["id"], pc.equal(streamed["Op"], "I")).to_pylist()
    assert len(inserted) == len(set(inserted))

    with admin.cursor() as cur:
        cur.execute("SELECT id, n, note, amount FROM ledger ORDER BY id")
        expected = [tuple(r) for r in cur.fetchall()]
    state = lake.current(source).read(table).sort_by("id")
    got = list(zip(*(state[c].to_pylist() for c in ("id", "n", "note", "amount")), strict=True))
    assert got == expected
