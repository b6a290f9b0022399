"""Local service stack for development and tests: MariaDB, MySQL 9.7, PostgreSQL, moto, OpenSearch.

``up()`` installs, initialises and starts services (idempotent), ``down()`` stops them and
``status()`` reports them. Services are listed in :data:`SERVICE_TYPES` in start order; adding one
(an OpenSearch node, say) means one more module implementing :class:`devstack.base.Service` and one
more entry there. MySQL 9.7 (the MySQL 8 family, for Aurora MySQL 3) comes from Debian sid's packages
on its first ``up``; OpenSearch comes last: its first ``up`` builds it from Maven Central.
"""

from __future__ import annotations

import fcntl
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from devstack.base import DevstackError, Service, ServiceStatus
from devstack.mariadb import MariaDBService
from devstack.moto import MotoService
from devstack.mysql8 import MySQL8Service
from devstack.opensearch_service import OpenSearchService
from devstack.postgres import PostgresService
from devstack.settings import StackSettings, load_settings

__all__ = [
    "DevstackError",
    "SERVICE_TYPES",
    "ServiceResult",
    "ServiceStatus",
    "StackSettings",
    "UnknownServiceError",
    "down",
    "settings",
    "status",
    "up",
]

# Start order; stop order is the reverse.
SERVICE_TYPES: list[Callable[[StackSettings], Service]] = [
    MariaDBService,
    MySQL8Service,
    PostgresService,
    MotoService,
    OpenSearchService,
]


class UnknownServiceError(DevstackError):
    """A service name that is not in the registry."""


@dataclass(frozen=True)
class ServiceResult:
    """What ``up``/``down`` did to one service, plus its status afterwards."""

    action: str  # "started" | "already running" | "stopped" | "already stopped"
    status: ServiceStatus


def settings() -> StackSettings:
    """Current stack settings (reads the environment on each call)."""
    return load_settings()


def _services(names: Sequence[str] | None, cfg: StackSettings) -> list[Service]:
    all_services = [factory(cfg) for factory in SERVICE_TYPES]
    if names is None:
        return all_services
    known = {svc.name: svc for svc in all_services}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UnknownServiceError(f"unknown service(s) {', '.join(unknown)}; known: {', '.join(known)}")
    wanted = set(names)
    return [svc for svc in all_services if svc.name in wanted]  # keep registry order


@contextmanager
def _stack_lock(cfg: StackSettings) -> Iterator[None]:
    """Serialise up/down across processes: several test sessions may call up() at once."""
    cfg.stack_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(cfg.stack_dir, 0o755)  # service users (mysql, postgres) must traverse it
    fd = os.open(cfg.stack_dir / ".devstack.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def up(names: Sequence[str] | None = None) -> list[ServiceResult]:
    """Install, initialise and start the named services (all by default); cheap when running.

    Raises :class:`DevstackError` naming the service that failed and the tail of its log.
    """
    cfg = load_settings()
    results: list[ServiceResult] = []
    with _stack_lock(cfg):
        services = _services(names, cfg)
        stopped = [svc.name for svc in services if not svc.is_running()]
        if stopped:
            _announce_start(stopped)
        for svc in services:
            if _tls_missing(svc):
                # Started before the stack served TLS: restart once with the TLS config.
                print(f"stack: restarting {svc.name} to serve TLS", file=sys.stderr, flush=True)
                svc.stop()
            if svc.is_running():
                results.append(ServiceResult("already running", svc.describe()))
                continue
            try:
                svc.install()
                svc.init()
                svc.start()
            except DevstackError as exc:
                raise type(exc)(f"{svc.name}: {exc}") from exc
            results.append(ServiceResult("started", svc.describe()))
    return results


def _tls_missing(svc: Service) -> bool:
    check = getattr(svc, "tls_missing", None)
    return bool(check is not None and check())


def _announce_start(names: Sequence[str]) -> None:
    # A first start installs or builds binaries and may take minutes; without a word up looks hung
    # (stderr: stdout is the status table).
    print(
        f"stack: starting {', '.join(names)}; a first start installs them (Debian packages, "
        "MySQL 9.7 from Debian sid, OpenSearch built with Maven): several minutes",
        file=sys.stderr,
        flush=True,
    )


def down(names: Sequence[str] | None = None) -> list[ServiceResult]:
    """Stop the named services (all by default) in reverse start order; stopped ones are skipped."""
    cfg = load_settings()
    results: list[ServiceResult] = []
    with _stack_lock(cfg):
        for svc in reversed(_services(names, cfg)):
            if not svc.is_running():
                results.append(ServiceResult("already stopped", svc.describe()))
                continue
            try:
                svc.stop()
            except DevstackError as exc:
                raise type(exc)(f"{svc.name}: {exc}") from exc
            results.append(ServiceResult("stopped", svc.describe()))
    return list(reversed(results))


def status(names: Sequence[str] | None = None) -> list[ServiceStatus]:
    """Status of the named services (all by default), without starting anything."""
    cfg = load_settings()
    return [svc.describe() for svc in _services(names, cfg)]
