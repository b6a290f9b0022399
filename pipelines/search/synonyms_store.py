"""The published synonym dictionary: one S3 object with versioning, and its content hash.

Every publish of a changed dictionary is a new object version, so the history of the synonyms is
the bucket's version list and any earlier dictionary can be read back. The object carries the
dictionary's SHA-256 in its user metadata (``x-amz-meta-sha256``), so deciding whether a new
rendering changes anything costs one HEAD request and no download; an unchanged dictionary is
never written (no new version, nothing for OpenSearch to reload).

Writes are conditional on the object the publisher looked at (``If-Match`` its ETag, or
``If-None-Match: *`` for the first version): two publishers racing cannot silently overwrite each
other's newer dictionary with an older rendering.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from pipelines.search.synonyms import Dictionary

SHA256_METADATA = "sha256"  # stored as x-amz-meta-sha256
ROWS_METADATA = "rows"  # stored as x-amz-meta-rows
CONTENT_TYPE = "text/plain; charset=utf-8"
_NOT_FOUND = ("404", "NoSuchKey", "NoSuchBucket", "NotFound")
_PRECONDITION_FAILED = ("PreconditionFailed", "ConditionalRequestConflict")


class SynonymStoreError(Exception):
    """An S3 request for the dictionary failed, or the bucket is not usable as its store."""


class PublishConflictError(SynonymStoreError):
    """Another publisher wrote a different dictionary between this one's read and its write."""


@dataclass(frozen=True, slots=True)
class StoredDictionary:
    """One stored version of the dictionary; `changed` says whether this call wrote it."""

    bucket: str
    key: str
    version_id: str
    sha256: str | None
    size: int
    changed: bool
    rows: int | None = None
    etag: str = ""

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


@dataclass(frozen=True, slots=True)
class DictionaryVersion:
    """One entry of the dictionary's version history (delete markers are not listed)."""

    version_id: str
    last_modified: dt.datetime
    size: int
    is_latest: bool


class SynonymStore:
    """The dictionary at ``s3://<bucket>/<key>``, through a boto3 S3 client."""

    def __init__(self, s3_client: Any, bucket: str, key: str) -> None:
        self.s3 = s3_client
        self.bucket = bucket
        self.key = key

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def ensure_bucket(self) -> None:
        """Create the bucket if it is missing and turn on versioning; a no-op when both are done."""
        try:
            self.s3.head_bucket(Bucket=self.bucket)
        except ClientError as e:
            if _code(e) not in _NOT_FOUND:
                raise self._bucket_error("checking bucket", e) from None
            self._create_bucket()
        except BotoCoreError as e:
            raise self._bucket_error("checking bucket", e) from None
        try:
            status = self.s3.get_bucket_versioning(Bucket=self.bucket).get("Status")
            if status != "Enabled":
                self.s3.put_bucket_versioning(
                    Bucket=self.bucket, VersioningConfiguration={"Status": "Enabled"}
                )
        except (ClientError, BotoCoreError) as e:
            raise self._bucket_error("enabling versioning on bucket", e) from None

    def current(self) -> StoredDictionary | None:
        """The latest stored version, or None if there is none (or a delete marker is latest)."""
        try:
            head = self.s3.head_object(Bucket=self.bucket, Key=self.key)
        except ClientError as e:
            if _code(e) in _NOT_FOUND:
                return None
            if _code(e) in ("403", "AccessDenied"):
                # S3 answers 403 rather than 404 for a missing key when s3:ListBucket is not granted.
                raise SynonymStoreError(
                    f"reading {self.uri}: access denied (a missing key also looks like this "
                    "without s3:ListBucket on the bucket)"
                ) from None
            raise self._error("reading", e) from None
        except BotoCoreError as e:
            raise self._error("reading", e) from None
        metadata = head.get("Metadata") or {}
        rows = metadata.get(ROWS_METADATA)
        return StoredDictionary(
            bucket=self.bucket,
            key=self.key,
            # "null" for an object written before versioning was turned on (S3's own spelling).
            version_id=str(head.get("VersionId") or "null"),
            # Absent when someone put the object by hand: then any rendering counts as a change.
            sha256=metadata.get(SHA256_METADATA),
            size=int(head.get("ContentLength", 0)),
            changed=False,
            rows=int(rows) if rows is not None and rows.isdigit() else None,
            etag=str(head.get("ETag", "")),
        )

    def publish(self, dictionary: Dictionary) -> StoredDictionary:
        """Store the dictionary as a new version unless the latest version has the same SHA-256.

        Returns the latest version, with ``changed=True`` only if this call wrote it. Raises
        `PublishConflictError` if another publisher stored a different dictionary meanwhile.
        """
        current = self.current()
        if current is not None and current.sha256 == dictionary.sha256:
            return current
        self._require_versioning()
        body = dictionary.body
        condition = {"IfMatch": current.etag} if current is not None else {"IfNoneMatch": "*"}
        try:
            response = self.s3.put_object(
                Bucket=self.bucket,
                Key=self.key,
                Body=body,
                ContentType=CONTENT_TYPE,
                Metadata={SHA256_METADATA: dictionary.sha256, ROWS_METADATA: str(dictionary.lines)},
                **condition,
            )
        except ClientError as e:
            if _code(e) in _PRECONDITION_FAILED:
                return self._after_conflict(dictionary)
            raise self._error("writing", e) from None
        except BotoCoreError as e:
            raise self._error("writing", e) from None
        return StoredDictionary(
            bucket=self.bucket,
            key=self.key,
            version_id=self._version_id(response.get("VersionId")),
            sha256=dictionary.sha256,
            size=len(body),
            changed=True,
            rows=dictionary.lines,
            etag=str(response.get("ETag", "")),
        )

    def history(self) -> list[DictionaryVersion]:
        """Every stored version of the dictionary, newest first (S3's own order per key)."""
        versions: list[DictionaryVersion] = []
        try:
            pages = self.s3.get_paginator("list_object_versions").paginate(
                Bucket=self.bucket, Prefix=self.key
            )
            for page in pages:
                for v in page.get("Versions", []):
                    # The prefix also matches longer keys ("synonyms.txt.bak"): keep exact ones.
                    if v["Key"] == self.key:
                        versions.append(
                            DictionaryVersion(
                                version_id=str(v["VersionId"]),
                                last_modified=v["LastModified"],
                                size=int(v.get("Size", 0)),
                                is_latest=bool(v.get("IsLatest")),
                            )
                        )
        except (ClientError, BotoCoreError) as e:
            raise self._error("listing versions of", e) from None
        return versions

    def read_text(self, version_id: str | None = None) -> str:
        """The dictionary's text: the latest version, or the given one."""
        extra = {"VersionId": version_id} if version_id else {}
        try:
            response = self.s3.get_object(Bucket=self.bucket, Key=self.key, **extra)
            return str(response["Body"].read().decode("utf-8"))
        except (ClientError, BotoCoreError) as e:
            which = f" (version {version_id})" if version_id else ""
            raise self._error(f"reading{which}", e) from None

    # -- helpers -------------------------------------------------------------------------------
    def _create_bucket(self) -> None:
        region = self.s3.meta.region_name
        # us-east-1 is S3's default location and refuses an explicit LocationConstraint.
        config = (
            {}
            if region in (None, "us-east-1")
            else {"CreateBucketConfiguration": {"LocationConstraint": region}}
        )
        try:
            self.s3.create_bucket(Bucket=self.bucket, **config)
        except ClientError as e:
            if _code(e) != "BucketAlreadyOwnedByYou":  # a concurrent ensure_bucket won: fine
                raise self._bucket_error("creating bucket", e) from None
        except BotoCoreError as e:
            raise self._bucket_error("creating bucket", e) from None

    def _require_versioning(self) -> None:
        """Refuse to write into an unversioned bucket, where a write would destroy the old version."""
        try:
            status = self.s3.get_bucket_versioning(Bucket=self.bucket).get("Status")
        except (ClientError, BotoCoreError) as e:
            raise self._bucket_error("checking versioning of bucket", e) from None
        if status != "Enabled":
            raise SynonymStoreError(
                f"bucket {self.bucket} has versioning {status or 'never enabled'}; "
                f"{self.uri} would lose its history (call ensure_bucket() first)"
            )

    def _after_conflict(self, dictionary: Dictionary) -> StoredDictionary:
        """Another publisher wrote first: fine if it wrote the same dictionary, else an error."""
        latest = self.current()
        if latest is not None and latest.sha256 == dictionary.sha256:
            return latest
        raise PublishConflictError(
            f"{self.uri} changed while publishing (now version "
            f"{latest.version_id if latest else 'none'}, sha256 {latest.sha256 if latest else 'none'}); "
            "render the dictionary again from the lake and publish that"
        )

    def _version_id(self, version_id: object) -> str:
        if not version_id or version_id == "null":
            raise SynonymStoreError(
                f"{self.uri} has no version id: is versioning on for bucket {self.bucket}?"
            )
        return str(version_id)

    # botocore's messages name the operation, the error code and the endpoint, never the keys.
    def _error(self, action: str, exc: Exception) -> SynonymStoreError:
        return SynonymStoreError(f"{action} {self.uri} failed: {exc}")

    def _bucket_error(self, action: str, exc: Exception) -> SynonymStoreError:
        return SynonymStoreError(f"{action} {self.bucket} failed: {exc}")


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
