"""deploy/k8s: valid Kubernetes objects (the API's OpenAPI schema, offline, strict) that run each
source as one `lakehouse stream` pod, probed on the health endpoints, with no static AWS keys."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from pipelines.capture.health import LIVENESS_PATH, READINESS_PATH
from pipelines.config import load_config
from tests.deploy.deployed import CONFIG, CONFIG_PATH, DEPLOY, deployed_sources, parse_command

K8S = DEPLOY / "k8s"
# The oldest Kubernetes version in EKS standard support when this was written.
KUBERNETES_VERSION = "1.33"


def _documents() -> list[tuple[str, dict[str, Any]]]:
    return [
        (path.name, doc)
        for path in sorted(K8S.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


def _of_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in _documents() if doc["kind"] == kind]


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No network: the schemas must come with the package."""

    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("the schema validator tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.mark.parametrize("name,doc", _documents(), ids=lambda v: v if isinstance(v, str) else "")
def test_each_manifest_is_valid_against_the_kubernetes_schema(
    name: str, doc: dict[str, Any], offline: None
) -> None:
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_validator_rejects_a_misspelt_or_mistyped_field(offline: None) -> None:
    """The check above can fail: unknown fields (strict) and wrong types are errors."""
    deployment = _of_kind("Deployment")[0]
    misspelt = {**deployment, "spec": {**deployment["spec"], "replica": 1}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(misspelt, KUBERNETES_VERSION, strict=True)
    mistyped = {**deployment, "spec": {**deployment["spec"], "replicas": "one"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(mistyped, KUBERNETES_VERSION, strict=True)


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def test_one_single_replica_recreate_deployment_streams_each_source() -> None:
    deployments = _of_kind("Deployment")
    streamed = []
    for deployment in deployments:
        spec, pod = deployment["spec"], deployment["spec"]["template"]["spec"]
        # Two pods of a source never run side by side by design; the lease fences the rest.
        assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
        assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
        container = _container(deployment)
        args = parse_command(container["command"] + container["args"])
        assert args.command == "stream" and len(args.source) == 1
        assert args.config == CONFIG_PATH
        assert deployment["metadata"]["labels"]["lakehouse/source"] == args.source[0]
        streamed.append(args.source[0])
        # SIGTERM, then time for the current batch, the last merge and the lease's release.
        assert pod["terminationGracePeriodSeconds"] >= 60
        resources = container["resources"]
        assert resources["requests"]["cpu"] and resources["requests"]["memory"]
        assert resources["limits"]["memory"]
    assert sorted(streamed) == sorted(deployed_sources())


def test_the_probes_ask_the_stream_s_health_endpoints() -> None:
    for deployment in _of_kind("Deployment"):
        container = _container(deployment)
        args = parse_command(container["command"] + container["args"])
        (port,) = [p for p in container["ports"] if p["name"] == "health"]
        assert port["containerPort"] == args.health_port
        assert args.health_host == "0.0.0.0"  # the kubelet probes the pod's IP
        for probe, path in (
            ("startupProbe", LIVENESS_PATH),
            ("livenessProbe", LIVENESS_PATH),
            ("readinessProbe", READINESS_PATH),
        ):
            assert container[probe]["httpGet"] == {"path": path, "port": "health"}, probe


def test_aws_access_is_irsa_and_passwords_come_from_secrets() -> None:
    (account,) = _of_kind("ServiceAccount")
    assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].startswith("arn:aws:iam::")
    for deployment in _of_kind("Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] == account["metadata"]["name"]
        assert pod["automountServiceAccountToken"] is False  # the stream never calls the API server
        for env in _container(deployment).get("env", []):
            assert not env["name"].startswith("AWS_"), env
            if "PASSWORD" in env["name"]:
                assert "value" not in env and env["valueFrom"]["secretKeyRef"]["key"], env


def test_the_config_map_carries_deploy_lakehouse_toml_which_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (config_map,) = _of_kind("ConfigMap")
    text = config_map["data"]["lakehouse.toml"]
    assert text == CONFIG.read_text()
    for deployment in _of_kind("Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        (volume,) = [v for v in pod["volumes"] if "configMap" in v]
        assert volume["configMap"]["name"] == config_map["metadata"]["name"]
        (mount,) = [m for m in _container(deployment)["volumeMounts"] if m["name"] == volume["name"]]
        assert str(Path(mount["mountPath"]) / "lakehouse.toml") == CONFIG_PATH
        for env in _container(deployment).get("env", []):
            monkeypatch.setenv(env["name"], "from-the-secret")
    (tmp_path / "lakehouse.toml").write_text(text)
    config = load_config(str(tmp_path / "lakehouse.toml"))  # every ${VAR} it names is set above
    assert config.lake.root.startswith("s3://") and config.lake.catalog == "glue"
    assert config.lake.s3.access_key_id is None  # the default credential chain: IRSA, a task role
    for source in config.sources:
        aws = getattr(source, "aws", None)
        assert aws is None or aws.access_key_id is None
