"""Fake DynamoDB Streams for tests and benchmarks: shards split, iterators expire, records trim.

The model lives in ``ddb_streams_model`` and the HTTP front end in ``ddb_streams_server``; this
module re-exports both and runs the fake in its own process, so a benchmark's reader does not share
a GIL with the server it reads from (the machine has 2 cores):

    python -m tests.fakes.ddb_streams serve --port 0 --synthetic-records 100000 --shards 4

prints one JSON line ``{"endpoint_url": ..., "stream_arn": ...}`` when ready and serves until
SIGTERM/SIGINT. ``start_in_subprocess`` does that and parses the line.
"""

from __future__ import annotations

import argparse
import json
import selectors
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType

from tests.fakes.ddb_streams_model import (
    ExpiredIteratorError,
    FakeStreams,
    FakeUsageError,
    Item,
    KeyTuple,
    LimitExceededError,
    RequestValidationError,
    ResourceNotFoundError,
    StreamsError,
    TrimmedDataAccessError,
)
from tests.fakes.ddb_streams_server import FakeStreamsServer, service_model, validate_request, wire_errors

__all__ = [
    "ExpiredIteratorError",
    "FakeStreams",
    "FakeStreamsServer",
    "FakeUsageError",
    "Item",
    "KeyTuple",
    "LimitExceededError",
    "RequestValidationError",
    "ResourceNotFoundError",
    "StreamsError",
    "TrimmedDataAccessError",
    "seed_stream",
    "service_model",
    "start_in_subprocess",
    "synthetic_item",
    "validate_request",
    "wire_errors",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
MODIFY_SHARE = 5  # every 5th synthetic record re-puts an earlier key, so MODIFY records carry OldImage


def synthetic_item(i: int) -> Item:
    """A varied 11-attribute item; record ``i`` updates item ``i - MODIFY_SHARE`` when i % 5 == 4."""
    key = i - 1 if i % MODIFY_SHARE == MODIFY_SHARE - 1 else i
    return {
        "pk": {"S": f"device#{key:09d}"},
        "version": {"N": str(i)},
        "name": {"S": f"Gerät Nº{i} — naïve ☃"},
        "amount": {"N": f"{i * 7919 % 100000}.{i % 100:02d}"},
        "active": {"BOOL": i % 2 == 0},
        "seen_at": {"S": f"2024-0{1 + i % 9}-1{i % 10}T12:34:56.{i % 1000:03d}Z"},
        "tags": {"SS": ["a", f"t{i % 13}"]},
        "attrs": {"M": {"fw": {"S": f"1.{i % 7}"}, "temp": {"N": str(i % 40 - 10)}}},
        "readings": {"L": [{"N": str(i % 97)}, {"N": "-0.5"}, {"NULL": True}]},
        "blob": {"B": "AAECAwQ="},
        "note": {"NULL": True} if i % 3 else {"S": "x" * (i % 50)},
    }


def seed_stream(model: FakeStreams, records: int, shards: int, table: str = "devices") -> str:
    """Create a stream, split it until ``shards`` shards are open, then seed ``records`` records."""
    arn = model.create_stream(table, "pk")
    while len(model.open_shard_ids(arn)) < shards:
        # The oldest open shard owns the widest key range, so this keeps the shards even.
        model.split(arn, model.open_shard_ids(arn)[0])
    model.seed_synthetic(arn, records, synthetic_item)
    return arn


def start_in_subprocess(
    synthetic_records: int = 0, shards: int = 1, port: int = 0, ready_timeout: float = 300.0
) -> tuple[str, str, subprocess.Popen[bytes]]:
    """Run the fake in a child process; returns (endpoint_url, stream_arn, process). Terminate it when done."""
    cmd = [sys.executable, "-m", "tests.fakes.ddb_streams", "serve", "--port", str(port)]
    cmd += ["--synthetic-records", str(synthetic_records), "--shards", str(shards)]
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        ready = sel.select(ready_timeout)
    line = proc.stdout.readline() if ready else b""
    if not line:
        proc.kill()
        proc.wait()
        raise RuntimeError(f"fake DynamoDB Streams did not start (exit code {proc.returncode})")
    info = json.loads(line)
    return info["endpoint_url"], info["stream_arn"], proc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.ddb_streams", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve one synthetic stream until SIGTERM/SIGINT")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=0)
    serve.add_argument("--synthetic-records", type=int, default=0)
    serve.add_argument("--shards", type=int, default=1, help="open shards to seed into")
    serve.add_argument("--table", default="devices")
    args = parser.parse_args(argv)

    model = FakeStreams()
    started = time.perf_counter()
    arn = seed_stream(model, args.synthetic_records, args.shards, args.table)
    seeded_s = time.perf_counter() - started
    server = FakeStreamsServer(model, args.host, args.port)

    def stop(signum: int, frame: FrameType | None) -> None:
        # shutdown() waits for serve_forever, which runs in this thread: call it from another.
        threading.Thread(target=server.stop, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    ready = {"endpoint_url": server.endpoint_url, "stream_arn": arn, "seed_seconds": round(seeded_s, 3)}
    print(json.dumps(ready), flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
