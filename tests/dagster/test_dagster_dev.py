"""`dagster dev` and `dg dev` serve the project: the GraphQL API lists every asset and asset check.

Both run with no arguments in the repository root: pyproject.toml's `[tool.dg]` names the project."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _graphql(port: int, query: str) -> dict[str, Any]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        result: dict[str, Any] = json.loads(resp.read())
        return result


@pytest.mark.parametrize("cli", ["dagster", "dg"])
def test_dev_serves_assets_and_checks(tmp_path: Path, cli: str) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    port = _free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home), "LAKEHOUSE_LAKE_ROOT": str(tmp_path / "lake")}
    # `dg dev` serves a project with the Python it runs on (dagster_dg_cli/cli/utils.py): this venv's.
    executable = Path(sys.executable).parent / cli
    proc = subprocess.Popen(
        [str(executable), "dev", "-h", "127.0.0.1", "-p", str(port)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if "version" in json.dumps(_graphql(port, "{ version }")):
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                err = proc.stderr.read().decode()[-3000:] if proc.stderr else ""
                pytest.fail(f"{cli} dev did not come up: {err}")
            time.sleep(1)
        nodes: list[dict[str, Any]] = []
        while time.monotonic() < deadline:  # the code location may still be loading
            data = _graphql(
                port,
                "{ assetNodes { assetKey { path } assetChecksOrError { ... on AssetChecks { checks { name } } } } }",
            )
            nodes = data.get("data", {}).get("assetNodes") or []
            if nodes:
                break
            time.sleep(1)
        keys = {"/".join(n["assetKey"]["path"]) for n in nodes}
        assert "aurora_mysql/patients_changelog" in keys
        assert "aurora_postgres/care_providers_current" in keys
        checks = {
            ("/".join(n["assetKey"]["path"]), c["name"])
            for n in nodes
            for c in (n.get("assetChecksOrError") or {}).get("checks", [])
        }
        assert ("aurora_mysql/insurance_claims_changelog", "lag_behind_source") in checks
        assert ("aurora_mysql/insurance_claims_current", "no_duplicate_keys") in checks
        assert ("aurora_postgres/tenant_metadata_current", "rows_match_source") in checks
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
