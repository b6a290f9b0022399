"""The `lakehouse` command line."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from connectors.lake.lease import LeaseHeldError, LeaseLostError
from connectors.source import SourceError
from pipelines.config import ConfigError, LakehouseConfig, load_config

if TYPE_CHECKING:
    from connectors.lake.lake import Lake

log = logging.getLogger("lakehouse")


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    for noisy in ("pymysqlreplication", "botocore", "urllib3", "pyiceberg", "opensearch"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _cmd_stack(args: argparse.Namespace) -> int:
    from devstack.__main__ import main as devstack_main

    return devstack_main([args.action, *args.services])


def _selected(config: LakehouseConfig, names: Sequence[str] | None) -> list[str]:
    for n in names or ():
        config.source(n)  # raises ConfigError naming the configured sources
    return [s.name for s in config.sources if not names or s.name in names]


def _cmd_sync(args: argparse.Namespace) -> int:
    from pipelines.capture.runner import sync_all
    from pipelines.report import print_reports

    config = load_config(args.config)
    reports = sync_all(config, _selected(config, args.source), merge=not args.no_merge)
    print_reports(reports)
    return 0


def _cmd_merge(args: argparse.Namespace) -> int:
    from connectors.lake.lake import Lake

    config = load_config(args.config)
    lake = Lake(config.lake)
    for name in _selected(config, args.source):
        for result in lake.current(name).merge():
            print(f"{name}.{result.table}: merged to commit {result.commit_seq}: {result.rows} rows "
                  f"({result.upserts} upserts, {result.deletes} deletes)")  # fmt: skip
    return 0


def _cmd_maintain(args: argparse.Namespace) -> int:
    from connectors.lake.lake import Lake

    config = load_config(args.config)
    lake = Lake(config.lake)
    for name in _selected(config, args.source):
        for report in lake.current(name).delete_orphans():
            print(f"{name}.{report.table}: deleted {report.deleted} orphan file(s); "
                  f"{report.waiting} record(s) still within the grace period")  # fmt: skip
    return 0


def _cmd_stream(args: argparse.Namespace) -> int:
    from connectors.lake.lake import Lake
    from pipelines.capture.health import HealthBoard, HealthServer
    from pipelines.capture.runner import stream_configured
    from pipelines.report import print_reports

    config = load_config(args.config)
    lake = Lake(config.lake, config.tenancy)
    names = _selected(config, args.source)
    stop = threading.Event()
    board = HealthBoard(stop)  # readiness is false as soon as `stop` is set
    for name in names:
        board.stream(name)

    def on_sigterm(*_: object) -> None:
        stop.set()
        log.info("SIGTERM: not ready; stopping after the current batch")

    signal.signal(signal.SIGTERM, on_sigterm)
    server = None
    if args.health_port is not None:
        try:
            server = HealthServer(board, args.health_host, args.health_port).start()
        except OSError as e:
            raise ConfigError(
                f"cannot serve the health endpoints on {args.health_host}:{args.health_port}: {e}"
            ) from None
    reports = []
    errors: list[BaseException] = []

    if args.shard_worker:
        from connectors.dynamodb.config import DynamoDBSourceConfig

        wrong = [n for n in names if not isinstance(config.source(n), DynamoDBSourceConfig)]
        if wrong:
            raise ConfigError(
                f"--shard-worker reads DynamoDB sources only; {wrong} are not (pick with --source)"
            )

    def run(name: str) -> None:
        try:
            if args.shard_worker:
                from pipelines.capture.shard_worker import run_shard_worker

                source_config = config.source(name)
                assert isinstance(source_config, DynamoDBSourceConfig)
                reports.append(run_shard_worker(lake, source_config, stop=stop, health=board.stream(name)))
                return
            reports.append(
                stream_configured(
                    lake,
                    config.source(name),
                    stop=stop,
                    merge_every_seconds=config.lake.merge_every_seconds,
                    health=board.stream(name),
                )
            )
        except BaseException as e:  # surfaced below, after the other streams stop
            errors.append(e)
            stop.set()

    threads = [threading.Thread(target=run, args=(n,), name=f"stream-{n}") for n in names]
    for t in threads:
        t.start()
    try:
        while any(t.is_alive() for t in threads):
            for t in threads:
                t.join(timeout=0.5)
    except KeyboardInterrupt:
        log.info("stopping after the current batch (Ctrl-C again to abort)")
        stop.set()
        for t in threads:
            t.join()
    finally:
        if server is not None:
            server.close()
    print_reports(reports)
    if errors:
        raise errors[0]
    return 0


def _backfill_progress(lake: Lake, source: str, request_id: str) -> None:
    """Log how far the stream runner is with a backfill request (from the lake's last commit)."""
    from pipelines.capture import requests

    for line in requests.progress_lines(lake.commit_log(source).latest(), request_id):
        log.info("%s", line)


def _cmd_backfill(args: argparse.Namespace) -> int:
    from connectors.lake.lake import Lake
    from pipelines.capture import requests
    from pipelines.capture.runner import serve_backfill
    from pipelines.capture.sources import open_source
    from pipelines.report import print_reports

    config = load_config(args.config)
    source_config = config.source(args.source)
    lake = Lake(config.lake, config.tenancy)
    wanted = list(dict.fromkeys(args.tables))

    def request() -> requests.BackfillRequest:
        found, continued = requests.continue_or_submit(lake.storage, args.source, wanted)
        if continued:
            log.info("continuing backfill request %s of %s", found.request_id, ", ".join(wanted))
        return found

    if requests.runner_alive(lake.storage, args.source):
        # A stream runner owns the source's commit log: it serves the request.
        handed = request()
        log.info(
            "a stream runner is active for %s; backfill request %s handed to it",
            args.source,
            handed.request_id,
        )
        outcome = requests.wait(
            lake.storage, args.source, handed.request_id,
            progress=lambda: _backfill_progress(lake, args.source, handed.request_id),
        )  # fmt: skip
        if not outcome["ok"]:
            raise ConfigError(f"backfill of {wanted} failed in the stream runner: {outcome['error']}")
        print(
            f"{args.source}: backfill of {', '.join(wanted)} committed as commit {outcome['commit']} ({outcome['rows']} rows)"
        )
        return 0
    source = open_source(source_config)
    try:
        known = {t.name for t in source.tables()}
        unknown = [t for t in wanted if t not in known]
        if unknown:
            raise ConfigError(
                f"source {args.source!r} does not capture table(s) {unknown}; it captures {sorted(known)}"
            )
        print_reports([serve_backfill(lake, source, request())])
    finally:
        source.close()
    return 0


def _cmd_resnapshot(args: argparse.Namespace) -> int:
    from connectors.lake.lake import Lake
    from pipelines.capture.runner import resnapshot_source
    from pipelines.capture.sources import open_source
    from pipelines.report import print_reports

    config = load_config(args.config)
    source = open_source(config.source(args.source))
    try:
        print_reports([resnapshot_source(Lake(config.lake, config.tenancy), source)])
    finally:
        source.close()
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    from connectors.lake.lake import Lake
    from pipelines.report import count_source_rows, print_lake, print_usage

    config = load_config(args.config)
    names = _selected(config, args.source)
    counts = None if args.no_source_rows else count_source_rows(config, names)
    lake = Lake(config.lake)
    print_lake(lake, names, sample=args.sample, source_rows=counts)
    if args.usage_days > 0:
        print_usage(lake, names, config.costs, args.usage_days)
    return 0


def _cmd_preflight(args: argparse.Namespace) -> int:
    from pipelines.capture.sources import open_source

    config = load_config(args.config)
    for name in _selected(config, args.source):
        source = open_source(config.source(name))
        try:
            source.preflight()
            print(f"{name}: ok ({len(source.tables())} tables)")
        finally:
            source.close()
    return 0


def _cmd_search(args: argparse.Namespace) -> int:
    from opensearchpy.exceptions import ConnectionError as OpenSearchConnectionError

    from connectors.opensearch.search import IndexNotFoundError
    from pipelines.search.query import Searcher, TenantSearchError, format_hits

    config = load_config(args.config)
    people = config.search.people_alias
    index = people if args.index in (None, "people") else args.index
    if args.tenant is not None and index != people:
        raise ConfigError("--tenant searches the tenant's alias of the people index; leave out --index")
    searcher = Searcher.from_config(config)
    if not args.verbose:
        # opensearch-py logs each failed request as a WARNING, with the connection error's whole
        # traceback; every failure below becomes one line of error instead.
        logging.getLogger("opensearch").setLevel(logging.ERROR)
    try:
        hits = searcher.search(" ".join(args.query), index=index, size=args.size, tenant=args.tenant)
    except TenantSearchError as e:
        raise ConfigError(str(e)) from None
    except IndexNotFoundError as e:
        hint = "; `lakehouse index` creates it from the lake" if index == people else ""
        raise ConfigError(f"{e}{hint}") from None
    except OpenSearchConnectionError:
        raise ConfigError(
            f"cannot reach OpenSearch at {config.search.opensearch.url} (is the stack up? `lakehouse stack up`)"
        ) from None
    print(format_hits(hits))
    return 0


def _follow(every: float, step: Callable[[], None]) -> None:
    """Run `step` every `every` seconds until SIGTERM or Ctrl-C (between two steps)."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.is_set():
            step()
            stop.wait(every)
    except KeyboardInterrupt:
        pass


def _cmd_index(args: argparse.Namespace) -> int:
    from connectors.lake.lake import Lake
    from connectors.opensearch.client import open_client
    from pipelines.search.docs import PeopleSources
    from pipelines.search.index import PeopleIndexer
    from pipelines.search.synonym_publish import synonyms_path
    from pipelines.search.tenants import people_tenant_key

    config = load_config(args.config)
    search = config.search
    sources = PeopleSources(search.mysql_source, search.mysql_schema, search.devices_source)
    indexer = PeopleIndexer(
        Lake(config.lake), open_client(search.opensearch), alias=search.people_alias, sources=sources,
        synonyms_path=synonyms_path(search), tenant_key=people_tenant_key(config),
    )  # fmt: skip
    failures = 0

    def once(full: bool = False, recreate: bool = False) -> None:
        nonlocal failures
        report = indexer.run(full=full, recreate=recreate)
        r = report.result
        failures += len(r.failures)
        problem = report.stale_problem()
        if report.patients or not args.follow:
            print(
                f"{report.index}: {report.patients} patients -> {r.indexed} indexed, {r.deleted} deleted, "
                f"{r.stale} stale, {len(r.failures)} dead-lettered"
                f"{' to ' + report.dead_letter_file if report.dead_letter_file else ''} "
                f"(version {report.version}, {report.seconds:.1f} s)",
                flush=True,
            )
        if problem:
            failures += 1
            print(f"lakehouse: error: {problem}", file=sys.stderr, flush=True)

    once(full=args.full, recreate=args.recreate)
    if args.follow:
        _follow(args.every, once)
    return 1 if failures else 0


def _cmd_synonyms(args: argparse.Namespace) -> int:
    from connectors.lake.current import MergeConflictError
    from connectors.lake.lake import Lake
    from connectors.opensearch.client import open_client
    from pipelines.search.synonym_publish import merge_synonyms_table, publish_synonyms

    config = load_config(args.config)
    lake = Lake(config.lake)
    client = open_client(config.search.opensearch)
    syn = config.search.synonyms
    last_head = -1

    def once(force: bool = False) -> None:
        nonlocal last_head
        latest = lake.commit_log(syn.source).latest()
        head = latest.heads.get(syn.lake_table, 0) if latest else 0
        if args.follow and head == last_head:
            return  # no new commit of the synonyms table
        try:
            head = merge_synonyms_table(lake, syn)
        except MergeConflictError:
            return  # a running `lakehouse stream` merged it meanwhile: look again next round
        last_head = head
        report = publish_synonyms(lake, config.search, client, force_apply=force)
        print(report.describe(), flush=True)
        for r in report.rejected:
            print(f"  row {r.row_id} left out: {r.reason}", flush=True)

    once(force=args.force)
    if args.follow:
        _follow(args.every, once)
    return 0


def _cmd_publish(args: argparse.Namespace) -> int:
    from connectors.catalog.glue_plan import CatalogError
    from connectors.catalog.redshift_publish import RedshiftPublishError
    from connectors.catalog.warehouse import WarehouseError
    from pipelines.publish.catalogs import publish

    try:
        report = publish(load_config(args.config), dry_run=args.dry_run, parts=args.only or None)
    except (CatalogError, RedshiftPublishError, WarehouseError) as e:
        raise ConfigError(str(e)) from None
    print(report)
    return 0


def _cmd_query(args: argparse.Namespace) -> int:
    from connectors.catalog.warehouse import WarehouseError, query
    from pipelines.publish.analytics import UseCaseError, load_use_cases, render, run
    from pipelines.publish.catalogs import open_warehouse, published_schemas, warehouse_path
    from pipelines.report import format_table

    config = load_config(args.config)
    path = args.warehouse or warehouse_path(config)
    try:
        if args.render:
            print(render(args.use_case or "", args.render, schemas=published_schemas(config, args.render)))
            return 0
        if not args.use_case and not args.sql:
            cases = load_use_cases()
            print("\n".join(f"{c.name} (v{c.version}, {c.audience})" for c in cases.values()))
            return 0
        con = open_warehouse(config, path)
        try:
            result = run(con, args.use_case) if args.use_case else query(con, " ".join(args.sql))
        finally:
            con.close()
    except (WarehouseError, UseCaseError) as e:
        raise ConfigError(str(e)) from None
    print(format_table(result.column_names, [list(r.values()) for r in result.to_pylist()]))
    print(f"({result.num_rows} rows; warehouse {path})")
    return 0


def _cmd_world(args: argparse.Namespace) -> int:
    from pipelines.demo import create_world_from_config

    create_world_from_config(load_config(args.config), patients=args.patients, seed=args.seed)
    return 0


def _cmd_workload(args: argparse.Namespace) -> int:
    """The database workload at --rate and the device workload beside it (a quarter of the rate), all
    or nothing: if one part fails the other stops and the command fails; SIGINT/SIGTERM stop both."""
    from pipelines.demo import run_workload_from_config
    from pipelines.world.schema import WorldError

    config = load_config(args.config)
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("%s: stopping the workload after the current operation", signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        results = run_workload_from_config(
            config, rate=args.rate, seconds=args.seconds, seed=args.seed, stop=stop
        )
    except WorldError as e:
        print(f"lakehouse: error: {e}", file=sys.stderr)
        return 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    for name, stats in results.items():
        print(f"{name} workload: {stats}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from pipelines.demo import run_demo

    run_demo(args.config, seconds=args.seconds, rate=args.rate)
    return 0


def _cmd_tenants(args: argparse.Namespace) -> int:
    import json

    from connectors.catalog.glue_changelog import ChangelogCatalog
    from connectors.lake.lake import Lake
    from connectors.lake.tenant_policies import (
        iam_policy,
        lake_formation_documents,
        lake_tenants,
        role_tags,
        tenant_tables,
    )

    config = load_config(args.config)
    lake = Lake(config.lake, config.tenancy)
    try:
        layout = tenant_tables(lake, args.bucket, args.prefix)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    tenants = args.tenant or lake_tenants(lake, layout)
    out: dict[str, object]
    if config.tenancy.lake_formation:
        if not args.catalog_id:
            raise ConfigError("[tenancy] lake_formation = true: give the account's catalog id (--catalog-id)")
        databases = {source: ChangelogCatalog.database(source) for source in layout.tables}
        out = lake_formation_documents(layout, tenants, args.catalog_id, databases)
    else:
        out = {"PolicyDocument": iam_policy(layout)}
    out["Roles"] = role_tags(layout.tag_key, tenants, args.role_prefix)
    print(json.dumps(out, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lakehouse", description=__doc__)
    p.add_argument("--config", help="config file (default: $LAKEHOUSE_CONFIG or ./lakehouse.toml)")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("stack", help="start, stop or show the local services")
    s.add_argument("action", choices=["up", "down", "status"])
    s.add_argument("services", nargs="*", help="services (default: all)")
    s.set_defaults(func=_cmd_stack)

    s = sub.add_parser(
        "demo", help="the main job end to end on the local stack: world, snapshot, workload, sync, show"
    )
    s.add_argument("--seconds", type=float, default=10.0, help="how long the workload runs")
    s.add_argument("--rate", type=float, default=200.0, help="workload operations per second")
    s.set_defaults(func=_cmd_demo)

    s = sub.add_parser(
        "sync", help="a bounded run: snapshot if needed, then stream up to the position of now"
    )
    s.add_argument("--once", action="store_true", help="run once and exit (the default and only mode)")
    s.add_argument("--source", action="append", help="only this source (repeatable)")
    s.add_argument(
        "--no-merge", action="store_true", help="only the change log; leave current state to `merge`"
    )
    s.set_defaults(func=_cmd_sync)

    s = sub.add_parser("merge", help="merge committed changes into the current-state tables")
    s.add_argument("--source", action="append", help="only this source (repeatable)")
    s.set_defaults(func=_cmd_merge)

    s = sub.add_parser(
        "maintain", help="delete files of expired Iceberg snapshots whose grace period has passed"
    )
    s.add_argument("--source", action="append", help="only this source (repeatable)")
    s.set_defaults(func=_cmd_maintain)

    s = sub.add_parser("stream", help="stream continuously with low latency until Ctrl-C / SIGTERM")
    s.add_argument("--source", action="append", help="only this source (repeatable)")
    # Off by default: a local `lakehouse stream` opens no listener unasked; deployments pass a port.
    s.add_argument(
        "--health-port",
        type=int,
        help="serve /healthz (liveness) and /readyz (readiness: holds the source's lease and is capturing) "
        "on this port; 0 picks a free port (logged). Default: off",
    )
    s.add_argument(
        "--health-host",
        default="0.0.0.0",
        help="address the health endpoints bind to (default: every interface)",
    )
    s.add_argument(
        "--shard-worker",
        action="store_true",
        help="DynamoDB: share the source's shards with other `--shard-worker` processes (shard leases, "
        "one commit log; no merges: run them from Dagster or `lakehouse merge`)",
    )
    s.set_defaults(func=_cmd_stream)

    s = sub.add_parser("backfill", help="re-snapshot some tables of a source")
    s.add_argument("--source", required=True)
    s.add_argument("tables", nargs="+")
    s.set_defaults(func=_cmd_backfill)

    s = sub.add_parser("resnapshot", help="re-snapshot every table of a source (after its position was lost)")
    s.add_argument("--source", required=True)
    s.set_defaults(func=_cmd_resnapshot)

    s = sub.add_parser("show", help="what landed in the lake")
    s.add_argument("--source", action="append")
    s.add_argument("--sample", type=int, default=0, help="also print N current-state rows per table")
    s.add_argument(
        "--no-source-rows",
        action="store_true",
        help="do not count the source tables' rows (a COUNT(*) per table, a Scan per DynamoDB table)",
    )
    s.add_argument(
        "--usage-days",
        type=float,
        default=7.0,
        help="also sum the requests, bytes and estimated cost of the runs of the last N days (0: off)",
    )
    s.set_defaults(func=_cmd_show)

    s = sub.add_parser("preflight", help="check the sources' server settings and permissions")
    s.add_argument("--source", action="append")
    s.set_defaults(func=_cmd_preflight)

    s = sub.add_parser("world", help="create and seed the sample health-and-wellness databases")
    s.add_argument("--patients", type=int, default=200)
    s.add_argument("--seed", type=int, default=7)
    s.set_defaults(func=_cmd_world)

    s = sub.add_parser("workload", help="insert, update and delete in the sample databases at a rate")
    s.add_argument("--rate", type=float, default=100.0, help="operations per second")
    s.add_argument("--seconds", type=float, default=30.0)
    s.add_argument("--seed", type=int, default=11)
    s.set_defaults(func=_cmd_workload)

    s = sub.add_parser(
        "publish",
        help="register the lake in Glue, publish the federated schemas and views (Redshift, Athena) "
        "and build the local DuckDB warehouse",
    )
    s.add_argument(
        "--dry-run",
        action="store_true",
        help="print the plan, change nothing. Without [redshift.target] the Redshift part is the full "
        "DDL, rendered offline as a SQL script (what a first publish runs; secrets only by ARN): "
        "`lakehouse publish --dry-run --only redshift`",
    )
    s.add_argument(
        "--only",
        action="append",
        choices=["glue", "athena", "redshift", "warehouse"],
        help="publish only this part (repeatable)",
    )
    s.set_defaults(func=_cmd_publish)

    s = sub.add_parser(
        "query",
        help="SQL in the local DuckDB warehouse: the lake (<source>, <source>_changelog), the federated "
        "and Spectrum schemas and the views of [redshift]",
    )
    s.add_argument("sql", nargs="*", help="SQL (DuckDB); none and no --use-case lists the use cases")
    s.add_argument("--use-case", help="run a named use case (pipelines/publish/usecases/<name>.sql)")
    s.add_argument(
        "--render", choices=["redshift", "athena"], help="print the use case's SQL for that engine"
    )
    s.add_argument("--warehouse", help="DuckDB file (default: <lake root>/warehouse.duckdb)")
    s.set_defaults(func=_cmd_query)

    s = sub.add_parser("search", help="search the people index; ranked results with highlights")
    s.add_argument("query", nargs="+")
    s.add_argument("--index", help="an index or alias to search instead of the people alias of [search]")
    s.add_argument(
        "--tenant",
        help="search only this tenant's documents, through its filtered alias of the people index ([tenancy])",
    )
    s.add_argument("--size", type=int, default=10)
    s.set_defaults(func=_cmd_search)

    s = sub.add_parser("index", help="index changed 360° documents from the lake into OpenSearch")
    s.add_argument("--full", action="store_true", help="rebuild every document, not only the changed ones")
    s.add_argument(
        "--recreate",
        action="store_true",
        help="delete the index behind the alias and build it again from this lake's state (to show an "
        "older state on purpose, e.g. a lake restored from a backup; a rebuilt lake needs no --recreate)",
    )
    s.add_argument(
        "--follow", action="store_true", help="keep indexing what changes (with `lakehouse stream`)"
    )
    s.add_argument("--every", type=float, default=1.0, help="seconds between runs with --follow")
    s.set_defaults(func=_cmd_index)

    s = sub.add_parser(
        "synonyms", help="publish the synonyms table as a new dictionary version (if it changed)"
    )
    s.add_argument("action", choices=["publish"])
    s.add_argument("--force", action="store_true", help="apply to the analyzers even if unchanged")
    s.add_argument("--follow", action="store_true", help="publish each new commit of the synonyms table")
    s.add_argument("--every", type=float, default=1.0, help="seconds between looks at the lake with --follow")
    s.set_defaults(func=_cmd_synonyms)

    s = sub.add_parser("tenants", help="the lake's tenant isolation: IAM policy and role tags (JSON)")
    s.add_argument("action", choices=["policies"])
    s.add_argument(
        "--tenant", action="append", help="only this tenant's role (repeatable; default: the lake's)"
    )
    s.add_argument(
        "--role-prefix", default="lakehouse-tenant-", help="tenant roles are named <prefix><tenant>"
    )
    s.add_argument("--bucket", help="the lake's bucket (default: that of an s3:// lake root)")
    s.add_argument("--prefix", help="the lake's key prefix in the bucket (default: that of the root)")
    s.add_argument("--catalog-id", help="AWS account id of the Glue catalog (Lake Formation only)")
    s.set_defaults(func=_cmd_tenants)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    try:
        return int(args.func(args) or 0)
    except (ConfigError, SourceError, LeaseHeldError, LeaseLostError) as e:
        print(f"lakehouse: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
