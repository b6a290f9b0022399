"""deploy/dagster: the example instances load through Dagster's own instance config machinery,
with their PostgreSQL storage on the stack's server, and instantiate `K8sRunLauncher` and
`EcsRunLauncher` (no cluster: an in-cluster service account for Kubernetes, the moto server as
the AWS endpoint) with the settings the stream deployments use."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml
from dagster._core.instance.config import PoolGranularity
from dagster._core.run_coordinator import QueuedRunCoordinator
from dagster_aws.ecs import EcsRunLauncher
from dagster_k8s import K8sRunLauncher

from dagster_project.assets import merge_pool, writer_pool
from dagster_project.definitions import build_definitions
from pipelines.config import load_config
from tests.deploy.deployed import CONFIG, CONFIG_PATH, DEPLOY, deployed_sources

DAGSTER = DEPLOY / "dagster"


@pytest.fixture
def dagster_db(pg_db: Any, monkeypatch: pytest.MonkeyPatch) -> int:
    """The storage the examples name, as environment variables: a fresh database on the stack
    (returns its port: the examples say 5432, as RDS; the stack's server listens elsewhere)."""
    monkeypatch.setenv("DAGSTER_PG_HOST", pg_db.host)
    monkeypatch.setenv("DAGSTER_PG_DB", pg_db.name)
    monkeypatch.setenv("DAGSTER_PG_USERNAME", pg_db.admin_user)
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", pg_db.admin_password.get_secret_value())
    return int(pg_db.port)


def _instance(flavour: str, tmp_path: Path, port: int) -> Iterator[dg.DagsterInstance]:
    """`flavour`'s dagster.yaml as $DAGSTER_HOME/dagster.yaml of a new instance, with the port of
    the stack's PostgreSQL for the example's 5432 (the only change)."""
    home = tmp_path / f"dagster_home_{flavour}"
    home.mkdir()
    settings = yaml.safe_load((DAGSTER / flavour / "dagster.yaml").read_text())
    assert settings["storage"]["postgres"]["postgres_db"]["port"] == 5432
    settings["storage"]["postgres"]["postgres_db"]["port"] = port
    (home / "dagster.yaml").write_text(yaml.safe_dump(settings))
    instance = dg.DagsterInstance.from_config(str(home))
    try:
        yield instance
    finally:
        instance.dispose()
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def in_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a pod sees (kubernetes.config.load_incluster_config reads it): the API server's
    address in the environment, the service account's token and CA in files."""
    import kubernetes.config.incluster_config as incluster

    account = tmp_path / "serviceaccount"
    account.mkdir()
    (account / "token").write_text("a-service-account-token")
    (account / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.100.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    monkeypatch.setattr(incluster, "SERVICE_TOKEN_FILENAME", str(account / "token"))
    monkeypatch.setattr(incluster, "SERVICE_CERT_FILENAME", str(account / "ca.crt"))


def _pools_limited_to_one(instance: dg.DagsterInstance) -> None:
    pools = instance.get_concurrency_config().pool_config
    assert pools.default_pool_limit == 1 and pools.pool_granularity == PoolGranularity.OP
    assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
    run_queue = instance.get_concurrency_config().run_queue_config
    assert run_queue is not None and run_queue.max_concurrent_runs == 20


def _stream_secrets() -> dict[str, str]:
    """Password variable -> Secret, as the stream Deployments take them."""
    secrets = {}
    for path in sorted((DEPLOY / "k8s").glob("3*.yaml")):
        (container,) = yaml.safe_load(path.read_text())["spec"]["template"]["spec"]["containers"]
        for env in container.get("env", []):
            secrets[env["name"]] = env["valueFrom"]["secretKeyRef"]["name"]
    return secrets


def test_the_kubernetes_example_instantiates_k8s_run_launcher(
    tmp_path: Path, dagster_db: int, in_cluster: None
) -> None:
    for instance in _instance("k8s", tmp_path, dagster_db):
        launcher = instance.run_launcher
        assert isinstance(launcher, K8sRunLauncher)
        assert launcher.job_namespace == "lakehouse" and launcher.load_incluster_config
        assert launcher.service_account_name == "lakehouse-dagster-run"
        # The runs read the streams' lakehouse.toml, from the streams' ConfigMap.
        assert f"LAKEHOUSE_CONFIG={CONFIG_PATH}" in launcher.env_vars
        (volume,) = launcher.volumes
        (mount,) = launcher.volume_mounts
        assert volume["configMap"]["name"] == "lakehouse-config" and mount["name"] == volume["name"]
        assert str(Path(mount["mountPath"]) / "lakehouse.toml") == CONFIG_PATH
        run_config: dict[str, Any] = dict(launcher.run_k8s_config)
        env = run_config["container_config"]["env"]
        assert {e["name"]: e["valueFrom"]["secretKeyRef"]["name"] for e in env} == _stream_secrets()
        _pools_limited_to_one(instance)


def test_the_ecs_example_instantiates_ecs_run_launcher(
    tmp_path: Path, dagster_db: int, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The launcher makes boto3 clients when it starts: any call goes to the moto server.
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    for instance in _instance("ecs", tmp_path, dagster_db):
        launcher = instance.run_launcher
        assert isinstance(launcher, EcsRunLauncher)
        assert launcher.use_current_ecs_task_config and launcher.container_name == "run"
        assert launcher.task_definition_dict["task_role_arn"].startswith("arn:aws:iam::")
        assert launcher.secrets_tags == []  # only the secrets listed, not every one tagged "dagster"
        named = {s["name"] for s in launcher.secrets}
        assert set(_stream_secrets()) <= named and all(
            s["valueFrom"].startswith("arn:aws:secretsmanager:") for s in launcher.secrets
        )
        assert f"LAKEHOUSE_CONFIG={CONFIG_PATH}" in launcher.env_vars
        _pools_limited_to_one(instance)


def test_the_definitions_load_from_the_deployed_config_with_a_pool_per_source(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The code location the launchers run loads from deploy/lakehouse.toml (no connection is
    opened), and its assets use each source's writer and merge pool, which the examples limit to 1."""
    monkeypatch.setenv("LAKEHOUSE_AURORA_MYSQL_PASSWORD", "from-a-secret")
    monkeypatch.setenv("LAKEHOUSE_AURORA_POSTGRES_PASSWORD", "from-a-secret")
    defs = build_definitions(load_config(str(CONFIG)))
    repository = defs.get_repository_def()
    pools = {
        pool for a in repository.assets_defs_by_key.values() if a.is_executable for pool in a.node_def.pools
    }
    expected = {p(s) for s in deployed_sources() for p in (writer_pool, merge_pool)}
    assert expected <= pools
