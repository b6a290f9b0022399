"""Spark for the large-table merge path, locally: pyspark in the venv and the Iceberg jars in the stack.

Nothing here runs a service. `install` makes sure ``pyspark==3.5.6`` (Glue 5.1's Spark) imports
and that the jars the local session needs are in ``<stack>/spark/jars``, fetched from Maven
Central over HTTPS and checked against the SHA-256 pinned below (cross-checked with Central's
published ``.sha1`` when they were pinned). A download resumes where an interrupted one stopped
(an HTTP range request on the ``.part`` file) and nothing is fetched twice: a jar is only renamed
into place once its checksum matches, so a jar that is there is a verified one.

The jars:
- the Iceberg runtime for Spark 3.5 and Iceberg's AWS bundle (S3FileIO, the Glue catalog),
  1.10.0 as on Glue 5.1 and EMR 7.13;
- the SQLite JDBC driver, so Iceberg's `JdbcCatalog` opens the catalog file pyiceberg's
  `SqlCatalog` writes (same ``iceberg_tables`` layout);
- Hadoop's S3A connector (``hadoop-aws`` at the Hadoop version pyspark 3.5.6 bundles, 3.3.4, and
  the AWS SDK v1 bundle it was built against): the merge reads the lake's change-log Parquet
  files with Spark's own reader, which reaches ``s3://`` through a Hadoop filesystem (Glue and
  EMR bring theirs; a local session points S3A at moto).

Run ``python -m devstack.spark`` to install and print the jar paths.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devstack.base import InstallError
from devstack.settings import StackSettings, load_settings

__all__ = [
    "ALL_JARS",
    "ICEBERG_JARS",
    "MAVEN_CENTRAL",
    "PYSPARK_VERSION",
    "S3A_JARS",
    "MavenArtifact",
    "SparkInstall",
    "SparkInstallError",
    "ensure_jars",
    "ensure_pyspark",
    "fetch_artifact",
    "install",
    "jars_dir",
]

PYSPARK_VERSION = "3.5.6"
MAVEN_CENTRAL = "https://repo1.maven.org/maven2"
DOWNLOAD_TIMEOUT_S = 60.0
_CHUNK = 1 << 20


class SparkInstallError(InstallError):
    """pyspark or a jar could not be installed; the message says which and why."""


@dataclass(frozen=True, slots=True)
class MavenArtifact:
    """One jar on Maven Central, with the SHA-256 it must have."""

    group: str
    artifact: str
    version: str
    sha256: str

    @property
    def file_name(self) -> str:
        return f"{self.artifact}-{self.version}.jar"

    @property
    def path(self) -> str:
        """The jar's path in a Maven repository."""
        return f"{self.group.replace('.', '/')}/{self.artifact}/{self.version}/{self.file_name}"

    def __str__(self) -> str:
        return f"{self.group}:{self.artifact}:{self.version}"


ICEBERG_JARS = (
    MavenArtifact(
        "org.apache.iceberg",
        "iceberg-spark-runtime-3.5_2.12",
        "1.10.0",
        "70f9471870b2d456167d703c829f098a446b86bb1379eee338c0efa03a341026",
    ),
    MavenArtifact(
        "org.apache.iceberg",
        "iceberg-aws-bundle",
        "1.10.0",
        "172370cfc32a5f1ae5399b210e86fc04a366dc29a112d97ac8ffc74df7525596",
    ),
    MavenArtifact(
        "org.xerial",
        "sqlite-jdbc",
        "3.54.1.0",
        "f8dce420a6016278497f4f0560f65602b9db858de141b541cf91a4644ebe4639",
    ),
)
S3A_JARS = (
    MavenArtifact(
        "org.apache.hadoop",
        "hadoop-aws",
        "3.3.4",
        "53f9ae03c681a30a50aa17524bd9790ab596b28481858e54efd989a826ed3a4a",
    ),
    MavenArtifact(
        "com.amazonaws",
        "aws-java-sdk-bundle",
        "1.12.262",
        "873fe7cf495126619997bec21c44de5d992544aea7e632fdc77adb1a0915bae5",
    ),
)
ALL_JARS = ICEBERG_JARS + S3A_JARS

Opener = Callable[[urllib.request.Request], Any]


@dataclass(frozen=True, slots=True)
class SparkInstall:
    """What a local Spark session needs: the pyspark version that imports and the jar files."""

    pyspark_version: str
    jars: tuple[Path, ...]


def jars_dir(settings: StackSettings) -> Path:
    """Where the stack keeps Spark's jars."""
    return settings.stack_dir / "spark" / "jars"


def install(settings: StackSettings | None = None, python: str | None = None) -> SparkInstall:
    """Install pyspark into `python`'s environment if missing and fetch every jar (idempotent)."""
    settings = settings or load_settings()
    version = ensure_pyspark(python)
    return SparkInstall(version, tuple(ensure_jars(jars_dir(settings))))


def ensure_pyspark(python: str | None = None) -> str:
    """The installed pyspark version, after pip-installing ``pyspark==3.5.6`` if it is not that."""
    python = python or sys.executable
    if python == sys.executable:
        try:
            installed = importlib.metadata.version("pyspark")
        except importlib.metadata.PackageNotFoundError:
            installed = None
        if installed == PYSPARK_VERSION:
            return installed
    command = [python, "-m", "pip", "install", "--disable-pip-version-check", f"pyspark=={PYSPARK_VERSION}"]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-20:])
        raise SparkInstallError(f"pip could not install pyspark=={PYSPARK_VERSION}:\n{tail}")
    return PYSPARK_VERSION


def ensure_jars(directory: Path, artifacts: Sequence[MavenArtifact] = ALL_JARS, **fetch: Any) -> list[Path]:
    """Every artifact's jar in `directory`, downloading those missing (one process at a time)."""
    directory.mkdir(parents=True, exist_ok=True)
    with _locked(directory / ".lock"):
        return [fetch_artifact(a, directory, **fetch) for a in artifacts]


def fetch_artifact(
    artifact: MavenArtifact,
    directory: Path,
    *,
    base_url: str = MAVEN_CENTRAL,
    opener: Opener | None = None,
) -> Path:
    """`artifact`'s jar in `directory`, verified; resumes a partial download from its ``.part``.

    Raises `SparkInstallError` on an HTTP or network error (the partial file stays, to resume)
    and on a checksum mismatch (the partial file is deleted: resuming it would not help).
    """
    target = directory / artifact.file_name
    if target.exists():
        return target  # renamed into place only once verified
    part = target.with_name(target.name + ".part")
    url = f"{base_url.rstrip('/')}/{artifact.path}"
    open_url = opener or (lambda request: urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT_S))
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        with open_url(request) as response:
            status = getattr(response, "status", 200)
            # 206: the server continues the partial file; 200: it sends it all again.
            mode = "ab" if have and status == 206 else "wb"
            with open(part, mode) as out:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:
            pass  # the range starts at the end: the partial file is already whole
        else:
            raise SparkInstallError(f"{artifact}: {url} answered HTTP {e.code} {e.reason}") from e
    except (urllib.error.URLError, OSError) as e:
        raise SparkInstallError(f"{artifact}: downloading {url} failed ({e}); run again to resume") from e
    digest = _sha256(part)
    if digest != artifact.sha256:
        part.unlink(missing_ok=True)
        raise SparkInstallError(
            f"{artifact}: checksum mismatch for {url}: sha256 {digest}, expected {artifact.sha256}"
        )
    os.replace(part, target)
    return target


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on `path`: two installers never write the same ``.part`` file."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def main() -> int:
    try:
        done = install()
    except SparkInstallError as e:
        print(f"devstack spark: {e}", file=sys.stderr)
        return 1
    print(f"pyspark {done.pyspark_version}")
    for jar in done.jars:
        print(jar)
    return 0


if __name__ == "__main__":
    sys.exit(main())
