"""moto server: one local HTTP endpoint emulating S3, DynamoDB (+Streams), Glue and Secrets Manager."""

from __future__ import annotations

import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from devstack.base import (
    DevstackError,
    InstallError,
    PidFileService,
    ServiceStartError,
    pid_alive,
    run_command,
    start_detached,
    tail,
    terminate,
    wait_for_port,
)
from devstack.settings import StackSettings

__all__ = ["MotoService"]

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0


class MotoService(PidFileService):
    """``python -m moto.server`` from the project venv, detached, on 127.0.0.1:<moto_port>.

    All state lives in memory: a restart empties every bucket and table.
    """

    name = "moto"
    process = "moto server"
    scheme = "http"
    stop_timeout = STOP_TIMEOUT_S

    def __init__(self, settings: StackSettings) -> None:
        """Bind the service to the stack settings; nothing is touched until a method runs."""
        self.settings = settings
        self.base = settings.service_dir(self.name)
        self.pid_file = self.base / "moto.pid"
        self.data_dir = self.base  # no data dir of its own: the state is in memory
        self.log = self.base / "moto.log"

    @property
    def python(self) -> Path:
        """Interpreter with moto[server]: the project venv, else the current one."""
        venv = self.settings.repo_dir / ".venv" / "bin" / "python"
        return venv if venv.exists() else Path(sys.executable)

    # ------------------------------------------------------------------ protocol

    def install(self) -> None:
        """Check that moto[server] imports; pip installs are scripts/bootstrap.sh's job."""
        try:
            run_command(
                [self.python, "-c", "import moto.server, flask"], what="import moto.server", timeout=120
            )
        except DevstackError as exc:
            raise InstallError(
                f"moto[server] is not importable by {self.python}; run scripts/bootstrap.sh ({exc})"
            ) from exc

    def init(self) -> None:
        """Create the service directory (moto keeps no data on disk)."""
        self.base.mkdir(parents=True, exist_ok=True)

    def start(self) -> None:
        """Start moto detached and wait until /moto-api/ answers."""
        if self.is_running():
            return
        self.pid_file.unlink(missing_ok=True)
        host, port = self.settings.host, self.settings.moto_port
        self._claim_port()
        pid = start_detached(
            [self.python, "-m", "moto.server", "-H", host, "-p", str(port)], log_path=self.log, cwd=self.base
        )
        self.pid_file.write_text(f"{pid}\n")
        try:
            wait_for_port(host, port, timeout=START_TIMEOUT_S, pid=pid, what="moto server")
            self._wait_http(pid)
        except DevstackError as exc:
            terminate(pid, timeout=STOP_TIMEOUT_S, what="moto server")
            self.pid_file.unlink(missing_ok=True)
            raise ServiceStartError(f"{exc}\n--- {self.log} ---\n{tail(self.log)}") from exc

    def _owns(self, cmdline: str) -> bool:
        return "moto.server" in cmdline

    def _port(self) -> int:
        return self.settings.moto_port

    def _wait_http(self, pid: int) -> None:
        url = f"{self.settings.moto_endpoint}/moto-api/"
        deadline = time.monotonic() + START_TIMEOUT_S
        last = ""
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                raise ServiceStartError(f"moto server (pid {pid}) exited during start-up")
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    if resp.status == 200:
                        return
                    last = f"HTTP {resp.status}"
            except (urllib.error.URLError, OSError) as exc:
                last = str(exc)
            time.sleep(0.2)
        raise ServiceStartError(f"moto server did not answer {url} within {START_TIMEOUT_S:.0f}s ({last})")
