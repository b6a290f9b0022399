"""`lakehouse search` prints ranked, highlighted results — what the engine sees."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from connectors.opensearch.bulk import BulkIndexer, Document
from connectors.opensearch.client import open_client
from connectors.opensearch.config import OpenSearchConfig
from connectors.opensearch.indices import IndexManager, load_template

REPO = Path(__file__).resolve().parents[2]


def test_search_prints_ranked_highlighted_results(stack: Any, tmp_path: Path) -> None:
    client = open_client(OpenSearchConfig(url=stack.opensearch_endpoint))
    alias = f"cli-{uuid.uuid4().hex[:8]}"
    package = stack.service_dir("opensearch") / "config" / "analyzers" / alias
    package.write_text("danish, croissant, pastry\n")
    try:
        IndexManager(client, alias, load_template("catalog"), f"analyzers/{alias}").ensure()
        docs = [
            Document(str(i), 1, {"title": t})
            for i, t in enumerate(["croissant", "tennis shoe", "butter croissant"])
        ]
        BulkIndexer(client, alias, refresh="wait_for").write(docs)
        config = tmp_path / "lakehouse.toml"
        config.write_text(
            f'[lake]\nroot = "{tmp_path}/lake"\n\n[search.opensearch]\nurl = "{stack.opensearch_endpoint}"\n'
        )
        out = subprocess.run(
            [sys.executable, "-m", "pipelines.cli", "--config", str(config), "search", "danish", "--index", alias],
            cwd=REPO, capture_output=True, text=True, check=True,
        )  # fmt: skip
        lines = out.stdout.splitlines()
        assert lines[0].lstrip().startswith("1.") and "croissant" in lines[0]
        assert any("<em>croissant</em>" in line for line in lines)
        assert "tennis shoe" not in out.stdout
        missing = subprocess.run(
            [sys.executable, "-m", "pipelines.cli", "--config", str(config), "search", "gelato", "--index", alias],
            cwd=REPO, capture_output=True, text=True, check=True,
        )  # fmt: skip
        assert missing.stdout.strip() == "no results"
    finally:
        for name in client.indices.get(index=f"{alias}*"):
            client.indices.delete(index=name)
        package.unlink(missing_ok=True)
