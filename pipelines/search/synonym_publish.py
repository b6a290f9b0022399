"""The synonym package lifecycle: synonyms table (via CDC, in the lake) -> dictionary -> S3 -> analyzers.

1. read `SynonymsTable` from the lake's current state and render the Solr-format dictionary
   (invalid rows left out and reported with their row id);
2. store it in a versioned S3 bucket with its content hash — unchanged content stops here;
3. apply it: on the local node, install the file under `analyzers/<package>` and reload the
   search analyzers of the indices; on Amazon OpenSearch Service, create or update the
   TXT-DICTIONARY package, wait for it, associate it with each domain and wait for ACTIVE;
4. verify with `_analyze` that the new synonyms are live.
No reindex: the synonyms are in search analyzers only (see connectors/opensearch/templates).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from connectors.aws import AwsIdentity, aws_session, encrypt_writes, make_client
from connectors.lake.lake import Lake
from connectors.lake.storage import S3Options
from connectors.opensearch.local_package import LocalPackage
from pipelines.search.config import SearchConfig, SynonymsConfig
from pipelines.search.synonyms import Rejected, read_synonym_rows, render_dictionary
from pipelines.search.synonyms_store import SynonymStore

log = logging.getLogger(__name__)


@dataclass
class SynonymReport:
    """What one publish did (CLI output and Dagster metadata)."""

    sha256: str = ""
    lines: int = 0
    rejected: list[Rejected] = field(default_factory=list)
    s3_version: str = ""
    changed: bool = False  # a new dictionary version was stored
    applied: bool = False  # installed where analyzers read it: the node's file, or the domains' package
    package_id: str = ""
    package_version: str = ""
    synonyms_path: str = ""  # where the node reads the dictionary (target 'local')
    reloaded: list[str] = field(default_factory=list)  # indices whose search analyzers were reloaded
    not_created: list[str] = field(default_factory=list)  # aliases that will read it once created
    domains: list[str] = field(default_factory=list)  # domains running package_version (target 'aws')
    seconds: float = 0.0

    def describe(self) -> str:
        """One line for people: the dictionary, whether it is a new version, and where it is live."""
        stored = (
            f"stored new version {self.s3_version}"
            if self.changed
            else f"unchanged (version {self.s3_version})"
        )
        if self.reloaded:
            where = f"search analyzers of {', '.join(self.reloaded)} reloaded"
        elif self.package_version:
            where = f"package {self.package_id} version {self.package_version} active on {', '.join(self.domains)}"
        elif self.not_created:
            # The node reads the file when an index is created: nothing to reload yet.
            where = (
                f"on the node as {self.synonyms_path}; no index uses it yet, it applies when "
                f"the {' and '.join(self.not_created)} index is created"
            )
        else:
            where = "already live, nothing to apply"
        return (
            f"synonyms: {self.lines} lines, {len(self.rejected)} rejected, sha256 {self.sha256[:12]}; "
            f"{stored}; {where}"
        )


def s3_client(options: S3Options) -> Any:
    """An S3 client for the synonyms bucket: the configured (or chain) credentials, the one botocore
    Config, and with `kms_key_id` set, SSE-KMS on every object it writes."""
    client = make_client(
        aws_session(options, options.region),
        "s3",
        region=options.region,
        endpoint_url=options.endpoint_url,
        retries=options.retries,
    )
    if options.kms_key_id:
        encrypt_writes(client, options.kms_key_id)
    return client


def opensearch_service_client(config: SynonymsConfig) -> Any:
    return make_client(
        aws_session(AwsIdentity(), config.aws_region),
        "opensearch",
        region=config.aws_region,
        endpoint_url=config.aws_endpoint_url,
    )


def synonyms_path(config: SearchConfig, service: Any = None) -> str:
    """What the index settings reference: analyzers/<package> locally, analyzers/<package id> on AWS."""
    syn = config.synonyms
    if syn.target == "local":
        return f"analyzers/{syn.package}"
    service = service or opensearch_service_client(syn)
    found = service.describe_packages(Filters=[{"Name": "PackageName", "Value": [syn.package]}])[
        "PackageDetailsList"
    ]
    if not found:
        raise LookupError(
            f"package {syn.package!r} does not exist yet: run `lakehouse synonyms publish` before creating indices"
        )
    return f"analyzers/{found[0]['PackageID']}"


def merge_synonyms_table(lake: Lake, syn: SynonymsConfig) -> int:
    """Bring the synonyms table's current state up to the lake's newest commit of it; returns that
    commit (0: none yet). Raises `MergeConflictError` when another merger (a running
    `lakehouse stream`) committed to it meanwhile."""
    latest = lake.commit_log(syn.source).latest()
    head = latest.heads.get(syn.lake_table, 0) if latest else 0
    if head:
        lake.current(syn.source).merge_table(syn.lake_table, head)
    return head


def publish_synonyms(
    lake: Lake,
    config: SearchConfig,
    client: Any,
    *,
    indices: Sequence[str] | None = None,
    s3: Any = None,
    service: Any = None,
    force_apply: bool = False,
) -> SynonymReport:
    """Render, store and apply the dictionary; does nothing beyond step 2 when it is unchanged
    (unless `force_apply`, or the local node's file differs from the stored version)."""
    started = time.monotonic()
    syn = config.synonyms
    report = SynonymReport()
    dictionary = render_dictionary(read_synonym_rows(lake, syn.source, syn.lake_table))
    report.sha256, report.lines, report.rejected = (
        dictionary.sha256,
        dictionary.lines,
        list(dictionary.rejected),
    )
    for r in dictionary.rejected:
        log.warning("synonym row %s left out: %s", r.row_id, r.reason)
    store = SynonymStore(s3 or s3_client(syn.s3), syn.bucket, syn.key)
    store.ensure_bucket()
    stored = store.publish(dictionary)
    report.s3_version, report.changed = stored.version_id, stored.changed
    targets = list(indices) if indices is not None else [config.people_alias]
    if syn.target == "local":
        package = LocalPackage(client, syn.local_config_dir, syn.package)
        installed = package.install(dictionary.text)
        report.package_id, report.synonyms_path = syn.package, package.synonyms_path
        if installed or stored.changed or force_apply:
            report.reloaded = package.reload(targets)
            report.not_created = [t for t in targets if t not in report.reloaded]
            for index in report.reloaded:
                package.verify(index, dictionary.text.splitlines())
            report.applied = True
    elif stored.changed or force_apply:
        from connectors.opensearch.packages import PackagePublisher

        publisher = PackagePublisher(
            service or opensearch_service_client(syn),
            timeout_seconds=syn.timeout_seconds,
            poll_seconds=syn.poll_seconds,
        )
        published = publisher.publish(
            syn.package, syn.bucket, syn.key, syn.domains, description="lakehouse-cdc synonyms",
            commit_message=f"sha256 {dictionary.sha256[:12]}",
        )  # fmt: skip
        report.package_id, report.package_version = published.package_id, published.version
        report.domains = list(published.domains)
        report.applied = True
    report.seconds = time.monotonic() - started
    # The CLI prints describe() and Dagster records the report as metadata: no second INFO line.
    log.debug("%s (%.1f s)", report.describe(), report.seconds)
    return report
