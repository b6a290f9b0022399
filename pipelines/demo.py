"""`lakehouse demo`: the main job end to end on the local stack.

Creates the sample world (as the local stack's admin user), snapshots it into the lake, runs the
workload, captures its changes with a bounded sync, merges current state, and shows what landed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg2
import pymysql

from connectors.mysql.config import MySQLSourceConfig
from connectors.postgres.config import PostgresSourceConfig
from pipelines.config import LakehouseConfig, load_config

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

    mysql, pg = _sources(config)
    with _admin_connections(config, databases=False) as (my, pgc):
        create_databases(my, pgc, mysql_database=mysql.database, postgres_database=pg.database)
    with _admin_connections(config) as (my, pgc):
        summary = create_world(my, pgc, seed=seed, patients=patients)
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
    _create_other_mysql_worlds(config, patients=patients, seed=seed)
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
            counts = seed_devices(client, tables, patients=patients, events_per_patient=10, seed=seed)
            log.info("device tables seeded: %s", counts)


def _create_other_mysql_worlds(config: LakehouseConfig, *, patients: int, seed: int) -> None:
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
            summary = create_mysql_world(conn, seed=seed, patients=patients)
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

    from pipelines.publish import secrets_client

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


def run_workload_from_config(config: LakehouseConfig, *, rate: float, seconds: float, seed: int = 11) -> None:
    """The SQL workload at `rate`, and the device workload beside it (a quarter of the rate)."""
    import threading

    from pipelines.world.workload import Workload

    device_thread = None
    devices = _devices_source(config)
    if devices is not None:
        from pipelines.world.devices_schema import create_device_tables
        from pipelines.world.devices_workload import DeviceWorkload, DeviceWorkloadConfig

        client = _dynamodb_client(devices)
        workload = DeviceWorkload(
            client, create_device_tables(client), DeviceWorkloadConfig(rate=max(1.0, rate / 4), seed=seed)
        )

        def run_devices() -> None:
            stats = workload.run(duration_seconds=seconds)
            log.info("device workload: %s", dict(sorted(stats.by_table().items())))

        device_thread = threading.Thread(target=run_devices, name="device-workload")
        device_thread.start()
    with _admin_connections(config) as (my, pgc):
        my.autocommit(False)
        pgc.autocommit = False
        stats = Workload(my, pgc, seed=seed).run(rate=rate, duration=seconds)
    if device_thread is not None:
        device_thread.join()
    log.info(
        "workload: %d operations, %d transactions in %.1f s",
        stats.operations,
        stats.transactions,
        stats.elapsed_seconds,
    )
    for table, counts in sorted(stats.by_table().items()):
        log.info("  %-20s %s", table, counts)


def run_demo(config_path: str | None, *, seconds: float, rate: float) -> None:
    """World -> snapshot -> workload -> bounded sync -> show."""
    from connectors.lake.lake import Lake
    from pipelines.report import print_lake, print_reports
    from pipelines.runner import sync_all

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
    run_workload_from_config(config, rate=rate, seconds=seconds, seed=int.from_bytes(os.urandom(2), "big"))
    print(
        "4/6 capturing the changes (binlog, logical replication, DynamoDB Streams) and merging current state",
        flush=True,
    )
    print_reports(sync_all(config))
    print()
    print_lake(Lake(config.lake), [s.name for s in config.sources], source_rows=_source_rows(config))
    if config.search.mysql_source in {s.name for s in config.sources}:
        print()
        print(
            "5/6 search: synonyms table -> dictionary -> OpenSearch analyzers; 360° documents -> the people index"
        )
        _search_demo(config)
    if config.redshift.federated or config.redshift.views:
        print()
        print(
            "6/6 analytics: `lakehouse publish` (Glue on moto, the DuckDB warehouse with live Aurora attached)"
        )
        _analytics_demo(config)


def _search_demo(config: LakehouseConfig) -> None:
    """Publish the synonyms, index the changed 360° documents, and run one search."""
    from connectors.lake.lake import Lake
    from connectors.opensearch.client import open_client
    from pipelines.search import Searcher, format_hits
    from pipelines.search_docs import PeopleSources
    from pipelines.search_index import PeopleIndexer
    from pipelines.synonym_publish import publish_synonyms, synonyms_path

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
        lake, client, alias=search.people_alias, sources=sources, synonyms_path=synonyms_path(search)
    )
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
    from pipelines.analytics import run
    from pipelines.publish import open_warehouse, publish
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


def _source_rows(config: LakehouseConfig) -> dict[str, dict[str, int]]:
    """Each captured table's row count in the source now, to set beside the lake's."""
    from pipelines.sources import open_source

    out: dict[str, dict[str, int]] = {}
    for source_config in config.sources:
        source = open_source(source_config)
        try:
            out[source.name] = {t.lake_name: source.count_rows(t) for t in source.tables()}
        finally:
            source.close()
    return out
