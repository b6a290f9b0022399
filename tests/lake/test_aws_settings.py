"""The lake on S3 as production accounts run it, on the moto server: credentials from a profile, an
assumed role or temporary keys (never required in the environment), the bucket's own region,
SSE-KMS on every object written, and bounded retries that end in an error naming the operation.

moto 5.2.5 does not evaluate a bucket policy's Condition (its `put_bucket_policy` says so: a Deny
with `StringNotEquals s3:x-amz-server-side-encryption` denies every PutObject, encrypted or not),
so the SSE tests check what such a policy checks instead: the headers of every write request, and
the encryption HeadObject reports for every object.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse

from connectors.aws import AwsRetries
from connectors.lake import s3_storage
from connectors.lake.catalog import glue_client, glue_region
from connectors.lake.config import LakeConfig
from connectors.lake.lake import Lake
from connectors.lake.storage import S3Options, Storage, StorageError
from tests.lake.helpers import PATIENTS, changes, snapshot_batch, stream_batch

ROLE = "arn:aws:iam::123456789012:role/lake-writer"
_AWS_ENV = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_ENDPOINT_URL",
)


@pytest.fixture
def aws_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No AWS keys in the environment; shared config files of our own; no instance metadata."""
    for name in _AWS_ENV:
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "aws"
    home.mkdir()
    (home / "config").write_text("")
    (home / "credentials").write_text("")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(home / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return home


@pytest.fixture
def bucket(aws_client_kwargs: dict[str, str]) -> str:
    name = f"lake-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", **aws_client_kwargs).create_bucket(Bucket=name)
    return name


class Requests:
    """Headers of every request a boto3 client sends (a botocore `before-send` hook)."""

    def __init__(self, client: Any) -> None:
        self.sent: list[tuple[str, dict[str, str]]] = []
        client.meta.events.register("before-send.s3", self._record)

    def _record(self, request: Any, **kwargs: Any) -> None:
        operation = kwargs["event_name"].rsplit(".", 1)[-1]
        self.sent.append((operation, {k: _text(v) for k, v in request.headers.items()}))

    def of(self, *operations: str) -> list[dict[str, str]]:
        return [headers for op, headers in self.sent if op in operations]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _sync_and_merge(lake: Lake) -> dict[int, str]:
    """A snapshot, a stream batch with an update and a delete, a merge; the current rows."""
    source = f"src_{uuid.uuid4().hex[:6]}"
    writer = lake.writer(source)
    writer.write(snapshot_batch(10, changes([("I", 10, {"id": i, "name": f"p{i}"}) for i in range(5)])))
    writer.write(
        stream_batch(
            10, 20, changes([("U", 11, {"id": 1, "name": "ünï"}), ("D", 12, {"id": 2, "name": None})])
        )
    )
    lake.current(source).merge()
    rows = lake.current(source).read(PATIENTS.lake_name).to_pylist()
    return {r["id"]: r["name"] for r in rows}


EXPECTED = {0: "p0", 1: "ünï", 3: "p3", 4: "p4"}


def _lake(tmp_path: Path, bucket: str, s3: S3Options) -> Lake:
    return Lake(LakeConfig(root=f"s3://{bucket}/lake", s3=s3, catalog_uri=f"sqlite:///{tmp_path}/catalog.db"))


# -- credentials ----------------------------------------------------------------------------------
def test_lake_runs_on_a_profile_with_no_keys_in_the_environment(
    aws_home: Path, tmp_path: Path, bucket: str, moto_endpoint: str
) -> None:
    (aws_home / "credentials").write_text(
        "[lake-writer]\naws_access_key_id = AKIAPROFILEKEY000001\naws_secret_access_key = profile-secret\n"
    )
    lake = _lake(tmp_path, bucket, S3Options(endpoint_url=moto_endpoint, profile="lake-writer"))
    sent = Requests(lake.storage.s3_access.client)
    assert _sync_and_merge(lake) == EXPECTED
    puts = sent.of("PutObject")
    assert puts and all("Credential=AKIAPROFILEKEY000001/" in h["Authorization"] for h in puts)


def test_lake_assumes_a_role_and_follows_its_rotation(
    aws_home: Path, tmp_path: Path, bucket: str, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The source identity is the default profile of the shared credentials file; STS is moto's
    # (AWS_ENDPOINT_URL_STS is botocore's standard per-service endpoint override).
    (aws_home / "credentials").write_text(
        "[default]\naws_access_key_id = AKIASOURCEKEY0000001\naws_secret_access_key = source-secret\n"
    )
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", moto_endpoint)
    lake = _lake(
        tmp_path,
        bucket,
        S3Options(
            endpoint_url=moto_endpoint, region="us-east-1", role_arn=ROLE, role_session_name="cdc-test"
        ),
    )
    access = lake.storage.s3_access
    sent = Requests(access.client)
    assert _sync_and_merge(lake) == EXPECTED

    identity = access.session.client("sts", region_name="us-east-1").get_caller_identity()
    assert identity["Arn"] == "arn:aws:sts::123456789012:assumed-role/lake-writer/cdc-test"
    role_key = access.credentials()[0]
    assert role_key != "AKIASOURCEKEY0000001"
    puts = sent.of("PutObject")
    assert puts and all(f"Credential={role_key}/" in h["Authorization"] for h in puts)
    assert all("X-Amz-Security-Token" in h for h in puts)

    # botocore renews the role's keys before they expire; pyarrow's filesystem follows them.
    native = access.native()
    assert access.native() is native
    renewed = access.session.client("sts", region_name="us-east-1").assume_role(
        RoleArn=ROLE, RoleSessionName="cdc-test"
    )["Credentials"]
    monkeypatch.setattr(
        access,
        "credentials",
        lambda: (renewed["AccessKeyId"], renewed["SecretAccessKey"], renewed["SessionToken"]),
    )
    assert access.native() is not native
    assert lake.storage.read_bytes(next(iter(lake.storage.list_files("_commits"))).path)


def test_lake_runs_on_temporary_keys_with_their_session_token(
    aws_home: Path, tmp_path: Path, bucket: str, moto_endpoint: str, aws_client_kwargs: dict[str, str]
) -> None:
    temporary = boto3.client("sts", **aws_client_kwargs).get_session_token()["Credentials"]
    s3 = S3Options(
        endpoint_url=moto_endpoint,
        access_key_id=temporary["AccessKeyId"],
        secret_access_key=temporary["SecretAccessKey"],
        session_token=temporary["SessionToken"],
    )
    lake = _lake(tmp_path, bucket, s3)
    sent = Requests(lake.storage.s3_access.client)
    assert _sync_and_merge(lake) == EXPECTED
    puts = sent.of("PutObject")
    assert puts and all(h.get("X-Amz-Security-Token") == temporary["SessionToken"] for h in puts)

    # Secrets stay out of reprs, config dumps and errors.
    shown = [repr(s3), str(lake.config), lake.config.model_dump_json()]
    with pytest.raises(StorageError) as failed:
        Storage(f"s3://no-such-{bucket}/lake", s3).write_bytes("x", b"1")
    shown.append(str(failed.value))
    for text in shown:
        assert temporary["SecretAccessKey"] not in text and temporary["SessionToken"] not in text


def test_inconsistent_credentials_are_refused() -> None:
    with pytest.raises(ValueError, match="session_token goes with"):
        S3Options(session_token="t")
    with pytest.raises(ValueError, match="either profile or explicit keys"):
        S3Options(profile="p", access_key_id="a", secret_access_key="s")
    with pytest.raises(ValueError, match="both access_key_id and secret_access_key"):
        S3Options(access_key_id="a")


# -- region ---------------------------------------------------------------------------------------
def test_region_is_read_from_the_bucket_and_glue_can_differ(
    tmp_path: Path, moto_endpoint: str, aws_client_kwargs: dict[str, str]
) -> None:
    name = f"lake-eu-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", **{**aws_client_kwargs, "region_name": "eu-west-1"}).create_bucket(
        Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    s3 = S3Options(endpoint_url=moto_endpoint, access_key_id="testing", secret_access_key="testing")
    lake = _lake(tmp_path, name, s3)
    assert lake.storage.region == "eu-west-1"
    assert lake.storage.s3_access.client.meta.region_name == "eu-west-1"
    assert _sync_and_merge(lake) == EXPECTED

    config = LakeConfig(root=f"s3://{name}/lake", s3=s3, catalog="glue", glue_endpoint_url=moto_endpoint)
    assert glue_region(config, lake.storage) == "eu-west-1"
    apart = config.model_copy(update={"glue_region": "eu-central-1"})
    assert glue_client(apart, lake.storage).meta.region_name == "eu-central-1"


def test_an_unknown_region_fails_naming_the_setting(moto_endpoint: str) -> None:
    s3 = S3Options(endpoint_url=moto_endpoint, access_key_id="testing", secret_access_key="testing")
    storage = Storage(f"s3://missing-{uuid.uuid4().hex[:8]}/lake", s3)
    with pytest.raises(
        StorageError, match=r"region of bucket .* is unknown .*NoSuchBucket.*\[lake\.s3\] region"
    ):
        storage.read_bytes("_commits/x")


# -- SSE-KMS --------------------------------------------------------------------------------------
@pytest.fixture
def kms_key(aws_client_kwargs: dict[str, str]) -> str:
    return str(boto3.client("kms", **aws_client_kwargs).create_key()["KeyMetadata"]["Arn"])


def test_every_object_written_carries_sse_kms(
    tmp_path: Path,
    bucket: str,
    kms_key: str,
    moto_endpoint: str,
    aws_client_kwargs: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s3 = S3Options(
        endpoint_url=moto_endpoint, access_key_id="testing", secret_access_key="testing", kms_key_id=kms_key
    )
    # Production shape: Iceberg tables in Glue, every write (change log, commit log, pyiceberg's
    # data, manifests and metadata) through the lake's storage.
    lake = Lake(
        LakeConfig(root=f"s3://{bucket}/lake", s3=s3, catalog="glue", glue_endpoint_url=moto_endpoint)
    )
    sent = Requests(lake.storage.s3_access.client)
    assert _sync_and_merge(lake) == EXPECTED
    # The multipart paths too: an upload and a server-side copy above the part threshold.
    monkeypatch.setattr(s3_storage, "MULTIPART_THRESHOLD", 5 * 1024 * 1024)
    big = uuid.uuid4().bytes * (6 * 1024 * 1024 // 16)
    with lake.storage.fs.open_output_stream(lake.storage.full_path("big/one.bin")) as out:
        out.write(big)
    lake.storage.move("big/one.bin", "big/two.bin")
    lake.storage.write_bytes("_runners/x.json", b"{}")

    writes = sent.of("PutObject", "CopyObject", "CreateMultipartUpload")
    assert {op for op, _ in sent.sent} >= {"PutObject", "CopyObject", "CreateMultipartUpload", "UploadPart"}
    for headers in writes:
        assert headers["x-amz-server-side-encryption"] == "aws:kms"
        assert headers["x-amz-server-side-encryption-aws-kms-key-id"] == kms_key

    plain = boto3.client("s3", **aws_client_kwargs)
    keys = [
        o["Key"]
        for page in plain.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        for o in page.get("Contents", ())
    ]
    kinds = {k.rsplit(".", 1)[-1] for k in keys if "." in k}
    assert {"json", "parquet", "avro", "bin"} <= kinds, keys
    assert not [k for k in keys if k.endswith("/")], "no empty directory markers (unencrypted PutObjects)"
    for key in keys:
        head = plain.head_object(Bucket=bucket, Key=key)
        assert (head.get("ServerSideEncryption"), head.get("SSEKMSKeyId")) == ("aws:kms", kms_key), key
    assert lake.storage.read_bytes("big/two.bin") == big


def test_encrypted_writes_are_what_a_deny_unencrypted_policy_requires(
    bucket: str, kms_key: str, moto_endpoint: str
) -> None:
    """Without a key the lake sends no encryption header (the bucket default applies)."""
    plain = Storage(
        f"s3://{bucket}/lake",
        S3Options(endpoint_url=moto_endpoint, access_key_id="testing", secret_access_key="testing"),
    )
    assert plain.s3_access.encryption == {}
    keyed = Storage(
        f"s3://{bucket}/lake",
        S3Options(
            endpoint_url=moto_endpoint,
            access_key_id="testing",
            secret_access_key="testing",
            kms_key_id=kms_key,
        ),
    )
    assert keyed.s3_access.encryption == {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": kms_key}


# -- retries --------------------------------------------------------------------------------------
class Storm:
    """Answers the first `failures` calls of an operation with an S3 error, before any network."""

    def __init__(
        self, client: Any, operation: str, failures: int, status: int = 503, code: str = "SlowDown"
    ) -> None:
        self.calls = 0
        self.failures, self.status, self.code = failures, status, code
        client.meta.events.register(f"before-send.s3.{operation}", self._answer)

    def _answer(self, request: Any, **_: Any) -> AWSResponse | None:
        self.calls += 1
        if self.calls > self.failures:
            return None  # the request goes to S3
        body = f"<Error><Code>{self.code}</Code><Message>injected</Message></Error>".encode()
        return AWSResponse(request.url, self.status, {}, _Raw(body))


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.body


def _storage(bucket: str, moto_endpoint: str, attempts: int) -> Storage:
    retries = AwsRetries(max_attempts=attempts, mode="standard")
    return Storage(
        f"s3://{bucket}/lake",
        S3Options(
            endpoint_url=moto_endpoint, access_key_id="testing", secret_access_key="testing", retries=retries
        ),
    )


def test_a_throttling_storm_is_retried_within_bounds_then_fails_naming_the_operation(
    bucket: str, moto_endpoint: str
) -> None:
    storage = _storage(bucket, moto_endpoint, attempts=3)
    storm = Storm(storage.s3_access.client, "PutObject", failures=100)
    with pytest.raises(StorageError) as failed:
        storage.write_bytes("_commits/src/_latest", b"1")
    assert storm.calls == 3
    message = str(failed.value)
    assert "PutObject" in message and "SlowDown" in message and "reached max retries: 2" in message
    assert f"s3://{bucket}/lake/_commits/src/_latest" in message


def test_a_short_storm_of_500s_is_ridden_out(bucket: str, moto_endpoint: str) -> None:
    storage = _storage(bucket, moto_endpoint, attempts=4)
    storm = Storm(storage.s3_access.client, "PutObject", failures=2, status=500, code="InternalError")
    assert storage.put_if_absent("_commits/src/000000000001.json", b"{}") is not None
    assert storm.calls == 3
    assert storage.read_bytes("_commits/src/000000000001.json") == b"{}"
    assert storage.put_if_absent("_commits/src/000000000001.json", b"{}") is None  # 412 is not retried
    assert storm.calls == 4


def test_every_client_factory_uses_the_one_botocore_config(
    aws_home: Path, tmp_path: Path, bucket: str, moto_endpoint: str
) -> None:
    from connectors.catalog.redshift_config import RedshiftAws
    from connectors.dynamodb.client import AwsClients
    from connectors.dynamodb.config import DynamoDBSourceConfig
    from pipelines.config import parse_config
    from pipelines.publish.catalogs import glue_client as publish_glue_client
    from pipelines.search.config import SynonymsConfig
    from pipelines.search.synonym_publish import opensearch_service_client, s3_client

    retries = AwsRetries(mode="adaptive", max_attempts=7, connect_timeout_seconds=3, read_timeout_seconds=20)
    s3 = S3Options(
        endpoint_url=moto_endpoint,
        region="us-east-1",
        access_key_id="testing",
        secret_access_key="testing",
        retries=retries,
    )
    config = parse_config(
        {
            "lake": {
                "root": f"s3://{bucket}/lake",
                "glue_region": "eu-west-1",
                "s3": json.loads(s3.model_dump_json()),
            }
        }
    )
    synonyms = SynonymsConfig(package="syn-test", aws_region="eu-west-1")
    clients = {
        "lake s3": (Storage(f"s3://{bucket}/lake", s3).s3_access.client, retries),
        "publish glue": (publish_glue_client(config), retries),
        "synonyms s3": (s3_client(s3), retries),
        "opensearch service": (opensearch_service_client(synonyms), AwsRetries()),
        "redshift data": (
            boto3.client("redshift-data", **RedshiftAws(retries=retries).client_kwargs(None)),
            retries,
        ),
        "dynamodb": (
            AwsClients(DynamoDBSourceConfig(name="d", tables=("table",)))._client("dynamodb"),
            AwsRetries(max_attempts=6, read_timeout_seconds=30),
        ),
    }
    for name, (client, expected) in clients.items():
        cfg = client.meta.config
        assert cfg.retries == {"mode": expected.mode, "total_max_attempts": expected.max_attempts}, name
        assert (cfg.connect_timeout, cfg.read_timeout) == (
            expected.connect_timeout_seconds,
            expected.read_timeout_seconds,
        ), name
    assert clients["publish glue"][0].meta.region_name == "eu-west-1"


def test_dagster_lake_resource_needs_no_keys(aws_home: Path) -> None:
    import dagster as dg

    from dagster_project.resources import lake_resource

    config = LakeConfig(
        root="s3://bucket/lake",
        catalog="glue",
        glue_region="eu-central-1",
        s3=S3Options(region="eu-west-1", role_arn=ROLE, kms_key_id="alias/lake"),
    )
    resource = lake_resource(config)
    assert resource.aws_secret_access_key is None and resource.aws_session_token is None
    assert resource.lake().config == config

    keyed = LakeConfig(
        root="s3://bucket/lake",
        s3=S3Options(
            region="eu-west-1", access_key_id="AKIA1", secret_access_key="s3cr3t", session_token="t0k3n"
        ),
    )
    resource = lake_resource(keyed)
    assert isinstance(resource.aws_secret_access_key, dg.EnvVar)
    assert isinstance(resource.aws_session_token, dg.EnvVar)
    shown = resource.s3.model_dump_json()
    assert "AKIA1" in shown and "s3cr3t" not in shown and "t0k3n" not in shown


def test_duckdb_reads_the_s3_lake_with_its_region_and_temporary_keys(
    aws_home: Path, tmp_path: Path, bucket: str, moto_endpoint: str, aws_client_kwargs: dict[str, str]
) -> None:
    from connectors.catalog.warehouse import connect, register_lake

    temporary = boto3.client("sts", **aws_client_kwargs).get_session_token()["Credentials"]
    s3 = S3Options(
        endpoint_url=moto_endpoint,
        access_key_id=temporary["AccessKeyId"],
        secret_access_key=temporary["SecretAccessKey"],
        session_token=temporary["SessionToken"],
    )
    lake = _lake(tmp_path, bucket, s3)
    assert _sync_and_merge(lake) == EXPECTED
    source = lake.storage.list_files("_commits").__next__().path.split("/")[1]
    con = connect()
    try:
        register_lake(con, lake, [source])
        secret = con.sql("SELECT secret_string FROM duckdb_secrets() WHERE name = 'lake_s3'").fetchone()[0]
        assert "us-east-1" in secret and temporary["SessionToken"] not in secret  # DuckDB redacts it
        rows = con.sql(f'SELECT id, name FROM "{source}"."{PATIENTS.lake_name}" ORDER BY id').fetchall()
    finally:
        con.close()
    assert dict(rows) == EXPECTED
