"""Publish a synonym dictionary to Amazon OpenSearch Service as a custom package and apply it to domains.

The service keeps its own copy of a dictionary file: a new file in S3 changes nothing until the
package is created (``CreatePackage``, type ``TXT-DICTIONARY``) or updated (``UpdatePackage``), the
service has copied and validated it (``PackageStatus`` AVAILABLE, a new ``AvailablePackageVersion``),
and each domain has been told to take that version (``AssociatePackage``, then the domain's
``DomainPackageStatus`` ACTIVE at that ``PackageVersion``). Search analyzers with
``"updateable": true`` reading ``analyzers/<PackageID>`` are then refreshed by the service; nothing is
reindexed. Every step is polled with a deadline, and every failure the service reports
(COPY_FAILED, VALIDATION_FAILED, ASSOCIATION_FAILED) becomes a named exception carrying the
service's ``ErrorDetails``.

The boto3 client (service ``opensearch``) is passed in; this module creates no client and reads no
configuration, so it imports without AWS access.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeVar

import botocore.exceptions

log = logging.getLogger(__name__)

PACKAGE_TYPE = "TXT-DICTIONARY"
_PACKAGE_FAILED = frozenset({"COPY_FAILED", "VALIDATION_FAILED", "DELETE_FAILED"})
_PACKAGE_GONE = frozenset({"DELETING", "DELETED"})
_PACKAGE_BUSY = frozenset({"COPYING", "VALIDATING"})
_ASSOCIATION_BUSY = frozenset({"ASSOCIATING", "DISSOCIATING"})

T = TypeVar("T")


class PackageError(Exception):
    """A synonym package could not be published or applied."""


class PackageRequestError(PackageError):
    """The service refused a request (the botocore error is chained as ``__cause__``)."""

    def __init__(self, operation: str, code: str, message: str) -> None:
        super().__init__(f"{operation} failed: {code}: {message}")
        self.operation, self.code = operation, code


class PackageFailedError(PackageError):
    """The service reports the package itself failed: COPY_FAILED, VALIDATION_FAILED, DELETE_FAILED."""

    def __init__(self, package_name: str, package_id: str, status: str, details: Mapping[str, Any]) -> None:
        super().__init__(
            f"package {package_name!r} ({package_id}) is {status}: "
            f"{details.get('ErrorType', 'no error type')}: {details.get('ErrorMessage', 'no error message')}"
        )
        self.package_name, self.package_id, self.status = package_name, package_id, status
        self.error_type = details.get("ErrorType")
        self.error_message = details.get("ErrorMessage")


class AssociationFailedError(PackageError):
    """A domain could not take the package version (ASSOCIATION_FAILED)."""

    def __init__(self, package_name: str, domain: str, version: str, details: Mapping[str, Any]) -> None:
        super().__init__(
            f"package {package_name!r} version {version} on domain {domain!r} is ASSOCIATION_FAILED: "
            f"{details.get('ErrorType', 'no error type')}: {details.get('ErrorMessage', 'no error message')}"
        )
        self.package_name, self.domain, self.version = package_name, domain, version
        self.error_type = details.get("ErrorType")
        self.error_message = details.get("ErrorMessage")


class PackageTimeoutError(PackageError):
    """A wait ran past its deadline; ``last_status`` is what the service said last."""

    def __init__(self, what: str, last_status: str, seconds: float) -> None:
        super().__init__(f"gave up after {seconds:g} s waiting for {what}; last status {last_status}")
        self.what, self.last_status = what, last_status


@dataclass(frozen=True)
class PublishedPackage:
    """A package version that is AVAILABLE and ACTIVE on every requested domain."""

    package_id: str
    package_name: str
    version: str
    domains: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    created: bool = False

    @property
    def synonyms_path(self) -> str:
        """What index settings put in ``synonyms_path``: the service installs the file there."""
        return f"analyzers/{self.package_id}"


class PackagePublisher:
    """Creates or updates a TXT-DICTIONARY package and applies its newest version to domains."""

    def __init__(
        self,
        client: Any,
        *,
        timeout_seconds: float = 600.0,
        poll_seconds: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._timeout, self._poll = timeout_seconds, poll_seconds
        self._sleep, self._clock = sleep, clock

    def publish(
        self,
        package_name: str,
        bucket: str,
        key: str,
        domains: Sequence[str],
        description: str = "",
        *,
        commit_message: str | None = None,
    ) -> PublishedPackage:
        """Make ``s3://bucket/key`` the active version of ``package_name`` on every domain in ``domains``.

        Each call makes a new package version (callers skip unchanged content). Domains are updated
        one after the other, so a version that fails on one domain never reaches the next.
        ``timeout_seconds`` bounds each wait: the package's copy, then each domain's association.
        """
        source = {"S3BucketName": bucket, "S3Key": key}
        existing = self._find_package(package_name)
        created = None if existing is not None else self._create(package_name, source, description)
        if existing is None and created is None:  # another publisher created it since our look-up
            existing = self._find_package(package_name)
            if existing is None:
                raise PackageError(f"package {package_name!r} exists but DescribePackages does not list it")
        if created is not None:
            package_id, previous = str(created["PackageID"]), None
        else:
            assert existing is not None
            package_id, previous = self._update(existing, source, description, commit_message)
        version = self._wait_available(package_name, package_id, previous)
        statuses: dict[str, str] = {}
        for domain in domains:
            statuses[domain] = self._apply(package_name, package_id, version, domain)
        log.info(
            "package %s (%s) version %s is active on %s", package_name, package_id, version, list(domains)
        )
        return PublishedPackage(
            package_id, package_name, version, MappingProxyType(statuses), created=created is not None
        )

    # ---- package -------------------------------------------------------------------------
    def _create(self, name: str, source: dict[str, str], description: str) -> dict[str, Any] | None:
        log.info("creating package %s from s3://%s/%s", name, source["S3BucketName"], source["S3Key"])
        kwargs: dict[str, Any] = {"PackageName": name, "PackageType": PACKAGE_TYPE, "PackageSource": source}
        if description:
            kwargs["PackageDescription"] = description
        try:
            response = self._call("CreatePackage", self._client.create_package, **kwargs)
        except PackageRequestError as exc:
            if exc.code == "ResourceAlreadyExistsException":
                return None
            raise
        return dict(response["PackageDetails"])

    def _update(
        self, existing: dict[str, Any], source: dict[str, str], description: str, commit: str | None
    ) -> tuple[str, str | None]:
        """UpdatePackage; returns the package id and the version that was AVAILABLE before."""
        name, package_id = str(existing["PackageName"]), str(existing["PackageID"])
        if existing.get("PackageType") != PACKAGE_TYPE:
            raise PackageError(
                f"package {name!r} ({package_id}) is {existing.get('PackageType')}, not {PACKAGE_TYPE}"
            )
        status = existing.get("PackageStatus", "")
        if status in _PACKAGE_GONE or status == "DELETE_FAILED":
            raise PackageFailedError(name, package_id, status, existing.get("ErrorDetails") or {})
        if status in _PACKAGE_BUSY:  # an earlier run was interrupted mid-copy: let that copy settle first
            log.info("package %s (%s) is %s; waiting before updating it", name, package_id, status)
            existing = self._wait(f"package {name!r} to settle", lambda: self._settled(package_id))
        log.info(
            "updating package %s (%s) from s3://%s/%s",
            name,
            package_id,
            source["S3BucketName"],
            source["S3Key"],
        )
        kwargs: dict[str, Any] = {"PackageID": package_id, "PackageSource": source}
        if description:
            kwargs["PackageDescription"] = description
        if commit:
            kwargs["CommitMessage"] = commit
        self._call("UpdatePackage", self._client.update_package, **kwargs)
        previous = existing.get("AvailablePackageVersion")
        return package_id, None if previous is None else str(previous)

    def _settled(self, package_id: str) -> tuple[str, dict[str, Any] | None]:
        details = self._describe(package_id)
        status = "not listed" if details is None else str(details.get("PackageStatus", ""))
        return status, None if details is None or status in _PACKAGE_BUSY else details

    def _wait_available(self, name: str, package_id: str, previous: str | None) -> str:
        def probe() -> tuple[str, str | None]:
            details = self._describe(package_id)
            if details is None:  # a package just created may not be listed yet
                return "not listed", None
            status = str(details.get("PackageStatus", ""))
            if status in _PACKAGE_FAILED or status in _PACKAGE_GONE:
                raise PackageFailedError(name, package_id, status, details.get("ErrorDetails") or {})
            version = details.get("AvailablePackageVersion")
            # After UpdatePackage the status can read AVAILABLE for the old version until the copy
            # starts; only a version other than the one before the update is the new one.
            if status == "AVAILABLE" and version and version != previous:
                return status, str(version)
            return f"{status} (available version {version})" if version else status, None

        version = self._wait(f"package {name!r} ({package_id}) to become AVAILABLE", probe)
        log.info("package %s (%s) version %s is AVAILABLE", name, package_id, version)
        return version

    def _find_package(self, name: str) -> dict[str, Any] | None:
        for details in self._describe_all([{"Name": "PackageName", "Value": [name]}]):
            if details.get("PackageName") == name:  # the filter is the service's; trust only exact names
                return details
        return None

    def _describe(self, package_id: str) -> dict[str, Any] | None:
        for details in self._describe_all([{"Name": "PackageID", "Value": [package_id]}]):
            if details.get("PackageID") == package_id:
                return details
        return None

    def _describe_all(self, filters: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return self._pages(
            "DescribePackages", self._client.describe_packages, "PackageDetailsList", Filters=filters
        )

    # ---- domains -------------------------------------------------------------------------
    def _apply(self, name: str, package_id: str, version: str, domain: str) -> str:
        current = self._association(package_id, domain)
        if current is not None and current.get("DomainPackageStatus") in _ASSOCIATION_BUSY:
            log.info(
                "domain %s has package %s %s; waiting", domain, package_id, current["DomainPackageStatus"]
            )
            self._wait(
                f"package {package_id} on domain {domain!r} to settle",
                lambda: self._association_settled(package_id, domain),
            )
            current = self._association(package_id, domain)
        if (
            current is not None
            and current.get("DomainPackageStatus") == "ACTIVE"
            and current.get("PackageVersion") == version
        ):
            log.info("domain %s already runs package %s version %s", domain, package_id, version)
            return "ACTIVE"
        # Associating again is how a domain takes a new version: domains keep their own copy of the
        # file and "continue to use their current package version until you explicitly update them";
        # AWS's own update script calls update_package and then associate_package for the domain
        # (OpenSearch Service Developer Guide, "Importing and managing packages", sections "Updating
        # custom packages (console)" and "(AWS SDK)"; awsdocs/amazon-opensearch-service-developer-guide,
        # doc_source/custom-packages.md).
        log.info("associating package %s version %s with domain %s", package_id, version, domain)
        self._call(
            "AssociatePackage", self._client.associate_package, PackageID=package_id, DomainName=domain
        )

        def probe() -> tuple[str, str | None]:
            association = self._association(package_id, domain)
            if association is None:
                return "not listed", None
            status = str(association.get("DomainPackageStatus", ""))
            at = association.get("PackageVersion")
            if status == "ASSOCIATION_FAILED" and at in (None, version):
                raise AssociationFailedError(name, domain, version, association.get("ErrorDetails") or {})
            if status == "ACTIVE" and at == version:
                return status, status
            return f"{status} at version {at}", None

        status = self._wait(f"package {name!r} version {version} to become ACTIVE on {domain!r}", probe)
        log.info("domain %s runs package %s version %s", domain, package_id, version)
        return status

    def _association_settled(self, package_id: str, domain: str) -> tuple[str, bool | None]:
        association = self._association(package_id, domain)
        status = "not listed" if association is None else str(association.get("DomainPackageStatus", ""))
        return status, None if status in _ASSOCIATION_BUSY else True

    def _association(self, package_id: str, domain: str) -> dict[str, Any] | None:
        listed = self._pages(
            "ListDomainsForPackage",
            self._client.list_domains_for_package,
            "DomainPackageDetailsList",
            PackageID=package_id,
        )
        return next((a for a in listed if a.get("DomainName") == domain), None)

    # ---- plumbing ------------------------------------------------------------------------
    def _wait(self, what: str, probe: Callable[[], tuple[str, T | None]]) -> T:
        """Call ``probe`` until it returns a result, sleeping ``poll_seconds`` between calls."""
        deadline = self._clock() + self._timeout
        while True:
            status, result = probe()
            if result is not None:
                return result
            if self._clock() >= deadline:
                raise PackageTimeoutError(what, status, self._timeout)
            log.debug("waiting for %s: %s", what, status)
            self._sleep(self._poll)

    def _pages(
        self, operation: str, method: Callable[..., Any], key: str, **kwargs: Any
    ) -> list[dict[str, Any]]:
        """Every item of a NextToken-paginated listing (botocore has no paginator for these)."""
        items: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            response = self._call(operation, method, **kwargs, **({"NextToken": token} if token else {}))
            items += response.get(key, [])
            token = response.get("NextToken")
            if not token:
                return items

    @staticmethod
    def _call(operation: str, method: Callable[..., Any], **kwargs: Any) -> dict[str, Any]:
        try:
            return dict(method(**kwargs))
        except botocore.exceptions.ClientError as exc:
            error = exc.response.get("Error", {})
            raise PackageRequestError(
                operation, str(error.get("Code", "")), str(error.get("Message", ""))
            ) from exc
        except botocore.exceptions.BotoCoreError as exc:  # connection, endpoint, credential-chain errors
            raise PackageRequestError(operation, type(exc).__name__, str(exc)) from exc
