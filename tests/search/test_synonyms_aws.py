"""The synonym pipeline with target 'aws': packages on Amazon OpenSearch Service (the validating fake).

The synonyms table comes through the real MySQL source and lake; dictionary versions go to a
versioned bucket on moto; the fake control plane checks that each S3 object exists when it
"copies" it and validates every request against the botocore model.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from pipelines.search.config import SynonymsConfig
from pipelines.search.synonym_publish import publish_synonyms, synonyms_path
from tests.fakes.opensearch_packages import FakeOpenSearchPackages, OpenSearchPackagesServer
from tests.search.test_synonym_scenario import Scenario

DOMAINS = ("search-prod", "search-canary")


def _object_exists(s3: Any) -> Callable[[str, str], bool]:
    def exists(bucket: str, key: str) -> bool:
        try:
            s3.head_object(Bucket=bucket, Key=key)
        except ClientError:
            return False
        return True

    return exists


@pytest.fixture
def aws_scenario(mysql_db: Any, stack: Any, aws_client_kwargs: dict[str, str], tmp_path: Any) -> Any:
    s = Scenario(mysql_db, stack, aws_client_kwargs, tmp_path)
    fake = FakeOpenSearchPackages(s3_check=_object_exists(s.s3))
    for domain in DOMAINS:
        fake.add_domain(domain)
    with OpenSearchPackagesServer(fake) as server:
        syn: SynonymsConfig = s.config.synonyms.model_copy(
            update={"target": "aws", "domains": DOMAINS, "aws_endpoint_url": server.endpoint_url, "poll_seconds": 0.01,
                    "package": f"syn-aws-{uuid.uuid4().hex[:6]}"}
        )  # fmt: skip
        s.config = s.config.model_copy(update={"synonyms": syn})
        service = boto3.client("opensearch", **{**aws_client_kwargs, "endpoint_url": server.endpoint_url})
        yield s, fake, service


def test_first_publish_creates_and_associates_then_changes_update(aws_scenario: Any) -> None:
    s, fake, service = aws_scenario
    s.run_sql("INSERT INTO SynonymsTable (Base_Term, Synonym_1) VALUES ('danish', 'croissant')")
    s.capture()
    with pytest.raises(LookupError, match="synonyms publish"):
        synonyms_path(s.config, service)  # no package yet: indices cannot reference it
    first = publish_synonyms(s.lake, s.config, s.client, indices=[], s3=s.s3, service=service)
    assert first.changed and first.applied and first.package_version
    package_id = fake.package_id(s.config.synonyms.package)
    assert first.package_id == package_id and synonyms_path(s.config, service) == f"analyzers/{package_id}"
    listed = service.list_domains_for_package(PackageID=package_id)["DomainPackageDetailsList"]
    assert {(d["DomainName"], d["DomainPackageStatus"], d["PackageVersion"]) for d in listed} == {
        (domain, "ACTIVE", first.package_version) for domain in DOMAINS
    }
    # Unchanged content: no new S3 version, no package call.
    s.capture()
    unchanged = publish_synonyms(s.lake, s.config, s.client, indices=[], s3=s.s3, service=service)
    assert not unchanged.changed and not unchanged.applied
    # A new row: a new version, applied to both domains.
    s.run_sql("INSERT INTO SynonymsTable (Base_Term, Synonym_1) VALUES ('gelato', 'ice cream')")
    s.capture()
    second = publish_synonyms(s.lake, s.config, s.client, indices=[], s3=s.s3, service=service)
    assert second.changed and second.package_version != first.package_version
    listed = service.list_domains_for_package(PackageID=package_id)["DomainPackageDetailsList"]
    assert {d["PackageVersion"] for d in listed} == {second.package_version}


def test_a_failed_association_is_an_error_naming_the_domain(aws_scenario: Any) -> None:
    from connectors.opensearch.packages import AssociationFailedError

    s, fake, service = aws_scenario
    s.run_sql("INSERT INTO SynonymsTable (Base_Term, Synonym_1) VALUES ('danish', 'croissant')")
    s.capture()
    fake.fail_next_association("search-canary", "ASSOCIATION_FAILED", "analyzer refused the dictionary")
    with pytest.raises(AssociationFailedError, match="search-canary"):
        publish_synonyms(s.lake, s.config, s.client, indices=[], s3=s.s3, service=service)
