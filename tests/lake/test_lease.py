"""One writer per source: the lease (take, renew, expire, release) and the fence a takeover
commits, locally and on S3 (moto's conditional writes)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import pytest

from connectors.lake.lease import Lease, LeaseHeldError, LeaseLostError, read_holder
from connectors.lake.storage import Storage
from connectors.lake.writer import LakeWriter
from tests.conftest import S3Lake
from tests.lake.helpers import changes, snapshot_batch, stream_batch


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path) -> Storage:  # type: ignore[no-untyped-def]
    if request.param == "local":
        return Storage(str(tmp_path / "lake"))
    s3 = request.getfixturevalue("s3_lake")
    return Storage(s3.root, s3.options)


def test_a_conditional_write_answers_the_version_a_read_then_reports(storage: Storage) -> None:
    """The lease matches each write against the version its previous write answered, never read."""
    path = "_leases/src.json"
    created = storage.put_if_absent(path, b"first")
    assert created is not None and storage.read_versioned(path) == (b"first", created)
    assert storage.put_if_absent(path, b"again") is None
    replaced = storage.put_if_match(path, b"second", created)
    assert replaced is not None and replaced != created
    assert storage.read_versioned(path) == (b"second", replaced)
    assert storage.put_if_match(path, b"stale", created) is None
    assert storage.read_versioned(path) == (b"second", replaced)


def test_taking_a_free_lease_is_two_requests_and_a_renewal_one(s3_lake: S3Lake) -> None:
    """What S3 is asked (each request is a round trip a writer waits for): a renewal does not read
    its own write back."""
    storage = Storage(s3_lake.root, s3_lake.options)
    sent: list[str] = []
    storage.s3_access.client.meta.events.register(
        "before-send.s3", lambda event_name, **_: sent.append(event_name.rsplit(".", 1)[1])
    )
    lease = Lease(storage, "src", what="stream", ttl=30)
    lease.acquire()
    assert sent == ["GetObject", "PutObject"]
    sent.clear()
    lease.renew()
    lease.renew()
    assert sent == ["PutObject", "PutObject"] and lease.held


def test_a_held_lease_is_refused_naming_its_holder_until_released(storage: Storage) -> None:
    first = Lease(storage, "src", what="lakehouse stream", ttl=30)
    first.acquire()
    second = Lease(storage, "src", what="sync --once", ttl=30)
    with pytest.raises(
        LeaseHeldError, match=rf"lakehouse stream on {socket.gethostname()} \(pid \d+\) since"
    ):
        second.acquire(wait=0.3, poll=0.1)
    first.release()
    second.acquire()
    holder = read_holder(storage, "src")
    assert holder is not None and holder.what == "sync --once" and holder.epoch == 2
    assert not second.took_over  # released, not taken over: nothing to fence


def test_a_lease_not_renewed_for_its_ttl_is_taken_over_and_its_holder_stops(storage: Storage) -> None:
    old = Lease(storage, "src", what="old", ttl=0.5)
    old.acquire()
    new = Lease(storage, "src", what="new", ttl=0.5)
    assert new.try_acquire() is not None  # first sight of the holder's version: the clock starts
    time.sleep(0.3)
    assert new.try_acquire() is not None  # unchanged, but not for the TTL yet
    time.sleep(0.3)
    assert new.try_acquire() is None and new.held and new.took_over and new.epoch == 2
    with pytest.raises(LeaseLostError, match="was lost"):
        old.renew()
    with pytest.raises(LeaseLostError):
        old.ensure()


def test_a_renewed_lease_is_never_taken_over(storage: Storage) -> None:
    holder = Lease(storage, "src", what="holder", ttl=0.6)
    holder.acquire()
    holder.start_renewing()
    contender = Lease(storage, "src", what="contender", ttl=0.6)
    try:
        with pytest.raises(LeaseHeldError):
            contender.acquire(wait=2.0, poll=0.1)  # over three TTLs
        holder.ensure()
    finally:
        holder.release()


def test_the_lease_of_an_ended_process_of_this_host_is_taken_at_once(storage: Storage) -> None:
    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    pid = int(ended.stdout)
    body = {
        "owner": "gone", "host": socket.gethostname(), "pid": pid, "started": "1", "what": "killed stream",
        "since": "2026-12-07T00:00:00+00:00", "epoch": 4, "ttl": 3600, "free": False,
    }  # fmt: skip
    assert storage.put_if_absent("_leases/src.json", json.dumps(body).encode())
    lease = Lease(storage, "src", what="restarted stream", ttl=3600)
    lease.acquire()
    assert lease.epoch == 5 and lease.took_over


def test_a_takeover_fences_the_old_writer_before_touching_its_staged_files(storage: Storage) -> None:
    """The old holder, only paused, has a batch staged; the new holder's fence commit takes the
    next seq, so the old one can neither commit it nor, re-reading the log, clear staging."""
    old_lease = Lease(storage, "src", what="old", ttl=0.3)
    old_lease.acquire()
    old = LakeWriter(storage, "src", old_lease)
    old.write(snapshot_batch(10, changes([("I", 10, {"id": 1, "name": "a"})])))
    old.write(stream_batch(10, 20, changes([("I", 15, {"id": 2, "name": "b"})]), complete=False))
    assert old.last_committed().record.lease_epoch == 1  # type: ignore[union-attr]

    new_lease = Lease(storage, "src", what="new", ttl=0.3)
    new_lease.acquire(wait=2.0, poll=0.05)
    assert new_lease.took_over
    new = LakeWriter(storage, "src", new_lease)
    fence = new.last_committed().record
    assert fence is not None and fence.kind == "fence" and fence.seq == 2 and fence.lease_epoch == 2
    assert new.last_committed().offset == old.last_committed().offset  # a fence moves nothing
    new.write(stream_batch(10, 30, changes([("I", 25, {"id": 3, "name": "c"})]), complete=False))

    # The old writer wakes: its lease is gone, so its commit is refused before anything is written.
    with pytest.raises(LeaseLostError):
        old.write(stream_batch(10, 20))  # completes the unit it staged before the takeover
    with pytest.raises(LeaseLostError, match="newer than this writer's 1"):
        old.reload()
    # The new holder's staged unit survived the old writer's attempts.
    record = new.write(stream_batch(30, 40, complete=True))
    assert record is not None and record.seq == 3 and record.rows == 1 and record.lease_epoch == 2
