"""The S3 half of the lake's storage layer: credentials, region, encryption and the write path.

Reads go through pyarrow's native `S3FileSystem` (range reads, no Python per byte). Writes go
through boto3, because pyarrow's S3 filesystem cannot send SSE-KMS headers: its output-stream
metadata only maps ACL, Cache-Control, Content-Type, Content-Language and Expires (checked with
pyarrow 26: `x-amz-server-side-encryption` in `default_metadata` is silently dropped). So with
`kms_key_id` set, every PutObject, CopyObject and CreateMultipartUpload carries
``ServerSideEncryption=aws:kms`` and ``SSEKMSKeyId``, and a bucket policy that denies requests
without the header never sees one from us. `LakeS3Handler` joins both halves into one pyarrow
filesystem, which is what `Storage.fs` and pyiceberg's FileIO (connectors/lake/iceberg_io.py) use.

Credentials are boto3's (see connectors/aws.py); pyarrow gets the session's current keys and is
rebuilt when they rotate (an assumed role, IRSA, a container role), so it never signs with expired
ones and supports everything boto3 supports (SSO profiles included), which the AWS C++ SDK's
default chain inside pyarrow does not.
"""

from __future__ import annotations

import io
import tempfile
import threading
import uuid
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.fs as pafs
from pydantic import Field, SecretStr

from connectors.aws import AwsIdentity, AwsRetries, aws_session, make_client
from connectors.usage import record_pyarrow_info, record_pyarrow_list, record_pyarrow_read

if TYPE_CHECKING:
    import boto3

# Objects above this size are uploaded in parts (boto3's managed transfer); below it one PutObject.
MULTIPART_THRESHOLD = 64 * 1024 * 1024
# A staged write is kept in memory up to this size, then spills to a temporary file.
SPOOL_BYTES = 32 * 1024 * 1024


class StorageError(Exception):
    """A lake storage operation failed."""


class S3Options(AwsIdentity):
    """How to reach S3: real AWS and the default credential chain unless told otherwise."""

    endpoint_url: str | None = Field(
        None, description="S3 endpoint override (a VPC endpoint, moto in tests)."
    )
    region: str | None = Field(
        None,
        description="Region of the bucket; unset: read from the bucket (GetBucketLocation), never assumed.",
    )
    kms_key_id: str | None = Field(
        None,
        description=(
            "SSE-KMS key (id, ARN or alias ARN): every object written carries "
            "ServerSideEncryption=aws:kms and this key; unset: the bucket's default encryption."
        ),
    )
    retries: AwsRetries = Field(default_factory=AwsRetries, description="Retries and timeouts of S3 calls.")


@dataclass(frozen=True, slots=True)
class ReaderCredentials:
    """What another S3 reader (DuckDB) needs: the bucket's region and the current keys."""

    region: str
    access_key_id: str
    secret_access_key: SecretStr
    session_token: SecretStr | None


# S3Access objects by id, for pyiceberg's FileIO, which pyiceberg builds from string properties only.
_ACCESS: weakref.WeakValueDictionary[str, S3Access] = weakref.WeakValueDictionary()


class S3Access:
    """One bucket reached with one set of options: session, region, boto3 client, pyarrow filesystem."""

    def __init__(self, bucket: str, options: S3Options) -> None:
        self.bucket = bucket
        self.options = options
        self.id = uuid.uuid4().hex
        self._lock = threading.RLock()
        self._session: boto3.Session | None = None
        self._region: str | None = None
        self._client: Any = None
        self._native: pafs.S3FileSystem | None = None
        self._native_keys: tuple[str, str, str | None] | None = None
        self.filesystem = pafs.PyFileSystem(LakeS3Handler(self))
        _ACCESS[self.id] = self

    # -- identity and region ----------------------------------------------------------------
    @property
    def session(self) -> boto3.Session:
        with self._lock:
            if self._session is None:
                self._session = aws_session(self.options, self.options.region)
            return self._session

    @property
    def region(self) -> str:
        """The bucket's region: configured, else asked of S3 once (never a silent default)."""
        with self._lock:
            if self._region is None:
                self._region = self.options.region or self._resolve_region()
            return self._region

    def _resolve_region(self) -> str:
        from botocore.exceptions import BotoCoreError, ClientError

        # GetBucketLocation answers from any region (LocationConstraint null means us-east-1, 'EU'
        # is the legacy name of eu-west-1). Without s3:GetBucketLocation, HeadBucket's
        # x-amz-bucket-region header names it, even on a 301 or 403 answer.
        lookup = make_client(
            self.session,
            "s3",
            region=self.session.region_name or "us-east-1",
            endpoint_url=self.options.endpoint_url,
            retries=self.options.retries,
        )
        try:
            location = lookup.get_bucket_location(Bucket=self.bucket).get("LocationConstraint")
            return {None: "us-east-1", "": "us-east-1", "EU": "eu-west-1"}.get(location, location)
        except ClientError as first:
            reason = _error_code(first)
        except BotoCoreError as first:
            reason = type(first).__name__
        try:
            headers = lookup.head_bucket(Bucket=self.bucket)["ResponseMetadata"]["HTTPHeaders"]
        except ClientError as e:
            headers = e.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
        except BotoCoreError:
            headers = {}
        if region := headers.get("x-amz-bucket-region"):
            return str(region)
        raise StorageError(
            f"the region of bucket {self.bucket!r} is unknown (GetBucketLocation: {reason}); "
            'set `region` in the S3 settings (`[lake.s3] region = "eu-west-1"` for the lake)'
        )

    # -- clients ----------------------------------------------------------------------------
    @property
    def client(self) -> Any:
        """The boto3 S3 client (thread-safe; shared by every write of this bucket)."""
        with self._lock:
            if self._client is None:
                self._client = make_client(
                    self.session,
                    "s3",
                    region=self.region,
                    endpoint_url=self.options.endpoint_url,
                    retries=self.options.retries,
                    max_pool_connections=16,
                )
            return self._client

    def credentials(self) -> tuple[str, str, str | None]:
        """The session's current keys (renewed by botocore when they near expiry)."""
        found = self.session.get_credentials()
        if found is None:
            raise StorageError(
                f"no AWS credentials for s3://{self.bucket} (looked in the environment, the shared "
                "config and credentials files, SSO, web identity, container and instance roles); "
                "run with a role or set `profile` or keys in the S3 settings"
            )
        frozen = found.get_frozen_credentials()
        return frozen.access_key, frozen.secret_key, frozen.token

    def native(self) -> pafs.S3FileSystem:
        """pyarrow's S3 filesystem with the current keys; rebuilt when they rotate."""
        keys = self.credentials()
        with self._lock:
            if self._native is None or keys != self._native_keys:
                endpoint = self.options.endpoint_url
                retries = self.options.retries
                self._native = pafs.S3FileSystem(
                    access_key=keys[0],
                    secret_key=keys[1],
                    session_token=keys[2],
                    region=self.region,
                    endpoint_override=endpoint,
                    scheme=endpoint.split("://", 1)[0] if endpoint and "://" in endpoint else "https",
                    connect_timeout=retries.connect_timeout_seconds,
                    request_timeout=retries.read_timeout_seconds,
                    retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=retries.max_attempts),
                )
                self._native_keys = keys
            return self._native

    def reader_credentials(self) -> ReaderCredentials:
        key, secret, token = self.credentials()
        return ReaderCredentials(self.region, key, SecretStr(secret), SecretStr(token) if token else None)

    # -- writes -----------------------------------------------------------------------------
    @property
    def encryption(self) -> dict[str, str]:
        """Arguments that PutObject, CopyObject and CreateMultipartUpload carry (empty: bucket default)."""
        if self.options.kms_key_id is None:
            return {}
        return {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": self.options.kms_key_id}

    def put(self, key: str, data: bytes, **conditions: str) -> str:
        """One PutObject; `conditions` such as IfNoneMatch='*' go with it (ClientError raised as is).
        Returns the new object's ETag, the one GetObject and If-Match then use."""
        answer = self.client.put_object(
            Bucket=self.bucket, Key=key, Body=data, **conditions, **self.encryption
        )
        return str(answer["ETag"])

    def upload(self, key: str, body: Any) -> None:
        """A whole object from a file object (in parts above MULTIPART_THRESHOLD)."""
        from boto3.exceptions import S3UploadFailedError
        from boto3.s3.transfer import TransferConfig
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.upload_fileobj(
                body,
                self.bucket,
                key,
                ExtraArgs=self.encryption,
                Config=TransferConfig(
                    multipart_threshold=MULTIPART_THRESHOLD, multipart_chunksize=MULTIPART_THRESHOLD
                ),
            )
        except (S3UploadFailedError, ClientError, BotoCoreError) as e:
            raise StorageError(f"upload of s3://{self.bucket}/{key} failed: {e}") from None

    def copy(self, src_key: str, dst_key: str) -> None:
        """A server-side copy; the copy is encrypted as configured, not as its source was."""
        from boto3.s3.transfer import TransferConfig
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.copy(
                {"Bucket": self.bucket, "Key": src_key},
                self.bucket,
                dst_key,
                ExtraArgs=self.encryption,
                Config=TransferConfig(
                    multipart_threshold=MULTIPART_THRESHOLD, multipart_chunksize=MULTIPART_THRESHOLD
                ),
            )
        except ClientError as e:
            if _error_code(e) in ("404", "NoSuchKey"):
                raise FileNotFoundError(f"s3://{self.bucket}/{src_key}") from None
            raise StorageError(f"copy of s3://{self.bucket}/{src_key} to {dst_key} failed: {e}") from None
        except BotoCoreError as e:
            raise StorageError(f"copy of s3://{self.bucket}/{src_key} to {dst_key} failed: {e}") from None

    def delete(self, keys: list[str]) -> None:
        """Delete objects (missing ones are no error), up to 1,000 per DeleteObjects call."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            for i in range(0, len(keys), 1000):
                batch = [{"Key": k} for k in keys[i : i + 1000]]
                answer = self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}
                )
                if errors := answer.get("Errors"):
                    first = errors[0]
                    raise StorageError(
                        f"delete of {len(errors)} object(s) in s3://{self.bucket} failed, first "
                        f"{first.get('Key')}: {first.get('Code')} {first.get('Message')}"
                    )
        except (ClientError, BotoCoreError) as e:
            raise StorageError(f"delete of {len(keys)} object(s) in s3://{self.bucket} failed: {e}") from None

    def keys_under(self, prefix: str) -> list[str]:
        """Every object key under `prefix` (a directory: '/' is appended)."""
        prefix = prefix.rstrip("/") + "/" if prefix else ""
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return [o["Key"] for page in pages for o in page.get("Contents", ())]

    def key_of(self, path: str) -> str:
        """The object key of a pyarrow path ``bucket/key``."""
        bucket, _, key = path.partition("/")
        if bucket != self.bucket:
            raise StorageError(f"{path!r} is outside bucket {self.bucket!r}")
        return key


def _error_code(e: Any) -> str:
    """The AWS error code of a botocore ClientError."""
    return str(e.response.get("Error", {}).get("Code", ""))


class _Upload(io.RawIOBase):
    """A write-only file that becomes one S3 object (encrypted as configured) when closed."""

    def __init__(self, access: S3Access, key: str) -> None:
        self._access, self._key = access, key
        self._buffer = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115 - closed in close()

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        return self._buffer.write(data)

    def tell(self) -> int:
        return self._buffer.tell()

    def close(self) -> None:
        if self.closed:
            return
        try:
            self._buffer.seek(0)
            self._access.upload(self._key, self._buffer)
        finally:
            self._buffer.close()
            super().close()


class LakeS3Handler(pafs.FileSystemHandler):
    """A pyarrow filesystem over one bucket: reads by pyarrow, writes and copies by boto3."""

    def __init__(self, access: S3Access) -> None:
        self._access = access

    def get_type_name(self) -> str:
        return "lakehouse-s3"

    def equals(self, other: Any) -> bool:
        return isinstance(other, LakeS3Handler) and other._access is self._access

    def normalize_path(self, path: str) -> str:
        return path

    def get_file_info(self, paths: list[str]) -> list[pafs.FileInfo]:
        infos: list[pafs.FileInfo] = self._access.native().get_file_info(paths)
        for info in infos:
            record_pyarrow_info(self._access.key_of(info.path), found=info.type != pafs.FileType.NotFound)
        return infos

    def get_file_info_selector(self, selector: pafs.FileSelector) -> list[pafs.FileInfo]:
        infos: list[pafs.FileInfo] = self._access.native().get_file_info(selector)
        record_pyarrow_list(self._access.key_of(selector.base_dir), len(infos))
        return infos

    def create_dir(self, path: str, recursive: bool) -> None:
        pass  # S3 has no directories; writing a key is enough (no empty "dir/" marker objects)

    # Deletes go through boto3 as well: pyarrow's S3 filesystem re-creates the parent "directory"
    # as an empty marker object after deleting its last file, an unencrypted PutObject.
    def delete_dir(self, path: str) -> None:
        key = self._access.key_of(path)
        if not key:
            raise StorageError(f"refusing to delete every object of bucket {self._access.bucket!r}")
        self._access.delete(self._access.keys_under(key))

    def delete_dir_contents(self, path: str, missing_dir_ok: bool = False) -> None:
        self.delete_dir(path)

    def delete_root_dir_contents(self) -> None:
        raise StorageError("refusing to delete every object of the bucket")

    def delete_file(self, path: str) -> None:
        self._access.delete([self._access.key_of(path)])

    def move(self, src: str, dest: str) -> None:
        self.copy_file(src, dest)
        self.delete_file(src)

    def copy_file(self, src: str, dest: str) -> None:
        self._access.copy(self._access.key_of(src), self._access.key_of(dest))

    def open_input_stream(self, path: str) -> pa.NativeFile:
        # The PyFileSystem around this handler applies compression and buffering itself.
        key = self._access.key_of(path)
        try:
            stream = self._access.native().open_input_stream(path, compression=None)
        except FileNotFoundError:
            record_pyarrow_read(key, None, found=False)
            raise
        record_pyarrow_read(key, None)
        return stream

    def open_input_file(self, path: str) -> pa.NativeFile:
        key = self._access.key_of(path)
        try:
            file = self._access.native().open_input_file(path)
        except FileNotFoundError:
            record_pyarrow_read(key, None, found=False)
            raise
        record_pyarrow_read(key, file.size())
        return file

    def open_output_stream(self, path: str, metadata: Any) -> pa.NativeFile:
        return pa.PythonFile(_Upload(self._access, self._access.key_of(path)), mode="w")

    def open_append_stream(self, path: str, metadata: Any) -> pa.NativeFile:
        raise StorageError("S3 objects cannot be appended to")


def lookup_access(access_id: str) -> S3Access:
    """The open `S3Access` with this id (for pyiceberg's FileIO, built from string properties)."""
    access = _ACCESS.get(access_id)
    if access is None:
        raise StorageError(f"no open lake storage has the S3 access id {access_id!r}")
    return access
