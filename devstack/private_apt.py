"""apt-get and apt-cache with a private configuration: packages from another suite of the system's
own Debian mirror, without touching the system's apt state (devstack/mysql8.py uses it for sid).

The mirror and its keyring are read from the system's apt sources (deb822 ``*.sources`` or
one-line ``*.list``); sources, lists, cache and dpkg status all live under one folder.
"""

from __future__ import annotations

import os
import pwd
import re
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from devstack.base import InstallError, run_command, service_env
from devstack.package_lock import _say, run_apt

__all__ = ["AptSource", "PrivateApt", "parse_apt_sources", "pick_debian_mirror", "system_mirror"]

APT_TIMEOUT_S = 1800.0
APT_LOCK_TIMEOUT_S = 300.0


# --------------------------------------------------------------------------- the Debian mirror


@dataclass(frozen=True)
class AptSource:
    """One ``deb`` entry of the system's apt sources: a mirror URI, its suites and keyring."""

    uri: str
    suites: tuple[str, ...]
    signed_by: Path | None


def parse_apt_sources(path: Path, text: str) -> list[AptSource]:
    """The enabled ``deb`` entries of one sources file (deb822 ``*.sources`` or one-line ``*.list``).

    Only a Signed-By that names a keyring file is kept; an inline key block counts as none.
    """
    if path.suffix == ".sources":
        return [s for stanza in re.split(r"\n[ \t]*\n", text) if (s := _deb822_source(stanza))]
    sources = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if not words or words[0] != "deb":
            continue
        options, rest = "", words[1:]
        if rest and rest[0].startswith("["):
            closing = next((i for i, w in enumerate(rest) if w.endswith("]")), len(rest) - 1)
            options, rest = " ".join(rest[: closing + 1])[1:-1], rest[closing + 1 :]
        if len(rest) < 2:
            continue
        signed = re.search(r"signed-by=(\S+)", options)
        keyring = Path(signed.group(1)) if signed and signed.group(1).startswith("/") else None
        sources.append(AptSource(rest[0], (rest[1],), keyring))
    return sources


def _deb822_source(stanza: str) -> AptSource | None:
    fields: dict[str, str] = {}
    key = ""
    for line in stanza.splitlines():
        if line.startswith("#"):
            continue
        if line[:1] in (" ", "\t") and key:
            fields[key] += "\n" + line.strip()  # continuation (an inline key block, say)
        elif ":" in line:
            key, value = line.split(":", 1)
            key = key.strip().lower()
            fields[key] = value.strip()
    if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes").lower() == "no":
        return None
    signed = fields.get("signed-by", "")
    keyring = Path(signed) if signed.startswith("/") and "\n" not in signed else None
    uris = fields.get("uris", "").split()
    return AptSource(uris[0], tuple(fields.get("suites", "").split()), keyring) if uris else None


def pick_debian_mirror(sources: Iterable[AptSource], codename: str) -> AptSource | None:
    """The Debian archive among ``sources``: the one for this release first, never the security archive."""
    known = {"stable", "oldstable", "testing", "unstable", "sid", "bookworm", "trixie", "forky"}
    best: tuple[int, AptSource] | None = None
    for source in sources:
        if not re.match(r"^(https?|ftp)://", source.uri) or "security" in source.uri:
            continue
        score = 0
        if codename and codename in source.suites:
            score = 3
        elif known & set(source.suites):
            score = 2
        elif source.uri.rstrip("/").endswith("/debian"):
            score = 1
        if score and (best is None or score > best[0]):
            best = (score, source)
    return best[1] if best else None


def system_mirror() -> AptSource:
    """The Debian mirror and keyring of the system's own apt sources (where apt-config says they are)."""
    listing = run_command(
        ["apt-config", "shell", "LIST", "Dir::Etc::sourcelist/f", "PARTS", "Dir::Etc::sourceparts/d"],
        what="apt-config",
        error=InstallError,
    )
    where = dict(shlex.split(line)[0].split("=", 1) for line in listing.splitlines() if "=" in line)
    files = [Path(where["LIST"])] if where.get("LIST") else []
    if where.get("PARTS") and Path(where["PARTS"]).is_dir():
        parts = Path(where["PARTS"])
        files += sorted([*parts.glob("*.list"), *parts.glob("*.sources")])
    sources = [s for f in files if f.is_file() for s in parse_apt_sources(f, f.read_text(errors="replace"))]
    codename = ""
    os_release = Path("/etc/os-release")
    if os_release.is_file():
        found = re.search(r"^VERSION_CODENAME=\"?([^\"\n]*)", os_release.read_text(), re.MULTILINE)
        codename = found.group(1) if found else ""
    mirror = pick_debian_mirror(sources, codename)
    if mirror is None:
        raise InstallError(
            "no Debian mirror found in the system's apt sources; set LAKEHOUSE_MYSQL8_MIRROR to one "
            "(e.g. http://deb.debian.org/debian)"
        )
    return mirror


# --------------------------------------------------------------------------- private apt


class PrivateApt:
    """apt-get/apt-cache with sources, lists, cache and dpkg status all under one private folder."""

    def __init__(self, base: Path, mirror: AptSource, arch: str, log: Path, *, suite: str) -> None:
        self.base = base
        self.suite = suite
        self.log = log
        keyring = mirror.signed_by if mirror.signed_by and mirror.signed_by.is_file() else None
        option = f"[signed-by={keyring}] " if keyring else ""  # else the system's trusted keys
        for sub in (
            "etc/sources.list.d",
            "etc/preferences.d",
            "state/lists/partial",
            "cache/archives/partial",
        ):
            (base / sub).mkdir(parents=True, exist_ok=True)
        (base / "etc" / "sources.list").write_text(f"deb {option}{mirror.uri.rstrip('/')} {suite} main\n")
        (base / "state" / "status").write_text("")
        self.locks = (base / "state" / "lists" / "lock", base / "cache" / "archives" / "lock")
        self.options = [
            f"Dir::Etc::sourcelist={base / 'etc' / 'sources.list'}",
            f"Dir::Etc::sourceparts={base / 'etc' / 'sources.list.d'}",
            f"Dir::Etc::preferencesparts={base / 'etc' / 'preferences.d'}",
            f"Dir::State={base / 'state'}",
            f"Dir::State::status={base / 'state' / 'status'}",
            f"Dir::Cache={base / 'cache'}",
            f"APT::Architectures={arch}",
            # apt drops to _apt for downloads, which may not be able to enter the stack dir.
            f"APT::Sandbox::User={pwd.getpwuid(os.geteuid()).pw_name}",
            "Acquire::Languages=none",
            "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false",
            "Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false",
            "Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false",
        ]

    def run(self, tool: str, args: Sequence[str], *, cwd: Path | None = None) -> str:
        """Run ``tool`` with the private options; wait (bounded) while another apt holds its locks.

        Only the private lists and archive locks are taken (``Dir::State`` and ``Dir::Cache`` are
        private, and ``apt-get download`` and ``apt-cache`` take no dpkg lock): another devstack
        run on the same folder is the only contender, never the system's apt.
        """
        cmd = [tool, "-q", *(a for o in self.options for a in ("-o", o)), *args]
        proc = run_apt(
            cmd,
            locks=self.locks,
            lock_timeout=APT_LOCK_TIMEOUT_S,
            env=service_env({"DEBIAN_FRONTEND": "noninteractive"}),
            cwd=cwd,
            timeout=APT_TIMEOUT_S,
        )
        output = proc.stdout + proc.stderr
        with self.log.open("a") as fh:
            fh.write(f"\n$ {' '.join(cmd)}\n{output}")
        if proc.returncode != 0:
            raise InstallError(f"{tool} {args[0]} failed (exit {proc.returncode}):\n{output.strip()[-2000:]}")
        return output

    def update(self) -> None:
        """apt-get update of the private lists; a Release past its Valid-Until date is retried without that check."""
        output = self._update_once()
        if "is expired" in output:
            # A mirror serving a frozen snapshot has a stale Release file. Its signature is still
            # verified; only the freshness date is not.
            _say(
                f"the mirror's {self.suite} Release file is past its Valid-Until date; retrying without that check"
            )
            self.options.append("Acquire::Check-Valid-Until=false")
            output = self._update_once()
        errors = [line for line in output.splitlines() if line.startswith(("E: ", "W: "))]
        if any(line.startswith("E: ") for line in errors) or "is expired" in output:
            raise InstallError("private apt-get update failed:\n" + "\n".join(errors)[-2000:])

    def _update_once(self) -> str:
        try:
            return self.run("apt-get", ["update"])
        except InstallError as exc:
            if "is expired" in str(exc):
                return str(exc)
            raise


# --------------------------------------------------------------------------- the service
