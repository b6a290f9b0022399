"""deploy/ecs: task and service definitions valid for the ECS API (botocore's service model, as
`aws ecs register-task-definition` / `create-service --cli-input-json` take them) that run each
source as one task, never two at once, health-checked on the stream's liveness endpoint."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore.exceptions import ParamValidationError
from botocore.validate import ParamValidator

from connectors.lake.config import LakeConfig
from connectors.lake.lake import Lake
from pipelines.capture.health import LIVENESS_PATH, HealthBoard, HealthServer
from tests.deploy.deployed import CONFIG_PATH, DEPLOY, deployed_sources, parse_command

ECS = DEPLOY / "ecs"
FARGATE_MAX_STOP_TIMEOUT = 120  # seconds (ECS API reference, ContainerDefinition.stopTimeout)


def _ecs_input(operation: str) -> Any:
    model = botocore.session.get_session().get_service_model("ecs")
    return model.operation_model(operation).input_shape


def _validate(params: dict[str, Any], operation: str) -> None:
    report = ParamValidator().validate(params, _ecs_input(operation))
    if report.has_errors():
        raise ParamValidationError(report=report.generate_report())


def _load(suffix: str) -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted(ECS.glob(f"*.{suffix}.json"))}


TASKS = _load("task-definition")
SERVICES = _load("service")


@pytest.mark.parametrize("name", sorted(TASKS))
def test_each_task_definition_is_valid_register_task_definition_input(name: str) -> None:
    _validate(TASKS[name], "RegisterTaskDefinition")


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_each_service_is_valid_create_service_input(name: str) -> None:
    _validate(SERVICES[name], "CreateService")


def test_the_validator_rejects_a_misspelt_or_mistyped_field() -> None:
    """The checks above can fail: unknown keys and wrong types are errors."""
    task = next(iter(TASKS.values()))
    with pytest.raises(ParamValidationError):
        _validate({**task, "taskRole": "arn:aws:iam::123456789012:role/x"}, "RegisterTaskDefinition")
    service = next(iter(SERVICES.values()))
    with pytest.raises(ParamValidationError):
        _validate({**service, "desiredCount": "1"}, "CreateService")


def _container(task: dict[str, Any]) -> dict[str, Any]:
    (container,) = task["containerDefinitions"]
    return container


def _stream_args(task: dict[str, Any]) -> Any:
    container = _container(task)
    return parse_command(container["entryPoint"] + container["command"])


def test_one_service_of_one_task_per_source_and_never_two_at_once() -> None:
    families = {task["family"]: task for task in TASKS.values()}
    streamed = []
    for service in SERVICES.values():
        task = families[service["taskDefinition"]]
        assert service["desiredCount"] == 1 and service["schedulingStrategy"] == "REPLICA"
        # The old task stops before the new one starts; the lease fences anything else.
        deployment = service["deploymentConfiguration"]
        assert (deployment["minimumHealthyPercent"], deployment["maximumPercent"]) == (0, 100)
        assert task["networkMode"] == "awsvpc" and service["networkConfiguration"]["awsvpcConfiguration"]
        args = _stream_args(task)
        assert args.command == "stream" and len(args.source) == 1 and args.config == CONFIG_PATH
        streamed.append(args.source[0])
        # SIGTERM, then up to stopTimeout for the current batch, the last merge and the release.
        assert 60 <= _container(task)["stopTimeout"] <= FARGATE_MAX_STOP_TIMEOUT
        assert _container(task)["linuxParameters"]["initProcessEnabled"]  # SIGTERM reaches it
    assert sorted(streamed) == sorted(deployed_sources())


def test_aws_access_is_the_task_role_and_passwords_come_from_secrets_manager() -> None:
    for task in TASKS.values():
        assert task["taskRoleArn"].startswith("arn:aws:iam::")
        container = _container(task)
        for env in container.get("environment", []):
            assert not env["name"].startswith("AWS_") and "PASSWORD" not in env["name"], env
        for secret in container.get("secrets", []):
            assert secret["valueFrom"].startswith("arn:aws:secretsmanager:"), secret


@pytest.mark.parametrize("name", sorted(TASKS))
def test_the_container_health_check_passes_only_while_the_stream_is_live(name: str, tmp_path: Path) -> None:
    """The health check's own command, run against a health server: exit 0 when /healthz says
    200, non-zero on 503 (ECS then replaces the task)."""
    task = TASKS[name]
    args = _stream_args(task)
    check = _container(task)["healthCheck"]["command"]
    assert check[:2] == ["CMD", "python"]
    assert f"http://127.0.0.1:{args.health_port}{LIVENESS_PATH}" in check[-1]
    assert args.health_host == "127.0.0.1"  # the check runs inside the task: no listener on the ENI

    now = [0.0]
    board = HealthBoard(threading.Event(), live_seconds=180, clock=lambda: now[0])
    health = board.stream(args.source[0])
    server = HealthServer(board, "127.0.0.1", 0).start()
    try:
        port = server.address[1]
        command = [sys.executable, *check[2:-1], check[-1].replace(f":{args.health_port}/", f":{port}/")]
        assert subprocess.run(command, capture_output=True, timeout=60).returncode == 0  # standing by

        lease = Lake(LakeConfig(root=str(tmp_path / "lake"))).lease(args.source[0], "lakehouse stream")
        lease.acquire()
        health.holding(lease)
        now[0] += 181  # no batch for three minutes: a stuck capture loop
        assert subprocess.run(command, capture_output=True, timeout=60).returncode != 0
    finally:
        server.close()
