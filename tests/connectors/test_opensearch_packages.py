"""The synonym package lifecycle on Amazon OpenSearch Service, against the validating fake.

Every request goes through a real boto3 ``opensearch`` client to the fake, which checks it against
botocore's service model; every response the client receives is checked again here against the
operation's output shape (raw JSON by ``wire_errors``, botocore's parse by ``ParamValidator``) or,
for errors, against the operation's modelled error shapes. Dictionary files live in a bucket on the
moto server, and the fake asks moto whether the object exists before it "copies" it. The
publisher's clock and sleep are fake, so waits and timeouts take no time.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from connectors.opensearch.packages import (
    AssociationFailedError,
    PackageError,
    PackageFailedError,
    PackagePublisher,
    PackageRequestError,
    PackageTimeoutError,
)
from tests.fakes import fake_server
from tests.fakes.opensearch_packages import (
    FakeOpenSearchPackages,
    OpenSearchPackagesServer,
)

NAME = "customer-synonyms"
DOMAINS = ("search-marketing", "search-coaching")
FRAMEWORK_CODES = {
    "MissingAuthenticationTokenException",
    "InvalidSignatureException",
    "UnknownOperationException",
    "NotImplementedInFake",
}


class FakeTime:
    """The publisher's clock and sleep: sleeping advances the clock and nothing else."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept = 0.0
        self.on_sleep: Callable[[], None] = lambda: None

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.slept += seconds
        self.on_sleep()


class ResponseAudit(fake_server.ResponseAudit):
    """Responses against the OpenSearch Service model; rest-json errors by their header and body."""

    def error_problems(self, http_response: Any, body: dict[str, Any], model: Any) -> list[str]:
        problems = []
        code = http_response.headers.get("x-amzn-ErrorType", "").split(":", 1)[0]
        modelled = {s.name for s in model.error_shapes}
        if code not in modelled | FRAMEWORK_CODES:
            problems.append(f"error code {code!r} is not one of {sorted(modelled)}")
        if set(body) != {"message"} or not isinstance(body["message"], str):
            problems.append(f"unexpected error body {body}")
        return problems


def make_client(endpoint_url: str, audit: ResponseAudit, *, parameter_validation: bool = True) -> Any:
    client = boto3.client(
        "opensearch",
        endpoint_url=endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        # One attempt: the fake's errors must reach the test, not be retried away.
        config=Config(retries={"total_max_attempts": 1}, parameter_validation=parameter_validation),
    )
    client.meta.events.register("after-call", audit)
    return client


@pytest.fixture
def s3(aws_client_kwargs: dict[str, str]) -> Any:
    return boto3.client("s3", **aws_client_kwargs)


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"synonyms-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def object_exists(s3: Any) -> Callable[[str, str], bool]:
    """The fake's s3_check: does moto hold the object the package is copied from?"""

    def exists(bucket: str, key: str) -> bool:
        try:
            s3.head_object(Bucket=bucket, Key=key)
        except ClientError:
            return False
        return True

    return exists


@pytest.fixture
def fake_options() -> dict[str, Any]:
    return {}


@pytest.fixture
def fake(object_exists: Callable[[str, str], bool], fake_options: dict[str, Any]) -> FakeOpenSearchPackages:
    fake = FakeOpenSearchPackages(s3_check=object_exists, **fake_options)
    for domain in DOMAINS:
        fake.add_domain(domain)
    return fake


@pytest.fixture
def server(fake: FakeOpenSearchPackages) -> Iterator[OpenSearchPackagesServer]:
    with OpenSearchPackagesServer(fake) as srv:
        yield srv
        assert srv.response_problems == []


@pytest.fixture
def audit() -> Iterator[ResponseAudit]:
    audit = ResponseAudit()
    yield audit
    assert audit.checked > 0
    assert audit.problems == []


@pytest.fixture
def client(server: OpenSearchPackagesServer, audit: ResponseAudit) -> Any:
    return make_client(server.endpoint_url, audit)


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def publisher(client: Any, fake_time: FakeTime) -> PackagePublisher:
    return PackagePublisher(
        client, timeout_seconds=60.0, poll_seconds=5.0, sleep=fake_time.sleep, clock=fake_time.clock
    )


def upload(s3: Any, bucket: str, text: str) -> str:
    key = f"synonyms/{uuid.uuid4().hex}.txt"
    s3.put_object(Bucket=bucket, Key=key, Body=text.encode())
    return key


def associations(client: Any, package_id: str) -> dict[str, dict[str, Any]]:
    listed = client.list_domains_for_package(PackageID=package_id)["DomainPackageDetailsList"]
    return {a["DomainName"]: a for a in listed}


# ---- the publisher ---------------------------------------------------------------------------
def test_first_publish_creates_the_package_and_activates_it_on_each_domain(
    publisher: PackagePublisher, client: Any, fake: FakeOpenSearchPackages, s3: Any, bucket: str
) -> None:
    key = upload(s3, bucket, "danish, croissant, pastry\n")
    published = publisher.publish(NAME, bucket, key, DOMAINS, "synonyms for the 360 search")

    assert published.created
    assert published.package_name == NAME
    assert published.package_id == fake.package_id(NAME)
    assert published.version == "v1"
    assert dict(published.domains) == dict.fromkeys(DOMAINS, "ACTIVE")
    assert published.synonyms_path == f"analyzers/{published.package_id}"
    listed = associations(client, published.package_id)
    assert {d: (a["DomainPackageStatus"], a["PackageVersion"]) for d, a in listed.items()} == dict.fromkeys(
        DOMAINS, ("ACTIVE", "v1")
    )
    assert {a["ReferencePath"] for a in listed.values()} == {published.synonyms_path}
    details = client.describe_packages(Filters=[{"Name": "PackageName", "Value": [NAME]}])[
        "PackageDetailsList"
    ]
    assert [(d["PackageStatus"], d["PackageType"], d["PackageDescription"]) for d in details] == [
        ("AVAILABLE", "TXT-DICTIONARY", "synonyms for the 360 search")
    ]
    assert fake.calls.count("CreatePackage") == 1
    assert fake.calls.count("AssociatePackage") == 2
    assert "UpdatePackage" not in fake.calls


def test_second_publish_updates_the_package_and_associates_every_domain_again(
    publisher: PackagePublisher, client: Any, fake: FakeOpenSearchPackages, s3: Any, bucket: str
) -> None:
    first = publisher.publish(NAME, bucket, upload(s3, bucket, "danish, croissant\n"), DOMAINS)
    key = upload(s3, bucket, "danish, croissant\ngelato, ice cream\n")
    second = publisher.publish(NAME, bucket, key, DOMAINS, commit_message="add gelato")

    assert not second.created
    assert second.package_id == first.package_id
    assert (first.version, second.version) == ("v1", "v2")
    assert dict(second.domains) == dict.fromkeys(DOMAINS, "ACTIVE")
    listed = associations(client, second.package_id)
    assert {d: (a["DomainPackageStatus"], a["PackageVersion"]) for d, a in listed.items()} == dict.fromkeys(
        DOMAINS, ("ACTIVE", "v2")
    )
    history = client.get_package_version_history(PackageID=second.package_id)["PackageVersionHistoryList"]
    assert [(h["PackageVersion"], h.get("CommitMessage")) for h in history] == [
        ("v2", "add gelato"),
        ("v1", None),
    ]
    assert fake.calls.count("CreatePackage") == 1
    assert fake.calls.count("UpdatePackage") == 1
    assert fake.calls.count("AssociatePackage") == 4


def test_a_domain_keeps_its_version_until_the_package_is_associated_again(
    publisher: PackagePublisher, client: Any, s3: Any, bucket: str
) -> None:
    """Why the publisher associates after every update: the fake behaves as AWS documents."""
    first = publisher.publish(NAME, bucket, upload(s3, bucket, "a, b\n"), DOMAINS[:1])
    client.update_package(
        PackageID=first.package_id,
        PackageSource={"S3BucketName": bucket, "S3Key": upload(s3, bucket, "a, c\n")},
    )
    statuses = []
    for _ in range(3):
        details = client.describe_packages(Filters=[{"Name": "PackageID", "Value": [first.package_id]}])
        statuses.append(details["PackageDetailsList"][0]["PackageStatus"])
    assert statuses == ["VALIDATING", "AVAILABLE", "AVAILABLE"]
    assert details["PackageDetailsList"][0]["AvailablePackageVersion"] == "v2"
    for _ in range(3):
        domain = associations(client, first.package_id)[DOMAINS[0]]
        assert (domain["DomainPackageStatus"], domain["PackageVersion"]) == ("ACTIVE", "v1")


def test_copy_failed_raises_with_the_service_error_details(
    publisher: PackagePublisher, fake: FakeOpenSearchPackages, s3: Any, bucket: str
) -> None:
    fake.fail_next_copy("S3AccessDenied", "Access denied to the bucket")
    with pytest.raises(PackageFailedError) as failed:
        publisher.publish(NAME, bucket, upload(s3, bucket, "a, b\n"), DOMAINS)
    assert failed.value.status == "COPY_FAILED"
    assert (failed.value.error_type, failed.value.error_message) == (
        "S3AccessDenied",
        "Access denied to the bucket",
    )
    message = str(failed.value)
    assert NAME in message and "COPY_FAILED" in message and "Access denied to the bucket" in message
    assert "testing" not in message  # never the credentials
    assert "AssociatePackage" not in fake.calls


def test_a_missing_s3_object_fails_the_copy(publisher: PackagePublisher, bucket: str) -> None:
    with pytest.raises(PackageError, match=r"COPY_FAILED: S3ObjectNotAccessible: .*synonyms/absent\.txt"):
        publisher.publish(NAME, bucket, "synonyms/absent.txt", DOMAINS)


def test_validation_failed_raises_and_the_next_publish_repairs_the_package(
    publisher: PackagePublisher, fake: FakeOpenSearchPackages, s3: Any, bucket: str
) -> None:
    fake.fail_next_validation("InvalidDictionary", "Line 3: malformed synonym rule")
    with pytest.raises(
        PackageFailedError, match="VALIDATION_FAILED: InvalidDictionary: Line 3: malformed"
    ) as failed:
        publisher.publish(NAME, bucket, upload(s3, bucket, "a, b\n"), DOMAINS)
    assert failed.value.package_id == fake.package_id(NAME)

    repaired = publisher.publish(NAME, bucket, upload(s3, bucket, "a, b\n"), DOMAINS)
    assert (repaired.created, repaired.version, repaired.package_id) == (False, "v1", failed.value.package_id)
    assert dict(repaired.domains) == dict.fromkeys(DOMAINS, "ACTIVE")


def test_association_failed_stops_the_rollout_before_the_next_domain(
    publisher: PackagePublisher, client: Any, fake: FakeOpenSearchPackages, s3: Any, bucket: str
) -> None:
    fake.fail_next_association(DOMAINS[0], "PluginConflict", "The domain could not load the dictionary")
    with pytest.raises(AssociationFailedError) as failed:
        publisher.publish(NAME, bucket, upload(s3, bucket, "a, b\n"), DOMAINS)
    assert (failed.value.domain, failed.value.version, failed.value.error_type) == (
        DOMAINS[0],
        "v1",
        "PluginConflict",
    )
    assert "ASSOCIATION_FAILED" in str(failed.value) and "could not load the dictionary" in str(failed.value)
    package_id = fake.package_id(NAME)
    assert package_id is not None
    assert list(associations(client, package_id)) == [DOMAINS[0]]  # the second domain was never touched


def test_a_stalled_copy_times_out_naming_the_last_status(
    publisher: PackagePublisher, fake: FakeOpenSearchPackages, fake_time: FakeTime, s3: Any, bucket: str
) -> None:
    fake.stall()
    with pytest.raises(PackageTimeoutError) as timed_out:
        publisher.publish(NAME, bucket, upload(s3, bucket, "a, b\n"), DOMAINS)
    assert timed_out.value.last_status == "COPYING"
    assert "AVAILABLE" in str(timed_out.value) and "COPYING" in str(timed_out.value)
    assert fake_time.slept == 60.0
    assert fake.calls.count("DescribePackages") == 1 + 13  # the look-up, then a poll every 5 s for 60 s


def test_a_stalled_association_times_out(
    publisher: PackagePublisher, fake: FakeOpenSearchPackages, fake_time: FakeTime, s3: Any, bucket: str
) -> None:
    fake_time.on_sleep = lambda: fake.stall("AssociatePackage" in fake.calls)
    with pytest.raises(PackageTimeoutError, match="ACTIVE on 'search-marketing'") as timed_out:
        publisher.publish(NAME, bucket, upload(s3, bucket, "a, b\n"), DOMAINS)
    assert timed_out.value.last_status == "ASSOCIATING at version v1"


def test_a_package_left_copying_by_an_interrupted_run_settles_before_the_update(
    publisher: PackagePublisher, client: Any, s3: Any, bucket: str
) -> None:
    source = {"S3BucketName": bucket, "S3Key": upload(s3, bucket, "a, b\n")}
    created = client.create_package(PackageName=NAME, PackageType="TXT-DICTIONARY", PackageSource=source)
    assert created["PackageDetails"]["PackageStatus"] == "COPYING"

    published = publisher.publish(NAME, bucket, upload(s3, bucket, "a, c\n"), DOMAINS)
    assert (published.created, published.version) == (False, "v2")
    assert published.package_id == created["PackageDetails"]["PackageID"]


@pytest.mark.parametrize("fake_options", [{"sparse_pages": True, "page_size": 1}])
def test_the_publisher_follows_next_token(
    publisher: PackagePublisher, client: Any, fake: FakeOpenSearchPackages, s3: Any, bucket: str
) -> None:
    source = {"S3BucketName": bucket, "S3Key": upload(s3, bucket, "x, y\n")}
    for other in ("other-a", "other-b", "other-c"):
        client.create_package(PackageName=other, PackageType="TXT-DICTIONARY", PackageSource=source)
    first = publisher.publish(NAME, bucket, upload(s3, bucket, "a, b\n"), DOMAINS)
    empty_page = client.describe_packages(Filters=[{"Name": "PackageName", "Value": [NAME]}])
    assert empty_page["PackageDetailsList"] == [] and "NextToken" in empty_page  # pages cut before filtering

    second = publisher.publish(NAME, bucket, upload(s3, bucket, "a, c\n"), DOMAINS)
    assert (first.created, second.created, second.package_id, second.version) == (
        True,
        False,
        first.package_id,
        "v2",
    )
    page = client.list_domains_for_package(PackageID=first.package_id)
    assert len(page["DomainPackageDetailsList"]) == 1 and "NextToken" in page
    assert dict(second.domains) == dict.fromkeys(DOMAINS, "ACTIVE")


@pytest.mark.parametrize("fake_options", [{"stale_reads": 2}])
def test_stale_status_reads_after_an_update_are_not_taken_for_the_new_version(
    publisher: PackagePublisher, client: Any, fake: FakeOpenSearchPackages, s3: Any, bucket: str
) -> None:
    """Right after UpdatePackage / AssociatePackage a read may still show AVAILABLE / ACTIVE at v1."""
    publisher.publish(NAME, bucket, upload(s3, bucket, "a, b\n"), DOMAINS)
    second = publisher.publish(NAME, bucket, upload(s3, bucket, "a, c\n"), DOMAINS)
    assert second.version == "v2"
    listed = associations(client, second.package_id)
    assert {d: (a["DomainPackageStatus"], a["PackageVersion"]) for d, a in listed.items()} == dict.fromkeys(
        DOMAINS, ("ACTIVE", "v2")
    )


def test_a_request_the_service_refuses_becomes_a_package_request_error(
    publisher: PackagePublisher, s3: Any, bucket: str
) -> None:
    with pytest.raises(PackageRequestError) as refused:
        publisher.publish(NAME, bucket, upload(s3, bucket, "a, b\n"), ["no-such-domain"])
    assert (refused.value.operation, refused.value.code) == ("AssociatePackage", "ResourceNotFoundException")
    assert isinstance(refused.value.__cause__, ClientError)


# ---- the fake's contract -------------------------------------------------------------------------
SOURCE = {"S3BucketName": "some-bucket", "S3Key": "synonyms.txt"}


@pytest.mark.parametrize(
    ("call", "kwargs", "expected"),
    [
        (
            "create_package",
            {"PackageName": NAME, "PackageType": "NOPE", "PackageSource": SOURCE},
            "enum value set",
        ),
        (
            "create_package",
            {"PackageName": "a" * 257, "PackageType": "TXT-DICTIONARY", "PackageSource": SOURCE},
            "less than or equal to 256",
        ),
        (
            "create_package",
            {"PackageName": "Bad_Name", "PackageType": "TXT-DICTIONARY", "PackageSource": SOURCE},
            "pattern",
        ),
        (
            "create_package",
            {"PackageName": NAME, "PackageType": "TXT-DICTIONARY"},
            "Missing required parameter",
        ),
        ("update_package", {"PackageID": "X123", "PackageSource": SOURCE}, "pattern"),
        ("update_package", {"PackageID": "F1", "PackageSource": SOURCE, "CommitMessage": "m" * 161}, "160"),
        ("describe_packages", {"Filters": [{"Name": "Colour", "Value": ["red"]}]}, "enum value set"),
        ("describe_packages", {"MaxResults": 101}, "less than or equal to 100"),
        ("list_domains_for_package", {"PackageID": "F1", "MaxResults": 101}, "less than or equal to 100"),
        ("associate_package", {"PackageID": "F1", "DomainName": "d" * 29}, "less than or equal to 28"),
    ],
)
def test_the_fake_rejects_requests_that_break_the_model(
    server: OpenSearchPackagesServer, audit: ResponseAudit, call: str, kwargs: dict[str, Any], expected: str
) -> None:
    # Client-side validation off: botocore would catch some of these (required members) itself.
    client = make_client(server.endpoint_url, audit, parameter_validation=False)
    with pytest.raises(client.exceptions.ValidationException, match=expected) as rejected:
        getattr(client, call)(**kwargs)
    assert rejected.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert server.model.calls == []  # nothing reached the model


def test_the_fake_answers_with_the_modelled_exceptions(client: Any, s3: Any, bucket: str) -> None:
    source = {"S3BucketName": bucket, "S3Key": upload(s3, bucket, "a, b\n")}
    package_id = client.create_package(PackageName=NAME, PackageType="TXT-DICTIONARY", PackageSource=source)[
        "PackageDetails"
    ]["PackageID"]
    with pytest.raises(client.exceptions.ResourceAlreadyExistsException) as exists:
        client.create_package(PackageName=NAME, PackageType="TXT-DICTIONARY", PackageSource=source)
    assert exists.value.response["ResponseMetadata"]["HTTPStatusCode"] == 409
    with pytest.raises(client.exceptions.ConflictException, match="only AVAILABLE"):
        client.associate_package(PackageID=package_id, DomainName=DOMAINS[0])
    with pytest.raises(client.exceptions.ResourceNotFoundException, match="F999999999"):
        client.list_domains_for_package(PackageID="F999999999")
    with pytest.raises(client.exceptions.ResourceNotFoundException, match="Domain not found"):
        client.list_packages_for_domain(DomainName="no-such-domain")
    with pytest.raises(ClientError) as unimplemented:
        client.list_domain_names()
    assert unimplemented.value.response["Error"]["Code"] == "NotImplementedInFake"


def _raw_request(
    url: str, method: str, path: str, scope_service: str | None, body: dict[str, Any] | None = None
) -> tuple[int, str, dict[str, Any]]:
    """(HTTP status, error code, JSON body) of a request signed for ``scope_service`` (None: unsigned)."""
    data = b"" if body is None else json.dumps(body).encode()
    headers = {} if body is None else {"Content-Type": "application/json"}
    request = AWSRequest(method=method, url=url + path, data=data, headers=headers)
    if scope_service is not None:
        SigV4Auth(Credentials("testing", "testing"), scope_service, "us-east-1").add_auth(request)
    prepared = urllib.request.Request(
        request.url, data=data or None, method=method, headers=dict(request.headers.items())
    )
    try:
        with urllib.request.urlopen(prepared) as response:
            return response.status, "", json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("x-amzn-ErrorType", "").split(":")[0], json.loads(error.read())


def test_the_fake_requires_a_signature_for_its_service_and_a_known_route(
    server: OpenSearchPackagesServer,
) -> None:
    url, packages = server.endpoint_url, "/2021-01-01/domain/search-marketing/packages"
    assert _raw_request(url, "GET", packages, "es") == (200, "", {"DomainPackageDetailsList": []})
    assert _raw_request(url, "GET", packages, None)[:2] == (403, "MissingAuthenticationTokenException")
    assert _raw_request(url, "GET", packages, "s3")[:2] == (403, "InvalidSignatureException")
    assert _raw_request(url, "GET", "/2021-01-01/packages/a/b/c/d", "es")[:2] == (
        404,
        "UnknownOperationException",
    )
    assert _raw_request(url, "PUT", "/2021-01-01/packages/describe", "es")[:2] == (
        404,
        "UnknownOperationException",
    )


def test_the_fake_rejects_unknown_and_misplaced_body_members(server: OpenSearchPackagesServer) -> None:
    url = server.endpoint_url
    status, code, body = _raw_request(url, "POST", "/2021-01-01/packages/describe", "es", {"Colour": "red"})
    assert (status, code) == (400, "ValidationException") and "Colour" in body["message"]
    associate = "/2021-01-01/packages/associate/F100000000/search-marketing"
    status, code, body = _raw_request(url, "POST", associate, "es", {"DomainName": "search-coaching"})
    assert (status, code) == (400, "ValidationException") and "DomainName" in body["message"]
    assert server.model.calls == []
