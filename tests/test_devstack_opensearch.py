"""The local OpenSearch node: health, synonym files reloaded at search time, reindex, lifecycle.

The synonym tests follow the Amazon OpenSearch Service custom-package layout: the dictionary lives
at ``<config>/analyzers/<package id>`` and the index refers to it as ``analyzers/<package id>``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from opensearchpy import OpenSearch
from opensearchpy.exceptions import NotFoundError, RequestError

import devstack
from devstack.opensearch_service import OpenSearchBuildError, OpenSearchService, run_build_step
from devstack.settings import StackSettings

SEARCH_ANALYZER = "synonym_search"


@pytest.fixture(scope="module")
def opensearch_stack() -> StackSettings:
    """The shared stack with OpenSearch started (built on the first run; cheap when running)."""
    try:
        devstack.up(["opensearch"])
    except devstack.DevstackError as exc:
        pytest.fail(f"local OpenSearch did not start: {exc}", pytrace=False)
    return devstack.settings()


def _client(endpoint: str) -> OpenSearch:
    return OpenSearch(hosts=[endpoint], timeout=60)


@pytest.fixture
def client(opensearch_stack: StackSettings) -> Iterator[OpenSearch]:
    """opensearch-py client on the shared node."""
    os_client = _client(opensearch_stack.opensearch_endpoint)
    try:
        yield os_client
    finally:
        os_client.close()


@pytest.fixture
def index_name(client: OpenSearch) -> Iterator[str]:
    """A unique index-name prefix; every index and alias starting with it is deleted afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    yield name
    client.indices.delete(index=f"{name}*", ignore_unavailable=True, expand_wildcards="all")


@dataclass(frozen=True)
class SynonymPackage:
    """A synonym dictionary where Amazon OpenSearch Service would mount package ``package_id``."""

    package_id: str
    path: Path

    @property
    def reference_path(self) -> str:
        """The ``synonyms_path`` value, as AWS reports it for an associated package."""
        return f"analyzers/{self.package_id}"

    def write(self, *rules: str) -> None:
        """Replace the dictionary atomically, so a reload never reads a half-written file."""
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text("".join(f"{rule}\n" for rule in rules) or "# no synonyms yet\n", encoding="utf-8")
        tmp.replace(self.path)


@pytest.fixture
def synonyms(opensearch_stack: StackSettings) -> Iterator[SynonymPackage]:
    """An initially empty dictionary in the node's ``config/analyzers`` dir, removed afterwards."""
    svc = OpenSearchService(opensearch_stack)
    package_id = f"F{uuid.uuid4().int % 10**9:09d}"  # AWS package IDs look like F123456789
    package = SynonymPackage(package_id, svc.analyzers_dir / package_id)
    package.write()
    yield package
    package.path.unlink(missing_ok=True)


def _synonym_index(package: SynonymPackage, *, updateable: bool = True) -> dict[str, Any]:
    """Index body: standard analysis at index time, file synonyms at search time, 0 replicas."""
    return {
        "settings": {
            "number_of_shards": 1,
            "number_of_replicas": 0,
            "analysis": {
                "filter": {
                    "package_synonyms": {
                        "type": "synonym_graph",
                        "synonyms_path": package.reference_path,
                        "updateable": updateable,
                    }
                },
                "analyzer": {
                    SEARCH_ANALYZER: {"tokenizer": "standard", "filter": ["lowercase", "package_synonyms"]}
                },
            },
        },
        "mappings": {
            "properties": {
                "name": {"type": "text", "analyzer": "standard", "search_analyzer": SEARCH_ANALYZER}
            }
        },
    }


def _search_names(client: OpenSearch, index: str, text: str) -> list[tuple[str, list[str]]]:
    """(name, highlight fragments) of every hit of a match query on ``name``."""
    body = {"query": {"match": {"name": text}}, "highlight": {"fields": {"name": {}}}}
    hits = client.search(index=index, body=body)["hits"]["hits"]
    return [(h["_source"]["name"], h.get("highlight", {}).get("name", [])) for h in hits]


def _index_croissant(client: OpenSearch, index: str, package: SynonymPackage) -> None:
    client.indices.create(index=index, body=_synonym_index(package))
    client.index(index=index, id="1", body={"name": "Fresh croissant"}, refresh=True)


# ---------------------------------------------------------------- the running node


def test_node_is_a_healthy_single_node_2_19(client: OpenSearch) -> None:
    """One node, 2.19.x, with the modules the search code relies on loaded as classpath plugins."""
    # opensearch-py 3.x takes a bare timeout= as its own socket timeout (and rejects "30s");
    # with request_timeout= given as well, timeout= goes to the server as the query parameter.
    health = client.cluster.health(wait_for_status="yellow", timeout="30s", request_timeout=60)
    version = client.info()["version"]["number"]
    nodes = client.nodes.info(metric="plugins")["nodes"]
    (node,) = nodes.values()
    plugins = {p["name"].rsplit(".", 1)[-1] for p in node["plugins"]}
    assert health["number_of_nodes"] == 1
    assert health["status"] in {"green", "yellow"}
    assert version.startswith("2.19.")
    assert plugins >= {
        "Netty4Plugin",
        "CommonAnalysisPlugin",
        "ReindexPlugin",
        "RefreshSearchAnalyzersPlugin",
    }


def test_synonym_file_reloads_through_refresh_endpoint(
    client: OpenSearch, index_name: str, synonyms: SynonymPackage
) -> None:
    """A new dictionary takes effect only after POST _plugins/_refresh_search_analyzers/<index>."""
    _index_croissant(client, index_name, synonyms)
    assert _search_names(client, index_name, "danish") == []

    synonyms.write("danish, croissant")
    # The file alone changes nothing: analyzers are built when the index opens.
    assert _search_names(client, index_name, "danish") == []

    refreshed = client.transport.perform_request("POST", f"/_plugins/_refresh_search_analyzers/{index_name}")
    assert refreshed["_shards"] == {"total": 1, "successful": 1, "failed": 0}
    assert refreshed["successful_refresh_details"] == [
        {"index": index_name, "refreshed_analyzers": [SEARCH_ANALYZER]}
    ]
    assert _search_names(client, index_name, "danish") == [("Fresh croissant", ["Fresh <em>croissant</em>"])]

    analyzed = client.indices.analyze(index=index_name, body={"analyzer": SEARCH_ANALYZER, "text": "danish"})
    assert {(t["token"], t["type"]) for t in analyzed["tokens"]} == {
        ("danish", "<ALPHANUM>"),
        ("croissant", "SYNONYM"),
    }


def test_refresh_endpoint_rejects_unknown_index(client: OpenSearch) -> None:
    """An unknown index is a 404 index_not_found, as on the real endpoint."""
    with pytest.raises(NotFoundError, match="index_not_found_exception"):
        client.transport.perform_request(
            "POST", f"/_plugins/_refresh_search_analyzers/nosuch_{uuid.uuid4().hex}"
        )


def test_synonym_file_reloads_on_close_and_open(
    client: OpenSearch, index_name: str, synonyms: SynonymPackage
) -> None:
    """The fallback path (AWS's documented manual update): close and reopen the index."""
    _index_croissant(client, index_name, synonyms)
    synonyms.write("danish, croissant")
    assert _search_names(client, index_name, "danish") == []

    client.indices.close(index=index_name)
    client.indices.open(index=index_name, wait_for_active_shards=1)
    client.cluster.health(index=index_name, wait_for_status="yellow", timeout="30s", request_timeout=60)
    assert _search_names(client, index_name, "danish") == [("Fresh croissant", ["Fresh <em>croissant</em>"])]


def test_red_index_is_named_not_fatal(
    client: OpenSearch, index_name: str, opensearch_stack: StackSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    """An index that cannot be allocated stays red; start-up names it instead of failing."""
    svc = OpenSearchService(opensearch_stack)
    assert not svc._report_red_indices()  # nothing red: the node is simply not ready yet
    # A primary that can never be allocated (here by a filter naming no node) keeps it red, as a
    # missing synonyms file does after a restart.
    settings = {"number_of_replicas": 0, "routing.allocation.require._name": "no-such-node"}
    client.indices.create(index=index_name, body={"settings": settings}, wait_for_active_shards=0)
    assert svc._report_red_indices()
    err = capsys.readouterr().err
    assert index_name in err and "DELETE" in err


def test_updateable_synonyms_are_refused_at_index_time(
    client: OpenSearch, index_name: str, synonyms: SynonymPackage
) -> None:
    """``updateable: true`` filters may only sit in a search_analyzer."""
    body = _synonym_index(synonyms)
    body["mappings"]["properties"]["name"] = {"type": "text", "analyzer": SEARCH_ANALYZER}
    with pytest.raises(RequestError, match="not allowed to run in index time mode"):
        client.indices.create(index=index_name, body=body)


def test_missing_synonym_file_refuses_index_creation(client: OpenSearch, index_name: str) -> None:
    """The dictionary must exist before the index that names it is created."""
    missing = SynonymPackage("F000000000", Path("/nonexistent"))
    with pytest.raises(RequestError, match="synonyms_path"):
        client.indices.create(index=index_name, body=_synonym_index(missing))


def test_reindex_and_alias_swap_pick_up_index_time_synonyms(
    client: OpenSearch, index_name: str, synonyms: SynonymPackage
) -> None:
    """Index-time synonyms need a new index: _reindex into it, then swap the alias atomically."""
    alias = index_name
    v1, v2 = f"{index_name}_v1", f"{index_name}_v2"
    body = _synonym_index(synonyms, updateable=False)
    # Synonyms applied while indexing (flat 'synonym' filter), plain analysis at search time.
    body["settings"]["analysis"]["filter"]["package_synonyms"]["type"] = "synonym"
    body["mappings"]["properties"]["name"] = {
        "type": "text",
        "analyzer": SEARCH_ANALYZER,
        "search_analyzer": "standard",
    }
    client.indices.create(index=v1, body={**body, "aliases": {alias: {}}})
    client.index(index=alias, id="1", body={"name": "Fresh croissant"}, refresh=True)
    assert _search_names(client, alias, "danish") == []

    synonyms.write("danish, croissant")
    client.indices.create(index=v2, body=body)
    reindexed = client.reindex(body={"source": {"index": v1}, "dest": {"index": v2}}, refresh=True)
    client.indices.update_aliases(
        body={"actions": [{"remove": {"index": v1, "alias": alias}}, {"add": {"index": v2, "alias": alias}}]}
    )
    assert reindexed["created"] == 1
    assert list(client.indices.get_alias(name=alias)) == [v2]
    assert [name for name, _ in _search_names(client, alias, "danish")] == ["Fresh croissant"]


def test_status_and_idempotent_up(opensearch_stack: StackSettings) -> None:
    """status() shows the endpoint; a second up() starts nothing and keeps the pid."""
    (before,) = devstack.status(["opensearch"])
    (result,) = devstack.up(["opensearch"])
    assert before.running
    assert (
        before.endpoint
        == opensearch_stack.opensearch_endpoint
        == f"http://127.0.0.1:{opensearch_stack.opensearch_port}"
    )
    assert result.action == "already running"
    assert result.status.pid == before.pid


def test_status_cli_lists_opensearch(opensearch_stack: StackSettings) -> None:
    """``python -m devstack status opensearch`` prints a running row with the endpoint."""
    proc = subprocess.run(
        [sys.executable, "-m", "devstack", "status", "opensearch"],
        capture_output=True,
        text=True,
        check=False,
        cwd=opensearch_stack.repo_dir,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    (row,) = proc.stdout.splitlines()[1:]
    assert row.split()[:3] == ["opensearch", "running", opensearch_stack.opensearch_endpoint]


def test_build_step_failure_names_command_and_output(tmp_path: Path) -> None:
    """A failing build command is reported with its argv, exit code and the tail of its output."""
    cmd = [sys.executable, "-c", "print('[ERROR] no such artifact'); raise SystemExit(3)"]
    with pytest.raises(OpenSearchBuildError) as caught:
        run_build_step(cmd, cwd=tmp_path, log=tmp_path / "build.log")
    message = str(caught.value)
    assert "exit 3" in message
    assert "raise SystemExit(3)" in message
    assert "[ERROR] no such artifact" in message


# ---------------------------------------------------------------- isolated lifecycle


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def private_stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[StackSettings]:
    """A throw-away stack dir and port, so lifecycle tests never disturb the shared node."""
    root = Path(tempfile.mkdtemp(prefix="devstack-os-test-"))
    monkeypatch.setenv("LAKEHOUSE_STACK_DIR", str(root / "stack"))
    monkeypatch.setenv("LAKEHOUSE_OPENSEARCH_PORT", str(_free_port()))
    try:
        yield devstack.settings()
    finally:
        devstack.down(["opensearch"])
        shutil.rmtree(root, ignore_errors=True)


def _doc_count(endpoint: str, index: str) -> int:
    os_client = _client(endpoint)
    try:
        return int(os_client.count(index=index)["count"])
    finally:
        os_client.close()


def test_lifecycle_builds_once_stops_cleanly_and_survives_kill_9(private_stack: StackSettings) -> None:
    """up builds and starts; down closes the node; up after kill -9 recovers with the data kept."""
    svc = OpenSearchService(private_stack)
    endpoint = private_stack.opensearch_endpoint
    assert [r.action for r in devstack.up(["opensearch"])] == ["started"]
    assert svc.is_built()
    stamp_written = svc.stamp.stat().st_mtime_ns
    os_client = _client(endpoint)
    try:
        os_client.indices.create(index="keepme", body={"settings": {"number_of_replicas": 0}})
        os_client.index(index="keepme", id="1", body={"v": "ünïcode"}, refresh=True)
    finally:
        os_client.close()

    assert [r.action for r in devstack.down(["opensearch"])] == ["stopped"]
    assert "[devstack] closed" in svc.log.read_text()  # SIGTERM ran the node's clean shutdown
    assert [r.action for r in devstack.down(["opensearch"])] == ["already stopped"]
    assert [s.state for s in devstack.status(["opensearch"])] == ["stopped"]

    assert [r.action for r in devstack.up(["opensearch"])] == ["started"]
    assert svc.stamp.stat().st_mtime_ns == stamp_written  # no rebuild
    (running,) = devstack.status(["opensearch"])
    assert running.pid is not None
    os.kill(running.pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while svc.is_running() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert svc.pid_file.exists()  # stale pid file left behind by the kill

    assert [r.action for r in devstack.up(["opensearch"])] == ["started"]
    assert _doc_count(endpoint, "keepme") == 1
