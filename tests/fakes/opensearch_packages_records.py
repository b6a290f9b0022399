"""The state the fake OpenSearch packages service is made of, its errors, and how it renders them.

``opensearch_packages_model`` holds the service's behaviour; this module holds its records
(packages, pending copies, domain associations), the errors the service returns (``code`` is the
modelled exception's name; the server takes the HTTP status from botocore's model) and the
functions that turn records into the response shapes of botocore's ``opensearch`` model.
"""

from __future__ import annotations

import base64
import fnmatch
import json
from dataclasses import dataclass, field
from typing import Any


class PackagesError(Exception):
    """An error the service returns; ``code`` is the modelled exception's name."""

    code = "BaseException"


class ValidationError(PackagesError):
    code = "ValidationException"


class ResourceNotFoundError(PackagesError):
    code = "ResourceNotFoundException"


class ResourceAlreadyExistsError(PackagesError):
    code = "ResourceAlreadyExistsException"


class ConflictError(PackagesError):
    code = "ConflictException"


class FakeUsageError(Exception):
    """A test used the fake wrongly (not a service error)."""


Failure = tuple[str, str]  # (ErrorType, ErrorMessage)


@dataclass
class PendingCopy:
    """A copy-and-validate in progress: polls left, and how it ends (None: AVAILABLE)."""

    source: dict[str, str]
    commit_message: str | None
    polls_left: int
    copy_failure: Failure | None = None
    validation_failure: Failure | None = None


@dataclass
class Package:
    package_id: str
    name: str
    package_type: str
    description: str
    created_at: float
    updated_at: float
    status: str = "COPYING"
    available_version: str | None = None
    error: Failure | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    pending: PendingCopy | None = None
    stale: list[Any] | None = None  # [details from before the last update, reads left]


@dataclass
class Association:
    domain: str
    package_id: str
    status: str
    version: str | None
    updated_at: float
    polls_left: int = 0
    failure: Failure | None = None
    error: Failure | None = None
    stale: list[Any] | None = None  # [details from before the last AssociatePackage, reads left]


def association_details(a: Association, package: Package) -> dict[str, Any]:
    """DomainPackageDetails of one association."""
    details: dict[str, Any] = {
        "PackageID": package.package_id,
        "PackageName": package.name,
        "PackageType": package.package_type,
        "LastUpdated": a.updated_at,
        "DomainName": a.domain,
        "DomainPackageStatus": a.status,
        "ReferencePath": f"analyzers/{package.package_id}",
    }
    if a.version is not None:
        details["PackageVersion"] = a.version
    if a.error is not None:
        details["ErrorDetails"] = {"ErrorType": a.error[0], "ErrorMessage": a.error[1]}
    return details


def page_bounds(count: int, size: int, token: str | None, kind: str) -> tuple[int, int, str | None]:
    """(start, stop, NextToken or None) of one page of ``count`` items; tokens are opaque offsets."""
    if size < 1:
        raise ValidationError(f"MaxResults must be at least 1, got {size}")
    start = 0
    if token is not None:
        try:
            decoded = json.loads(base64.urlsafe_b64decode(token.encode()))
            if decoded["k"] != kind:
                raise ValueError(kind)
            start = int(decoded["o"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ValidationError("The NextToken is invalid") from exc
    stop = min(start + size, count)
    if stop >= count:
        return start, stop, None
    return start, stop, base64.urlsafe_b64encode(json.dumps({"k": kind, "o": stop}).encode()).decode()


def status_read(item: Package | Association, details: dict[str, Any]) -> dict[str, Any]:
    """What a status read shows: the snapshot from before the last change while it is stale."""
    if item.stale is None:
        return details
    snapshot, item.stale[1] = item.stale[0], item.stale[1] - 1
    if item.stale[1] <= 0:
        item.stale = None
    return dict(snapshot)


def copy_source(source: dict[str, Any]) -> dict[str, str]:
    # Both members are optional in the model, but a copy needs both.
    if "S3BucketName" not in source or "S3Key" not in source:
        raise ValidationError("PackageSource needs S3BucketName and S3Key")
    return {"S3BucketName": source["S3BucketName"], "S3Key": source["S3Key"]}


def matches(package: Package, filters: list[tuple[str, list[str]]]) -> bool:
    fields = {
        "PackageID": package.package_id,
        "PackageName": package.name,
        "PackageStatus": package.status,
        "PackageType": package.package_type,
    }
    # Filters AND together; the values of one filter OR together; '*' and '?' are wildcards.
    return all(any(fnmatch.fnmatchcase(fields.get(name, ""), v) for v in values) for name, values in filters)


def package_details(package: Package) -> dict[str, Any]:
    details: dict[str, Any] = {
        "PackageID": package.package_id,
        "PackageName": package.name,
        "PackageType": package.package_type,
        "PackageDescription": package.description,
        "PackageStatus": package.status,
        "CreatedAt": package.created_at,
        "LastUpdatedAt": package.updated_at,
    }
    if package.available_version is not None:
        details["AvailablePackageVersion"] = package.available_version
    if package.error is not None:
        details["ErrorDetails"] = {"ErrorType": package.error[0], "ErrorMessage": package.error[1]}
    return details
