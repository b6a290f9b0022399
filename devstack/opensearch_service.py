"""A real single-node OpenSearch 2.19 server, built from Maven Central jars (Amazon OpenSearch stand-in).

There is no tarball or Docker image on the dev boxes, only Maven Central, so ``install`` copies the
server's jars with Maven and compiles the small launcher in ``devstack/opensearch/`` into
``<stack>/opensearch/lib`` once (a stamp file holds a hash of the pom and the Java sources, so an
edit to either rebuilds). ``start`` runs the launcher as its own detached JVM with everything under
``<stack>/opensearch/``: ``config/`` (``log4j2.properties`` and ``analyzers/`` for synonym files,
the same ``analyzers/<package id>`` path Amazon OpenSearch Service gives custom packages), ``data/``,
``logs/`` and ``tmp/``. The node also serves ``POST /_plugins/_refresh_search_analyzers/<index>``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from devstack.base import (
    DevstackError,
    InstallError,
    PidFileService,
    ServiceStartError,
    ensure_apt_packages,
    pid_alive,
    service_env,
    start_detached,
    tail,
    terminate,
)
from devstack.settings import StackSettings

__all__ = ["OpenSearchBuildError", "OpenSearchService", "run_build_step"]

LAUNCHER_CLASS = "lakehouse.devstack.opensearch.Launcher"
LAUNCHER_JAR = "devstack-opensearch-launcher.jar"
START_TIMEOUT_S = 120.0
# A node answering red this long is up; what stays red is some indices, reported by name.
RED_GRACE_S = 20.0
# SIGTERM runs the launcher's shutdown hook (node.close(), bounded at 20 s inside); then SIGKILL.
STOP_TIMEOUT_S = 30.0
BUILD_STEP_TIMEOUT_S = 1200.0
# 2 cores / 24 GB machines run this beside MariaDB, PostgreSQL and moto: keep the heap modest.
HEAP_OPTIONS = ("-Xms512m", "-Xmx768m")
# The parts of OpenSearch's own system JVM options (SystemJvmOptions, 2.x) that matter embedded:
# log4j must not close itself before the node's shutdown hook has logged, Netty must not use
# Unsafe/direct arenas the server does not expect, and 2.x parses dates with the COMPAT locales.
SYSTEM_JVM_OPTIONS = (
    "-Dlog4j.shutdownHookEnabled=false",
    "-Dlog4j2.disable.jmx=true",
    "-Djava.locale.providers=SPI,COMPAT",
    "-Dfile.encoding=UTF-8",
    "-Djava.awt.headless=true",
    "-Djna.nosys=true",
    "-XX:-OmitStackTraceInFastThrow",
    "-Dio.netty.noUnsafe=true",
    "-Dio.netty.noKeySetOptimization=true",
    "-Dio.netty.recycler.maxCapacityPerThread=0",
    "-Dio.netty.allocator.numDirectArenas=0",
    "-XX:+ExitOnOutOfMemoryError",  # a dev node out of heap should die and be restarted, not limp on
)


class OpenSearchBuildError(InstallError):
    """A step of the one-off OpenSearch build (mvn, javac, jar) failed; the message has its output."""


def run_build_step(
    cmd: Sequence[str | Path], *, cwd: Path, log: Path, timeout: float = BUILD_STEP_TIMEOUT_S
) -> None:
    """Run one build command, appending its combined output to ``log``.

    Raises :class:`OpenSearchBuildError` naming the command, its exit code and the tail of its
    output (Maven prints its ``[ERROR]`` lines on stdout, so both streams are kept together).
    """
    args = [str(c) for c in cmd]
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as fh:
        fh.write(f"\n$ {' '.join(args)}\n")
        fh.flush()
        try:
            proc = subprocess.run(
                args,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=fh,
                stderr=subprocess.STDOUT,
                env=service_env(),
                timeout=timeout,
                check=False,
            )
        except FileNotFoundError as exc:
            raise OpenSearchBuildError(f"`{args[0]}` not found (needed to build OpenSearch)") from exc
        except subprocess.TimeoutExpired as exc:
            raise OpenSearchBuildError(
                f"`{' '.join(args)}` timed out after {timeout:.0f}s\n--- {log} ---\n{tail(log, 25)}"
            ) from exc
    if proc.returncode != 0:
        raise OpenSearchBuildError(
            f"`{' '.join(args)}` failed (exit {proc.returncode})\n--- {log} ---\n{tail(log, 25)}"
        )


class OpenSearchService(PidFileService):
    """Single-node OpenSearch under ``<stack>/opensearch`` on 127.0.0.1:<opensearch_port> (HTTP only)."""

    name = "opensearch"
    process = "opensearch"
    scheme = "http"
    stop_timeout = STOP_TIMEOUT_S

    def __init__(self, settings: StackSettings) -> None:
        """Bind the service to the stack settings; nothing is touched until a method runs."""
        self.settings = settings
        self.source_dir = settings.repo_dir / "devstack" / "opensearch"
        self.base = settings.service_dir(self.name)
        self.config_dir = self.base / "config"
        self.analyzers_dir = self.config_dir / "analyzers"
        self.data_dir = self.base / "data"
        self.logs_dir = self.base / "logs"
        self.tmp_dir = self.base / "tmp"
        self.lib_dir = self.base / "lib"
        self.build_dir = self.base / "build"
        self.stamp = self.base / "build.stamp"
        self.build_log = self.base / "build.log"
        self.pid_file = self.base / "opensearch.pid"
        self.log = self.base / "opensearch.log"

    # ------------------------------------------------------------------ protocol

    def install(self) -> None:
        """Install a JDK and Maven when missing, then build the classpath unless the stamp is current."""
        missing = [tool for tool in ("java", "javac", "jar", "mvn") if shutil.which(tool) is None]
        ensure_apt_packages(["openjdk-17-jdk-headless", "maven"], missing)
        if not self.is_built():
            self.build()

    def init(self) -> None:
        """Create the node's directories and refresh ``config/log4j2.properties`` from the repo."""
        for path in (self.analyzers_dir, self.data_dir, self.logs_dir, self.tmp_dir):
            path.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.source_dir / "log4j2.properties", self.config_dir / "log4j2.properties")

    def start(self) -> None:
        """Start the JVM detached and wait until the cluster health is yellow or green."""
        if self.is_running():
            return
        self.pid_file.unlink(missing_ok=True)  # stale after a kill -9; the data-dir lock died with it
        self._claim_port()
        pid = start_detached(self.command(), log_path=self.log, cwd=self.base)
        self.pid_file.write_text(f"{pid}\n")
        try:
            self._wait_healthy(pid)
        except DevstackError as exc:
            terminate(pid, timeout=STOP_TIMEOUT_S, what="opensearch")
            self.pid_file.unlink(missing_ok=True)
            raise ServiceStartError(f"{exc}\n--- {self.log} ---\n{tail(self.log, 25)}") from exc

    # ------------------------------------------------------------------ build

    def fingerprint(self) -> str:
        """sha256 over the pom and the Java sources: what the built classpath depends on."""
        digest = hashlib.sha256()
        inputs = [self.source_dir / "pom.xml", *sorted((self.source_dir / "src").rglob("*.java"))]
        for path in inputs:
            digest.update(str(path.relative_to(self.source_dir)).encode() + b"\0" + path.read_bytes() + b"\0")
        return digest.hexdigest()

    def is_built(self) -> bool:
        """True when ``lib/`` holds a build of the current sources (per the stamp file)."""
        try:
            stamped = self.stamp.read_text().strip()
        except OSError:
            return False
        return stamped == self.fingerprint() and (self.lib_dir / LAUNCHER_JAR).is_file()

    def build(self) -> None:
        """Copy the runtime jars with Maven and compile the launcher into a fresh ``lib/``.

        Everything is built in ``build/`` and swapped in at the end, so an interrupted or failed
        build leaves the previous ``lib/`` (or none) and no stamp: the next ``up`` starts over.
        """
        shutil.rmtree(self.build_dir, ignore_errors=True)
        self.base.mkdir(parents=True, exist_ok=True)
        self.stamp.unlink(missing_ok=True)
        self.build_log.write_text(f"OpenSearch build, sources {self.source_dir}\n")
        fingerprint = self.fingerprint()
        new_lib, classes = self.build_dir / "lib", self.build_dir / "classes"
        # -Ddevstack.build.dir keeps Maven's target/ out of the source tree.
        mvn: list[str | Path] = ["mvn", "-q", "-B", "-Dstyle.color=never", "-f", self.source_dir / "pom.xml"]
        mvn += [f"-Ddevstack.build.dir={self.build_dir / 'target'}", "dependency:copy-dependencies"]
        mvn += [f"-DoutputDirectory={new_lib}", "-DincludeScope=runtime"]
        run_build_step(mvn, cwd=self.source_dir, log=self.build_log)
        sources = sorted((self.source_dir / "src" / "main" / "java").rglob("*.java"))
        javac: list[str | Path] = [
            "javac",
            "--release",
            "17",
            "-encoding",
            "UTF-8",
            "-d",
            classes,
            "-cp",
            f"{new_lib}/*",
        ]
        run_build_step([*javac, *sources], cwd=self.source_dir, log=self.build_log)
        jar: list[str | Path] = ["jar", "--create", "--file", new_lib / LAUNCHER_JAR, "-C", classes, "."]
        run_build_step(jar, cwd=self.source_dir, log=self.build_log)
        old_lib = self.base / "lib.old"
        shutil.rmtree(old_lib, ignore_errors=True)
        if self.lib_dir.exists():
            self.lib_dir.rename(old_lib)
        new_lib.rename(self.lib_dir)
        shutil.rmtree(old_lib, ignore_errors=True)
        shutil.rmtree(self.build_dir, ignore_errors=True)
        self.stamp.write_text(f"{fingerprint}\n")

    # ------------------------------------------------------------------ internals

    def command(self) -> list[str]:
        """The java command line: heap, system properties, classpath, launcher and node settings."""
        node_settings = {
            "path.home": self.base,
            "path.data": self.data_dir,
            "path.logs": self.logs_dir,
            "cluster.name": "lakehouse-devstack",
            "network.host": self.settings.host,
            "http.port": self.settings.opensearch_port,
            # Ephemeral transport port: nothing talks to it, and two stacks on one box cannot clash.
            "transport.port": 0,
            "discovery.type": "single-node",
            # A nearly full dev disk must not leave new shards unassigned.
            "cluster.routing.allocation.disk.threshold_enabled": "false",
        }
        return [
            "java",
            *HEAP_OPTIONS,
            *SYSTEM_JVM_OPTIONS,
            f"-Djava.io.tmpdir={self.tmp_dir}",
            f"-XX:ErrorFile={self.logs_dir}/hs_err_pid%p.log",
            "-cp",
            f"{self.lib_dir}/*",
            LAUNCHER_CLASS,
            "--config-dir",
            str(self.config_dir),
            *(f"-E{key}={value}" for key, value in node_settings.items()),
        ]

    def _owns(self, cmdline: str) -> bool:
        # Both checks: a recycled pid, or the launcher of another stack dir, is not ours.
        return LAUNCHER_CLASS in cmdline and f"-Epath.home={self.base} " in f"{cmdline} "

    def _port(self) -> int:
        return self.settings.opensearch_port

    def _stopped_note(self) -> str:
        return "" if self.is_built() else "no build of the current sources; up builds it"

    def _wait_healthy(self, pid: int) -> None:
        """Wait for yellow; a node that answers but stays red only because of some indices is up.

        An index whose analyzer cannot load (its synonyms file deleted, say) stays red forever;
        that must not keep the whole stack down, so after RED_GRACE_S of red answers the node
        counts as started and the red indices are named on stderr with the way to remove them.
        """
        url = f"{self.settings.opensearch_endpoint}/_cluster/health?wait_for_status=yellow&timeout=2s"
        deadline = time.monotonic() + START_TIMEOUT_S
        last = "no answer yet"
        red_since: float | None = None
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                raise ServiceStartError(f"opensearch JVM (pid {pid}) exited during start-up")
            try:
                with urllib.request.urlopen(url, timeout=5) as resp:
                    if resp.status == 200:
                        return
                    last = f"HTTP {resp.status}"
            except urllib.error.HTTPError as exc:  # 408 while the status is still red
                last = f"HTTP {exc.code}"
                if exc.code == 408:
                    red_since = red_since if red_since is not None else time.monotonic()
                    if time.monotonic() - red_since > RED_GRACE_S and self._report_red_indices():
                        return
            except (urllib.error.URLError, OSError) as exc:
                last = str(exc)
            time.sleep(0.3)
        raise ServiceStartError(
            f"opensearch did not report yellow at {url} within {START_TIMEOUT_S:.0f}s ({last})"
        )

    def _report_red_indices(self) -> bool:
        """Name the red indices on stderr; False when none is red (the node itself is not ready)."""
        url = f"{self.settings.opensearch_endpoint}/_cat/indices?health=red&h=index&format=json"
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                red = sorted(row["index"] for row in json.load(resp))
        except (urllib.error.URLError, OSError, ValueError, KeyError):
            return False
        if not red:
            return False
        print(
            f"opensearch is up, but {len(red)} index(es) cannot be opened: {', '.join(red)}. "
            f"Their shards failed to allocate (often a synonyms file under {self.analyzers_dir} "
            f"was removed); see {self.log}. Delete them with: "
            f"curl -X DELETE '{self.settings.opensearch_endpoint}/<index>'",
            file=sys.stderr,
        )
        return True
