"""`lakehouse demo`: the main job end to end on the local stack.

Creates the sample world (as the local stack's admin user), snapshots it into the lake, runs the
workload, captures its changes with a bounded sync, merges current state, and shows what landed.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shlex
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg2
import pymysql

from connectors.mysql.config import MySQLSourceConfig
from connectors.postgres.config import PostgresSourceConfig
from pipelines.config import CONFIG_ENV, DEFAULT_CONFIG_FILE, LakehouseConfig, config_file, load_config
from pipelines.world.stats import WorkloadStats

log = logging.getLogger(__name__)


def _sources(config: LakehouseConfig) -> tuple[Any, Any]:
    mysql = next((s for s in config.sources if s.kind == "mysql"), None)
    pg = next((s for s in config.sources if s.kind == "postgres"), None)
    if mysql is None or pg is None:
        raise ValueError("the demo needs one mysql and one postgres source in the config")
    return mysql, pg


@contextmanager
def _admin_connections(config: LakehouseConfig, *, databases: bool = True) -> Iterator[tuple[Any, Any]]:
    """Admin connections of the local stack (the world's owner), to the sources' databases."""
    import devstack

    stack = devstack.settings()
    mysql, pg = _sources(config)
    admin_pw = stack.admin_password.get_secret_value()
    my = pymysql.connect(
        host=mysql.host,
        port=mysql.port,
        user=stack.admin_user,
        password=admin_pw,
        database=mysql.database if databases else None,
        charset="utf8mb4",
        autocommit=True,
    )
    pgc = psycopg2.connect(
        host=pg.host,
        port=pg.port,
        user=stack.admin_user,
        password=admin_pw,
        dbname=pg.database if databases else "postgres",
    )
    pgc.autocommit = True
    try:
        yield my, pgc
    finally:
        my.close()
        pgc.close()


def create_world_from_config(config: LakehouseConfig, *, patients: int = 200, seed: int = 7) -> None:
    """Create the databases and the seeded world; hand the PostgreSQL tables to the CDC user.

    PostgreSQL 15 lets only a table's owner add it to a publication, and the source manages its
    own publication; in production a DBA creates the publication or grants ownership instead.
    """
    from pipelines.world import create_world
    from pipelines.world.setup import create_databases
    from pipelines.world.timeutil import reference_now

    now = reference_now()  # one reference day for every store, even across midnight UTC
    mysql, pg = _sources(config)
    with _admin_connections(config, databases=False) as (my, pgc):
        create_databases(my, pgc, mysql_database=mysql.database, postgres_database=pg.database)
    with _admin_connections(config) as (my, pgc):
        summary = create_world(my, pgc, seed=seed, patients=patients, now=now)
        with pgc.cursor() as cur:
            cur.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = %s AND tableowner <> %s",
                (pg.schema_name, pg.user),
            )
            for (table,) in cur.fetchall():
                cur.execute(f'ALTER TABLE "{pg.schema_name}"."{table}" OWNER TO "{pg.user}"')
            cur.execute(f'GRANT CREATE ON DATABASE "{pg.database}" TO "{pg.user}"')
    state = "seeded" if summary.seeded else "already there"
    log.info("sample world %s: %s", state, dict(summary.row_counts))
    _create_other_mysql_worlds(config, patients=patients, seed=seed, now=now)
    _store_federated_secrets(config)
    devices = _devices_source(config)
    if devices is not None:
        from pipelines.world.devices import seed_devices
        from pipelines.world.devices_schema import create_device_tables

        client = _dynamodb_client(devices)
        existing = set(client.list_tables().get("TableNames", []))
        tables = create_device_tables(client)
        if {tables.name("device_events"), tables.name("daily_summary")} <= existing:
            log.info("device tables already there")
        else:
            counts = seed_devices(
                client, tables, patients=patients, events_per_patient=10, seed=seed, now=now
            )
            log.info("device tables seeded: %s", counts)


def _create_other_mysql_worlds(
    config: LakehouseConfig, *, patients: int, seed: int, now: dt.datetime
) -> None:
    """The same health database and rows behind every further MySQL source of the config (the
    ``aurora_mysql3`` source on the stack's MySQL 9.7 server, the Aurora MySQL 3 stand-in).

    Idempotent: a seeded database stays.
    """
    import devstack
    from pipelines.world.setup import create_mysql_database, create_mysql_world

    stack = devstack.settings()
    for source in [s for s in config.sources if isinstance(s, MySQLSourceConfig)][1:]:
        conn = pymysql.connect(
            host=source.host,
            port=source.port,
            user=stack.admin_user,
            password=stack.admin_password.get_secret_value(),
            charset="utf8mb4",
            autocommit=True,
        )
        try:
            create_mysql_database(conn, source.database)
            conn.select_db(source.database)
            summary = create_mysql_world(conn, seed=seed, patients=patients, now=now)
        finally:
            conn.close()
        state = "seeded" if summary.seeded else "already there"
        log.info("%s of source %s %s: %s", source.database, source.name, state, dict(summary.row_counts))


def _store_federated_secrets(config: LakehouseConfig) -> None:
    """Store each federated schema's credentials in the local Secrets Manager (moto), as an
    administrator would for Redshift: the CDC user of the source with the same database and port.

    Only with a Secrets Manager endpoint override: the demo never writes secrets to real AWS.
    """
    import json

    from pipelines.publish.catalogs import secrets_client

    if not config.redshift.federated or config.redshift.aws.secrets_endpoint_url is None:
        return
    client = secrets_client(config)
    sql_sources = [s for s in config.sources if isinstance(s, MySQLSourceConfig | PostgresSourceConfig)]
    for schema in config.redshift.federated:
        source = next(
            (
                s
                for s in sql_sources
                if s.kind == schema.engine.lower()
                and s.database == schema.database
                and s.port == schema.resolved_port
            ),
            None,
        )
        if source is None:
            log.warning(
                "federated schema %s: no %s source for %s; no secret stored",
                schema.name,
                schema.engine,
                schema.database,
            )
            continue
        value = json.dumps({"username": source.user, "password": source.password.get_secret_value()})
        name = schema.secret_arn.split(":secret:", 1)[1]
        try:
            client.put_secret_value(SecretId=name, SecretString=value)
        except client.exceptions.ResourceNotFoundException:
            client.create_secret(Name=name, SecretString=value)
    log.info("federated secrets stored: %s", [s.name for s in config.redshift.federated])


def _devices_source(config: LakehouseConfig) -> Any:
    return next((s for s in config.sources if s.kind == "dynamodb"), None)


def _dynamodb_client(devices: Any) -> Any:
    """A DynamoDB client with the source's own connection settings."""
    from connectors.dynamodb.client import AwsClients

    return AwsClients(devices).dynamodb


def run_workload_from_config(
    config: LakehouseConfig,
    *,
    rate: float,
    seconds: float,
    seed: int = 11,
    stop: threading.Event | None = None,
) -> Mapping[str, WorkloadStats]:
    """The SQL workload at `rate` and the device workload beside it (a quarter of the rate), all or
    nothing (`run_parts`): if one part fails the other stops and `WorkloadError` names the part;
    setting `stop` ends both after their current operation. Returns each part's stats."""
    from pipelines.world.runs import WorkloadPart, run_parts
    from pipelines.world.workload import Workload

    stop = stop or threading.Event()
    with _admin_connections(config) as (my, pgc):
        my.autocommit(False)
        pgc.autocommit = False
        sql = Workload(my, pgc, seed=seed)
        parts = [WorkloadPart("database", lambda ev: sql.run(rate=rate, duration=seconds, stop=ev))]
        devices = _devices_source(config)
        if devices is not None:
            from pipelines.world.devices_schema import create_device_tables
            from pipelines.world.devices_workload import DeviceWorkload, DeviceWorkloadConfig

            client = _dynamodb_client(devices)
            device = DeviceWorkload(
                client, create_device_tables(client), DeviceWorkloadConfig(rate=max(1.0, rate / 4), seed=seed)
            )
            parts.append(WorkloadPart("device", lambda ev: device.run(duration_seconds=seconds, stop=ev)))
        return run_parts(parts, stop)


def run_demo(config_path: str | None, *, seconds: float, rate: float) -> None:
    """World -> snapshot -> workload -> bounded sync -> show."""
    from connectors.lake.lake import Lake
    from pipelines.capture.runner import sync_all
    from pipelines.report import count_source_rows, print_lake, print_reports

    config = load_config(config_path)
    print(
        "1/6 creating the sample world (MariaDB and MySQL 9.7 as Aurora MySQL, PostgreSQL as Aurora PostgreSQL, "
        "DynamoDB on moto)",
        flush=True,
    )
    create_world_from_config(config)
    print("2/6 capturing: initial snapshot (or catch-up) into the lake", flush=True)
    print_reports(sync_all(config))
    print(f"3/6 running the workload: {rate:g} operations/s for {seconds:g} s", flush=True)
    results = run_workload_from_config(
        config, rate=rate, seconds=seconds, seed=int.from_bytes(os.urandom(2), "big")
    )
    for name, stats in results.items():
        print(f"    {name} workload: {stats}", flush=True)
    print(
        "4/6 capturing the changes (binlog, logical replication, DynamoDB Streams) and merging current state",
        flush=True,
    )
    print_reports(sync_all(config))
    print()
    print_lake(Lake(config.lake), [s.name for s in config.sources], source_rows=count_source_rows(config))
    searched = config.search.mysql_source in {s.name for s in config.sources}
    if searched:
        print()
        print(
            "5/6 search: synonyms table -> dictionary -> OpenSearch analyzers; 360° documents -> the people index"
        )
        _search_demo(config)
    published = bool(config.redshift.federated or config.redshift.views)
    if published:
        print()
        print(
            "6/6 analytics: `lakehouse publish` (Glue on moto, the DuckDB warehouse with live Aurora attached)"
        )
        _analytics_demo(config)
    print()
    print(next_steps(config, config_path, searched=searched, published=published))


def next_steps(
    config: LakehouseConfig, config_path: str | None, *, searched: bool = True, published: bool = True
) -> str:
    """Where the demo left things and the commands to look around, ready to paste.

    Relative paths (the lake root, `.env`, which `dagster dev` reads) are relative to the working
    directory, so the commands are to be run from it; the stack's own environment (its ports and
    directories, never a password) is repeated for the Dagster UI, which usually runs in another
    terminal.
    """
    cwd = Path.cwd()
    root = config.lake.root
    lake = root if root.startswith("s3://") else str(Path(root.removeprefix("file://")).resolve())
    bin_dir = Path(sys.executable).parent

    def tool(name: str) -> str:
        path = bin_dir / name
        if not path.exists():
            return name
        return shlex.quote(str(path.relative_to(cwd)) if path.is_relative_to(cwd) else str(path))

    chosen = config_file(config_path).resolve()
    custom = chosen != (cwd / DEFAULT_CONFIG_FILE).resolve()
    lakehouse = tool("lakehouse") + (f" --config {shlex.quote(str(chosen))}" if custom else "")
    stack_env = {
        k: v
        for k, v in sorted(os.environ.items())
        if k.startswith("LAKEHOUSE_") and k.endswith(("_PORT", "_DIR", "_ROOT"))
    }
    if custom:
        stack_env[CONFIG_ENV] = str(chosen)
    dagster_home = cwd / ".dagster_home"
    dagster_env = " ".join(
        f"{k}={shlex.quote(v)}" for k, v in {**stack_env, "DAGSTER_HOME": str(dagster_home)}.items()
    )
    commands = [(f"{lakehouse} show --sample 3", "what landed, with a few current rows per table")]
    if searched:
        commands.append((f'{lakehouse} search "danish"', "ranked people, with highlights (synonyms apply)"))
    if published:
        commands.append(
            (f"{lakehouse} query --use-case cost_of_care_per_plan_month", "a use case in the local warehouse")
        )
        commands.append((f"{lakehouse} query", "the other use cases"))
    else:
        commands.append((f"{lakehouse} publish", "build the local warehouse, then `lakehouse query`"))
    commands.append((f"{lakehouse} stream", "keep capturing with low latency (Ctrl-C stops it)"))
    width = max(len(c) for c, _ in commands)
    lines = [
        f"Done. The lake is at {lake}",
        "",
        f"Look around (from {cwd}):",
        *(f"  {c.ljust(width)}   # {why}" for c, why in commands),
        "",
        "The Dagster UI (assets, checks, the every-minute schedule), then open http://127.0.0.1:3000:",
        f"  mkdir -p {shlex.quote(str(dagster_home))}",
        f"  {dagster_env} {tool('dagster')} dev -m dagster_project.definitions",
        "",
        f"The local stack keeps running until `{tool('lakehouse')} stack down`.",
    ]
    return "\n".join(lines)


def _search_demo(config: LakehouseConfig) -> None:
    """Publish the synonyms, index the changed 360° documents, and run one search."""
    from connectors.lake.lake import Lake
    from connectors.opensearch.client import open_client
    from pipelines.search.docs import PeopleSources
    from pipelines.search.index import PeopleIndexer
    from pipelines.search.query import Searcher, format_hits
    from pipelines.search.synonym_publish import publish_synonyms, synonyms_path
    from pipelines.search.tenants import people_tenant_key

    search = config.search
    lake = Lake(config.lake)
    client = open_client(search.opensearch)
    synonyms = publish_synonyms(lake, search, client)
    print(
        f"synonyms: {synonyms.lines} lines ({len(synonyms.rejected)} rows left out), "
        f"{'new version ' + synonyms.s3_version if synonyms.changed else 'unchanged'}"
    )
    sources = PeopleSources(search.mysql_source, search.mysql_schema, search.devices_source)
    indexer = PeopleIndexer(
        lake, client, alias=search.people_alias, sources=sources, synonyms_path=synonyms_path(search),
        tenant_key=people_tenant_key(config),
    )  # fmt: skip
    report = indexer.run()
    print(f"{report.index}: {report.patients} patients indexed or updated ({report.result.indexed} writes, "
          f"{report.result.deleted} deletes, {len(report.result.failures)} dead-lettered)")  # fmt: skip
    client.indices.refresh(index=search.people_alias)
    sample = client.search(
        index=search.people_alias, body={"size": 1, "query": {"exists": {"field": "city"}}}
    )
    hits = sample["hits"]["hits"]
    if hits:
        query = hits[0]["_source"]["city"]
        print(f'\n$ lakehouse search "{query}"')
        print(format_hits(Searcher(client, search.people_alias).search(query, size=3)))


def _analytics_demo(config: LakehouseConfig) -> None:
    """Publish, then query a cross-source view and a use case in the local warehouse."""
    from pipelines.publish.analytics import run
    from pipelines.publish.catalogs import open_warehouse, publish
    from pipelines.report import format_table

    report = publish(config)
    for title, body in report.sections:
        actions = [line for line in body.splitlines() if line and not line.startswith(" ")]
        print(f"{title}: " + ("up to date" if body == "nothing to change" else f"{len(actions)} action(s)"))
    con = open_warehouse(config)
    try:
        for view in config.redshift.views[:1]:
            name = f'"{view.schema_}"."{view.name}"'
            sql = f'SELECT "{view.source_column}", count(*) AS n FROM {name} GROUP BY 1 ORDER BY 1'
            print(f"\n$ lakehouse query '{sql}'")
            rows = con.sql(sql).fetchall()
            print(format_table([view.source_column, "n"], [list(r) for r in rows]))
        print("\n$ lakehouse query --use-case cost_of_care_per_plan_month   (first rows)")
        result = run(con, "cost_of_care_per_plan_month").slice(0, 5)
        print(format_table(result.column_names, [list(r.values()) for r in result.to_pylist()]))
    finally:
        con.close()
