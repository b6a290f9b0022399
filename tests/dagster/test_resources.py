"""The lake resource's S3 settings mirror `S3Options` field for field, so a new or changed option
cannot be left out of what Dagster carries."""

from __future__ import annotations

from pydantic import BaseModel

from connectors.aws import AwsRetries
from connectors.lake.storage import S3Options
from dagster_project.resources import LakeRetries, LakeS3Settings

# Not resource config: they travel as dg.EnvVar on LakeResource.
SECRETS = {"secret_access_key", "session_token"}
MIRRORS: dict[type[BaseModel], type[BaseModel]] = {LakeS3Settings: S3Options, LakeRetries: AwsRetries}


def differences(mirror: type[BaseModel], model: type[BaseModel], prefix: str = "") -> list[str]:
    """How `mirror`'s fields differ from `model`'s (secrets aside), one line per field."""
    wanted = {name: f for name, f in model.model_fields.items() if name not in SECRETS}
    have = mirror.model_fields
    out = [f"{prefix}{name}: missing from {mirror.__name__}" for name in wanted.keys() - have.keys()]
    out += [f"{prefix}{name}: not a field of {model.__name__}" for name in have.keys() - wanted.keys()]
    for name in wanted.keys() & have.keys():
        mine, theirs = have[name].annotation, wanted[name].annotation
        if isinstance(mine, type) and issubclass(mine, BaseModel) and MIRRORS.get(mine) is theirs:
            out += differences(mine, MIRRORS[mine], f"{prefix}{name}.")
            continue
        if mine != theirs:
            out.append(f"{prefix}{name}: type {mine} in {mirror.__name__}, {theirs} in {model.__name__}")
        default = have[name].get_default(call_default_factory=True)
        expected = wanted[name].get_default(call_default_factory=True)
        if default != expected:
            out.append(
                f"{prefix}{name}: default {default!r} in {mirror.__name__}, {expected!r} in {model.__name__}"
            )
    return sorted(out)


def test_lake_s3_settings_have_every_s3_option_with_its_type_and_default() -> None:
    assert differences(LakeS3Settings, S3Options) == []


def test_the_drift_check_names_a_missing_or_changed_field() -> None:
    class Shorter(LakeRetries):
        max_attempts: int = 3

    class Longer(AwsRetries):
        jitter: bool = True

    assert differences(Shorter, AwsRetries) == ["max_attempts: default 3 in Shorter, 5 in AwsRetries"]
    assert differences(LakeRetries, Longer) == ["jitter: missing from LakeRetries"]


def test_every_s3_option_survives_the_round_trip_through_the_resource() -> None:
    s3 = S3Options(
        endpoint_url="http://127.0.0.1:1",
        region="eu-west-1",
        kms_key_id="alias/lake",
        access_key_id="AKIA1",
        secret_access_key="s3cr3t",
        session_token="t0k3n",
        role_arn="arn:aws:iam::123456789012:role/lake-writer",
        role_session_name="dagster-run",
        retries=AwsRetries(
            mode="adaptive", max_attempts=9, connect_timeout_seconds=2, read_timeout_seconds=7
        ),
    )
    settings = LakeS3Settings.of(s3, explicit_keys=True)
    assert "s3cr3t" not in settings.model_dump_json() and "t0k3n" not in settings.model_dump_json()
    assert settings.options("s3cr3t", "t0k3n") == s3
    chain = LakeS3Settings.of(s3, explicit_keys=False).options(None, None)
    assert chain == s3.model_copy(
        update={"access_key_id": None, "secret_access_key": None, "session_token": None}
    )


def test_a_sources_tls_and_iam_settings_reach_dagster_runs() -> None:
    from connectors.config import TlsConfig
    from connectors.postgres.config import PostgresSourceConfig
    from dagster_project.resources import source_resource

    config = PostgresSourceConfig(
        name="pool", host="db.example.com", user="cdc", database="d", region="eu-west-1",
        tls=TlsConfig(mode="verify-full", ca_file="/etc/ssl/rds.pem"), auth="iam",
    )  # fmt: skip
    resource = source_resource(config)
    assert resource.password == ""  # an IAM source has no password variable to read
    rebuilt = resource.source_config()
    assert rebuilt.tls == config.tls and rebuilt.auth == "iam" and rebuilt.region == "eu-west-1"


def test_the_lake_resource_carries_the_tenancy_to_the_writer() -> None:
    from connectors.lake.config import LakeConfig
    from dagster_project.resources import lake_resource
    from pipelines.config import load_config

    tenancy = load_config("lakehouse.toml").tenancy
    lake = lake_resource(LakeConfig(root="/tmp/lake"), tenancy).lake()
    assert lake.tenancy == tenancy and lake_resource(LakeConfig(root="/tmp/lake")).lake().tenancy is None
