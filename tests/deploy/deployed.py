"""What the deployment files in deploy/ describe, read once for the tests beside this module."""

from __future__ import annotations

import argparse
import tomllib
from pathlib import Path

from pipelines.cli import build_parser

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
CONFIG = DEPLOY / "lakehouse.toml"
# Where both the Kubernetes ConfigMap and the ECS image put deploy/lakehouse.toml.
CONFIG_PATH = "/etc/lakehouse/lakehouse.toml"


def deployed_sources() -> list[str]:
    """The sources of the production configuration: each must run as exactly one service."""
    return [s["name"] for s in tomllib.loads(CONFIG.read_text())["sources"]]


def parse_command(argv: list[str]) -> argparse.Namespace:
    """A container's `lakehouse ...` command line, parsed by the real `lakehouse` parser."""
    assert argv[0] == "lakehouse", argv
    return build_parser().parse_args(argv[1:])
