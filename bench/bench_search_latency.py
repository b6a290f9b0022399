"""Seconds from a committed change in Aurora (MariaDB) to search results: data and synonyms.

Seeds a small health world in throw-away databases, then runs the low-latency pipeline as a user
would, three processes: `lakehouse stream` (binlog -> lake, merging every 0.5 s),
`lakehouse index --follow` and `lakehouse synonyms publish --follow`. Measured, p50 / p95:

* data: UPDATE a patient's city to a fresh word and commit -> the word finds the patient;
* synonyms: INSERT a SynonymsTable row (fresh word, that city) and commit -> the fresh word
  finds the patient through the synonym;
* baseline, same run: a document written straight to the index -> searchable (the engine's own
  refresh interval, the floor under both figures).

Run by hand with the stack up:  .venv/bin/python bench/bench_search_latency.py [changes]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from world_databases import WorldDatabases, world_databases  # noqa: E402

from connectors.opensearch.bulk import BulkIndexer, Document  # noqa: E402
from connectors.opensearch.client import open_client  # noqa: E402
from connectors.opensearch.config import OpenSearchConfig  # noqa: E402
from connectors.opensearch.search import search  # noqa: E402
from pipelines.world import create_world  # noqa: E402

CHANGES = int(sys.argv[1]) if len(sys.argv) > 1 else 20
TABLES = [
    "patients",
    "health_preferences",
    "plan_enrollments",
    "fitness_plans",
    "insurance_claims",
    "assessments",
    "SynonymsTable",
]
POLL = 0.05


def wait_for(client: object, alias: str, word: str, doc_id: str, timeout: float = 60.0) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if doc_id in {h.doc_id for h in search(client, alias, word)}:  # type: ignore[arg-type]
            return time.monotonic() - started
        time.sleep(POLL)
    raise TimeoutError(f"{word!r} did not find {doc_id} within {timeout} s")


def summary(name: str, values: list[float]) -> str:
    q = statistics.quantiles(values, n=20)
    return f"  {name:<48} p50 {statistics.median(values):5.2f} s   p95 {q[18]:5.2f} s   max {max(values):5.2f} s  (n={len(values)})"


def main() -> None:
    tag = uuid.uuid4().hex[:8]
    with world_databases(f"lat_{tag}") as world:
        create_world(world.mysql, world.postgres, seed=9, patients=60)
        run(world, tag)


def run(world: WorldDatabases, tag: str) -> None:
    stack, db, my = world.stack, world.name, world.mysql
    pw = stack.admin_password.get_secret_value()
    alias = f"lat-{tag}"
    procs: list[subprocess.Popen[bytes]] = []
    client = open_client(OpenSearchConfig(url=stack.opensearch_endpoint))
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "lakehouse.toml"
        config.write_text(f"""
[lake]
root = "{tmp}/lake"
merge_every_seconds = 0.5

[[sources]]
name = "health"
kind = "mysql"
host = "{stack.host}"
port = {stack.mariadb_port}
user = "{stack.admin_user}"
password = "${{BENCH_PW}}"
database = "{db}"
tables = {TABLES!r}
batch_max_seconds = 0.2

[search]
people_alias = "{alias}"
mysql_source = "health"
mysql_schema = "{db}"
devices_source = ""

[search.opensearch]
url = "{stack.opensearch_endpoint}"

[search.synonyms]
source = "health"
lake_table = "{db}__synonymstable"
package = "lat-{tag}"
local_config_dir = "{stack.service_dir("opensearch") / "config"}"
bucket = "lat-{tag}"

[search.synonyms.s3]
endpoint_url = "{stack.moto_endpoint}"
access_key_id = "testing"
secret_access_key = "testing"
""")
        env = {**os.environ, "BENCH_PW": pw, "PYTHONPATH": str(REPO)}

        logs: list[Path] = []

        def lakehouse(*args: str) -> subprocess.Popen[bytes]:
            log = Path(tmp) / f"{args[0]}-{len(logs)}.log"
            logs.append(log)
            return subprocess.Popen(
                [sys.executable, "-m", "pipelines.cli", "--config", str(config), *args],
                cwd=REPO, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
            )  # fmt: skip

        try:
            for step in (("sync", "--once"), ("synonyms", "publish"), ("index", "--full")):
                assert lakehouse(*step).wait(timeout=300) == 0, step
            procs = [
                lakehouse("stream"),
                lakehouse("index", "--follow", "--every", "0.3"),
                lakehouse("synonyms", "publish", "--follow", "--every", "0.3"),
            ]
            time.sleep(3)
            with my.cursor() as cur:
                cur.execute("SELECT patient_id FROM patients ORDER BY patient_id LIMIT %s", (CHANGES,))
                ids = [str(r[0]) for r in cur.fetchall()]
            data, synonyms, floor = [], [], []
            for n, pid in enumerate(ids):
                city = f"zq{uuid.uuid4().hex[:10]}"
                with my.cursor() as cur:
                    cur.execute("UPDATE patients SET city = %s WHERE patient_id = %s", (city, pid))
                data.append(wait_for(client, alias, city, pid))
                word = f"zs{uuid.uuid4().hex[:10]}"
                with my.cursor() as cur:
                    cur.execute(
                        "INSERT INTO SynonymsTable (Base_Term, Synonym_1) VALUES (%s, %s)", (word, city)
                    )
                synonyms.append(wait_for(client, alias, word, pid))
                direct = f"zd{uuid.uuid4().hex[:10]}"
                BulkIndexer(client, alias).write([Document(f"floor-{n}", 1, {"name": direct})])
                floor.append(wait_for(client, alias, direct, f"floor-{n}"))
            print(f"search latency, {CHANGES} changes each (local stack, {os.cpu_count()} cores):")
            print(summary("data: Aurora commit -> searchable", data))
            print(summary("synonyms: row insert -> synonym-aware result", synonyms))
            print(summary("baseline: direct index write -> searchable", floor))
        except BaseException:
            for log in logs:
                print(f"--- {log.name}\n" + log.read_text()[-1500:])
            raise
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(timeout=60)
            for name in client.indices.get(index=f"{alias}*"):
                client.indices.delete(index=name)
            (stack.service_dir("opensearch") / "config" / "analyzers" / f"lat-{tag}").unlink(missing_ok=True)


if __name__ == "__main__":
    main()
