"""In-memory Amazon OpenSearch Service custom packages: packages, versions, domains, associations.

moto does not implement this API (shared PITFALLS.md). The model behaves like the service where a
publisher depends on it, without any time: a package copy and a domain association advance one step
per status poll (``DescribePackages`` for packages; ``ListDomainsForPackage`` or
``ListPackagesForDomain`` for associations), so tests drive the lifecycle by polling, as a publisher
does. What it keeps from the service:

- CreatePackage / UpdatePackage answer COPYING; polls show VALIDATING, then AVAILABLE with a new
  ``AvailablePackageVersion`` (v1, v2, ...). A failed update leaves the last good version available.
- Domains keep the version they were associated with until AssociatePackage is called again (AWS:
  "domains continue to use their current package version until you explicitly update them").
- Association errors come back as ``ASSOCIATION_FAILED`` with ``ErrorDetails``; request errors as the
  modelled exceptions (ResourceNotFound, ResourceAlreadyExists, Conflict, Validation).

Knobs for what a client must survive: failure injection (``fail_next_copy``, ``fail_next_validation``,
``fail_next_association``), ``stall`` (nothing advances: timeouts), ``s3_check`` (COPY_FAILED when the
source object is missing), ``sparse_pages`` (empty pages that still carry a NextToken) and
``stale_reads`` (reads just after a change still show the state before it).

Which ``ErrorType`` strings the real service puts in ``ErrorDetails`` is not documented; tests choose
them. The HTTP status of each error comes from botocore's model, in the server module.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable
from typing import Any

from tests.fakes.opensearch_packages_records import (
    Association,
    ConflictError,
    Failure,
    FakeUsageError,
    Package,
    PackagesError,
    PendingCopy,
    ResourceAlreadyExistsError,
    ResourceNotFoundError,
    ValidationError,
    association_details,
    copy_source,
    matches,
    package_details,
    page_bounds,
    status_read,
)

# The errors are re-exported: the server and tests import them from here.
__all__ = [
    "PAGE_SIZE",
    "ConflictError",
    "FakeOpenSearchPackages",
    "FakeUsageError",
    "PackagesError",
    "ResourceAlreadyExistsError",
    "ResourceNotFoundError",
    "ValidationError",
]

PAGE_SIZE = 100  # MaxResults upper bound in the service model


class FakeOpenSearchPackages:
    """The service's package state for one account and region. Thread-safe (one lock)."""

    def __init__(
        self,
        *,
        copy_polls: int = 2,
        associate_polls: int = 2,
        s3_check: Callable[[str, str], bool] | None = None,
        page_size: int = PAGE_SIZE,
        sparse_pages: bool = False,
        stale_reads: int = 0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``s3_check(bucket, key)`` False makes that copy COPY_FAILED. ``sparse_pages`` cuts
        DescribePackages pages before filtering, so a page may be empty yet carry a NextToken (list
        APIs may do that): a caller must follow NextToken until it is absent. ``stale_reads`` > 0
        makes the next that many status reads after UpdatePackage / AssociatePackage show the state
        from before the call, as an eventually consistent control plane may."""
        if copy_polls < 1 or associate_polls < 1:
            raise FakeUsageError("copy_polls and associate_polls must be at least 1")
        self._copy_polls, self._associate_polls = copy_polls, associate_polls
        self._s3_check, self._page_size, self._sparse = s3_check, page_size, sparse_pages
        self._clock, self._stale_reads = clock, stale_reads
        self._lock = threading.RLock()
        self._packages: dict[str, Package] = {}
        self._domains: dict[str, dict[str, Association]] = {}
        self._next_id = 100000000
        self._copy_failure: Failure | None = None
        self._validation_failure: Failure | None = None
        self._association_failures: dict[str, Failure] = {}
        self._stalled = False
        self.calls: list[str] = []  # operation names in arrival order, for tests

    # ---- test controls -------------------------------------------------------------------
    def add_domain(self, name: str) -> None:
        with self._lock:
            self._domains.setdefault(name, {})

    def fail_next_copy(self, error_type: str, message: str) -> None:
        """The next CreatePackage/UpdatePackage copy ends COPY_FAILED with this ErrorDetails."""
        with self._lock:
            self._copy_failure = (error_type, message)

    def fail_next_validation(self, error_type: str, message: str) -> None:
        """The next copy passes COPYING and VALIDATING, then ends VALIDATION_FAILED."""
        with self._lock:
            self._validation_failure = (error_type, message)

    def fail_next_association(self, domain: str, error_type: str, message: str) -> None:
        with self._lock:
            self._association_failures[domain] = (error_type, message)

    def stall(self, stalled: bool = True) -> None:
        """While stalled, copies and associations in progress never advance (for timeouts)."""
        with self._lock:
            self._stalled = stalled

    def package_id(self, name: str) -> str | None:
        with self._lock:
            return next((p.package_id for p in self._packages.values() if p.name == name), None)

    # ---- operations (params as validated by the server) ----------------------------------
    def create_package(self, p: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            name = p["PackageName"]
            if any(pkg.name == name for pkg in self._packages.values()):
                raise ResourceAlreadyExistsError(f"Package with name {name} already exists")
            source = copy_source(p["PackageSource"])
            now = self._clock()
            package_id = f"F{self._next_id}"
            self._next_id += 1
            package = Package(package_id, name, p["PackageType"], p.get("PackageDescription", ""), now, now)
            package.pending = self._start_copy(source, None)
            self._packages[package_id] = package
            return {"PackageDetails": package_details(package)}

    def update_package(self, p: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            package = self._package(p["PackageID"])
            if package.status not in ("AVAILABLE", "COPY_FAILED", "VALIDATION_FAILED"):
                raise ValidationError(
                    f"Package {package.package_id} is in status {package.status} and cannot be updated"
                )
            if self._stale_reads:
                package.stale = [package_details(package), self._stale_reads]
            package.pending = self._start_copy(copy_source(p["PackageSource"]), p.get("CommitMessage"))
            package.status, package.error = "COPYING", None
            package.updated_at = self._clock()
            if "PackageDescription" in p:
                package.description = p["PackageDescription"]
            return {"PackageDetails": package_details(package)}

    def describe_packages(self, p: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            for package in self._packages.values():
                self._advance_copy(package)
            filters = []
            for f in p.get("Filters", []):
                if "Name" not in f or "Value" not in f:
                    raise ValidationError("A filter needs a Name and at least one Value")
                filters.append((f["Name"], f["Value"]))
            packages = list(self._packages.values())
            if not self._sparse:
                packages = [x for x in packages if matches(x, filters)]
            start, stop, token = self._page(packages, p, "describe")
            page = [status_read(x, package_details(x)) for x in packages[start:stop] if matches(x, filters)]
            return {"PackageDetailsList": page, **({"NextToken": token} if token else {})}

    def associate_package(self, package_id: str, domain: str) -> dict[str, Any]:
        with self._lock:
            package, associations = self._package(package_id), self._domain(domain)
            if package.status != "AVAILABLE":
                raise ConflictError(
                    f"Package {package_id} is {package.status}; only AVAILABLE packages can be associated"
                )
            current = associations.get(package_id)
            before = None if current is None else self._details(current)
            if current is not None and current.status in ("ASSOCIATING", "DISSOCIATING"):
                raise ConflictError(f"Package {package_id} is {current.status} on domain {domain}")
            association = Association(
                domain,
                package_id,
                "ASSOCIATING",
                package.available_version,
                self._clock(),
                polls_left=self._associate_polls,
                failure=self._association_failures.pop(domain, None),
            )
            if before is not None and self._stale_reads:
                association.stale = [before, self._stale_reads]
            associations[package_id] = association
            return {"DomainPackageDetails": self._details(association)}

    def dissociate_package(self, package_id: str, domain: str) -> dict[str, Any]:
        with self._lock:
            self._package(package_id)
            association = self._domain(domain).get(package_id)
            if association is None:
                raise ResourceNotFoundError(f"Package {package_id} is not associated with domain {domain}")
            if association.status in ("ASSOCIATING", "DISSOCIATING"):
                raise ConflictError(f"Package {package_id} is {association.status} on domain {domain}")
            association.status, association.error = "DISSOCIATING", None
            association.polls_left, association.updated_at = self._associate_polls, self._clock()
            return {"DomainPackageDetails": self._details(association)}

    def list_domains_for_package(self, p: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            package_id = p["PackageID"]
            self._package(package_id)
            associations = [d[package_id] for d in self._domains.values() if package_id in d]
            return self._association_page(associations, p, "domains")

    def list_packages_for_domain(self, p: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            return self._association_page(list(self._domain(p["DomainName"]).values()), p, "packages")

    def get_package_version_history(self, p: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            package = self._package(p["PackageID"])
            history = list(reversed(package.history))  # newest first
            start, stop, token = self._page(history, p, "history")
            result = {
                "PackageID": package.package_id,
                "PackageVersionHistoryList": copy.deepcopy(history[start:stop]),
            }
            return {**result, **({"NextToken": token} if token else {})}

    def delete_package(self, package_id: str) -> dict[str, Any]:
        with self._lock:
            package = self._package(package_id)
            if any(package_id in d for d in self._domains.values()):
                raise ConflictError(f"Package {package_id} is associated with a domain; dissociate it first")
            del self._packages[package_id]
            package.status, package.updated_at = "DELETED", self._clock()
            return {"PackageDetails": package_details(package)}

    # ---- state machine -------------------------------------------------------------------
    def _start_copy(self, source: dict[str, str], commit: str | None) -> PendingCopy:
        pending = PendingCopy(source, commit, self._copy_polls, self._copy_failure, self._validation_failure)
        self._copy_failure = self._validation_failure = None
        bucket, key = source["S3BucketName"], source["S3Key"]
        if pending.copy_failure is None and self._s3_check is not None and not self._s3_check(bucket, key):
            pending.copy_failure = (
                "S3ObjectNotAccessible",
                f"Unable to copy s3://{bucket}/{key}: the object does not exist or cannot be read",
            )
        return pending

    def _advance_copy(self, package: Package) -> None:
        pending = package.pending
        if pending is None or self._stalled:
            return
        pending.polls_left -= 1
        package.updated_at = self._clock()
        if pending.copy_failure is not None:
            package.status, package.error, package.pending = "COPY_FAILED", pending.copy_failure, None
        elif pending.polls_left > 0:
            package.status = "VALIDATING"
        elif pending.validation_failure is not None:
            package.status, package.error, package.pending = (
                "VALIDATION_FAILED",
                pending.validation_failure,
                None,
            )
        else:
            version = f"v{len(package.history) + 1}"
            entry: dict[str, Any] = {"PackageVersion": version, "CreatedAt": package.updated_at}
            if pending.commit_message:
                entry["CommitMessage"] = pending.commit_message
            package.history.append(entry)
            package.status, package.available_version, package.pending = "AVAILABLE", version, None

    def _advance_association(self, association: Association) -> None:
        if association.status not in ("ASSOCIATING", "DISSOCIATING") or self._stalled:
            return
        association.polls_left -= 1
        if association.polls_left > 0:
            return
        association.updated_at = self._clock()
        if association.status == "DISSOCIATING":
            del self._domains[association.domain][association.package_id]
        elif association.failure is not None:
            association.status, association.error, association.failure = (
                "ASSOCIATION_FAILED",
                association.failure,
                None,
            )
        else:
            association.status = "ACTIVE"

    def _association_page(
        self, associations: list[Association], p: dict[str, Any], kind: str
    ) -> dict[str, Any]:
        for association in associations:
            self._advance_association(association)
        # A DISSOCIATING association that just finished is gone from its domain: not listed.
        listed = [a for a in associations if self._domains[a.domain].get(a.package_id) is a]
        start, stop, token = self._page(listed, p, kind)
        page = [status_read(a, self._details(a)) for a in listed[start:stop]]
        return {"DomainPackageDetailsList": page, **({"NextToken": token} if token else {})}

    def _details(self, association: Association) -> dict[str, Any]:
        return association_details(association, self._packages[association.package_id])

    def _page(self, items: list[Any], p: dict[str, Any], kind: str) -> tuple[int, int, str | None]:
        size = p.get("MaxResults")
        return page_bounds(len(items), self._page_size if size is None else size, p.get("NextToken"), kind)

    def _package(self, package_id: str) -> Package:
        package = self._packages.get(package_id)
        if package is None:
            raise ResourceNotFoundError(f"Package not found: {package_id}")
        return package

    def _domain(self, name: str) -> dict[str, Association]:
        associations = self._domains.get(name)
        if associations is None:
            raise ResourceNotFoundError(f"Domain not found: {name}")
        return associations
