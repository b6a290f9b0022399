"""`lakehouse stream`'s liveness and readiness (`pipelines.capture.health`): a standby is live but not
ready, the lease holder is ready once it confirmed a position, SIGTERM makes it not ready before it
releases the lease and exits 0."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from connectors.events import Batch
from connectors.lake.config import LakeConfig
from connectors.lake.lake import Lake
from connectors.lake.lease import read_holder
from connectors.postgres.offset import Lsn
from pipelines.capture.health import HealthBoard, HealthServer

REPO = Path(__file__).resolve().parents[2]
SOURCE = "health_mysql"
SERVING = re.compile(r"health: /healthz and /readyz on http://127\.0\.0\.1:(\d+)")


class FakeClock:
    """Monotonic seconds the test moves by hand (staleness without sleeping)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _batch(*, complete: bool) -> Batch:
    at = Lsn(100)
    return Batch(start=at, end=at if complete else None, complete=complete)


def test_standby_capture_staleness_and_stop(tmp_path: Path) -> None:
    lake = Lake(LakeConfig(root=str(tmp_path / "lake")))
    clock, stop = FakeClock(), threading.Event()
    board = HealthBoard(stop, live_seconds=180, ready_seconds=60, clock=clock)
    health = board.stream("src")
    clock.now += 3600  # a standby may wait for days: live, never ready
    assert board.report()["live"] and not board.report()["ready"]
    assert board.report()["streams"]["src"]["state"] == "standby"

    lease = lake.lease("src", "lakehouse stream")
    lease.acquire()
    health.holding(lease)
    assert board.report()["live"] and not board.report()["ready"]  # holds the lease, nothing confirmed yet
    health.batch_done(_batch(complete=False))  # part of a large transaction: progress, no position
    assert not board.report()["ready"]
    health.batch_done(_batch(complete=True))
    assert board.report()["ready"] and board.report()["streams"]["src"]["lease_epoch"] == 1

    clock.now += 61  # no position confirmed for a minute: not ready, still live
    assert board.report()["live"] and not board.report()["ready"]
    health.batch_done(_batch(complete=True))
    assert board.report()["ready"]
    clock.now += 181  # no batch at all for three minutes: the capture loop is stuck
    assert not board.report()["live"]

    health.batch_done(_batch(complete=True))
    lease.release()  # lost (or released) behind the stream's back: not ready
    assert board.report()["streams"]["src"]["state"] == "lease lost" and not board.report()["ready"]

    lease.acquire()
    health.holding(lease)
    health.batch_done(_batch(complete=True))
    assert board.report()["ready"]
    stop.set()  # SIGTERM: not ready at once, live while it stops
    assert board.report()["live"] and not board.report()["ready"] and board.report()["stopping"]
    health.released()
    clock.now += 3600
    assert board.report()["live"] and board.report()["streams"]["src"]["state"] == "stopped"
    lease.release()


def test_every_stream_of_a_process_must_be_ready(tmp_path: Path) -> None:
    lake = Lake(LakeConfig(root=str(tmp_path / "lake")))
    board = HealthBoard(threading.Event())
    first, second = board.stream("a"), board.stream("b")
    lease = lake.lease("a", "lakehouse stream")
    lease.acquire()
    first.holding(lease)
    first.batch_done(_batch(complete=True))
    assert not board.report()["ready"]  # "b" stands by
    assert second is board.stream("b")
    lease.release()


def _get(port: int, path: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read()) if e.code != 404 else {}


def test_the_server_answers_200_or_503_from_the_board() -> None:
    stop = threading.Event()
    board = HealthBoard(stop)
    board.stream("src")
    server = HealthServer(board, "127.0.0.1", 0).start()
    try:
        port = server.address[1]
        assert _get(port, "/healthz")[0] == 200
        code, body = _get(port, "/readyz")
        assert code == 503 and body["streams"]["src"]["state"] == "standby"
        assert _get(port, "/metrics")[0] == 404
    finally:
        server.close()


# -- a real `lakehouse stream` process -------------------------------------------------------------


def _config(path: Path, db: Any, lake: Path) -> Path:
    path.write_text(
        f"""
[lake]
root = "{lake}"

[[sources]]
name = "{SOURCE}"
kind = "mysql"
host = "{db.host}"
port = {db.port}
user = "{db.cdc_user}"
password = "${{HEALTH_PW}}"
database = "{db.name}"
tables = ["people"]
batch_max_seconds = 0.2
"""
    )
    return path


class StreamProcess:
    """`lakehouse stream --source SOURCE --health-port 0`, its stderr read line by line by a thread."""

    def __init__(self, config: Path, env: dict[str, str]) -> None:
        command = [sys.executable, "-m", "pipelines.cli", "--config", str(config), "stream"]
        command += ["--source", SOURCE, "--health-port", "0", "--health-host", "127.0.0.1"]
        self.proc = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.log: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.put(line)

    def wait_for(self, pattern: str, timeout: float = 120.0) -> re.Match[str]:
        """The first stderr line (from now on) matching `pattern`; fails if the process ends first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                assert self.proc.poll() is None, "".join(self.log[-40:])
                continue
            self.log.append(line)
            found = re.search(pattern, line)
            if found:
                return found
        pytest.fail(f"no line matching {pattern!r}:\n{''.join(self.log[-40:])}")

    def finish(self) -> tuple[int, str]:
        """Wait for the exit; its code and stdout (stderr is all in `log` then)."""
        code = self.proc.wait(timeout=120)  # its report on stdout is far below a pipe's buffer
        out = self.proc.stdout.read() if self.proc.stdout else ""
        self.reader.join(timeout=30)
        while not self.lines.empty():
            self.log.append(self.lines.get())
        return code, out


def _ready_within(port: int, proc: StreamProcess, timeout: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        assert proc.proc.poll() is None, "".join(proc.log[-40:])
        code, body = _get(port, "/readyz")
        if code == 200:
            return body
        time.sleep(0.2)
    pytest.fail(f"/readyz never answered 200: {body}")


def test_a_stream_process_stands_by_unready_then_serves_and_stops_on_sigterm(
    tmp_path: Path, mysql_db: Any
) -> None:
    conn = mysql_db.admin_connect()
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE people (id INT PRIMARY KEY, name VARCHAR(40))")
        cur.execute("INSERT INTO people VALUES (1, 'Zoë'), (2, 'Søren')")
    lake = Lake(LakeConfig(root=str(tmp_path / "lake")))
    config = _config(tmp_path / "lakehouse.toml", mysql_db, tmp_path / "lake")
    password = mysql_db.cdc_password.get_secret_value()
    env = {**os.environ, "HEALTH_PW": password, "PYTHONPATH": str(REPO)}

    holder = lake.lease(SOURCE, "another stream")  # the active stream, for as long as the test says
    holder.acquire()
    holder.start_renewing()
    stream = StreamProcess(config, env)
    try:
        port = int(stream.wait_for(SERVING.pattern).group(1))
        stream.wait_for("standing by: the lease is held by another stream")
        live, live_body = _get(port, "/healthz")
        ready, standby_body = _get(port, "/readyz")
        assert (live, ready) == (200, 503)
        assert standby_body["streams"][SOURCE]["state"] == "standby" and not standby_body["ready"]

        holder.release()  # the active stream stops: the standby takes over
        body = _ready_within(port, stream)
        assert body["streams"][SOURCE]["state"] == "capturing"
        assert body["streams"][SOURCE]["lease_epoch"] == 2
        assert _get(port, "/healthz")[0] == 200
        bodies = json.dumps([live_body, standby_body, body])

        stream.proc.send_signal(signal.SIGTERM)
        stream.wait_for("SIGTERM: not ready")
        # From the signal on, readiness is false for as long as the process still answers (a
        # refused or cut connection: it is gone already).
        with contextlib.suppress(OSError, http.client.HTTPException):
            assert _get(port, "/readyz")[0] == 503
        code, out = stream.finish()
    finally:
        if stream.proc.poll() is None:
            stream.proc.kill()
            stream.proc.wait()
        holder.release()
    log = "".join(stream.log)
    assert code == 0, log[-3000:]
    released = read_holder(lake.storage, SOURCE)
    assert released is not None and released.free and released.epoch == 2
    assert log.index("SIGTERM: not ready") < log.index(f"{SOURCE}: stream stopped; releasing the lease")
    for text in (log, out, bodies):
        assert password not in text
