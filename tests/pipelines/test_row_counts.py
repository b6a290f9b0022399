"""Row estimates from each source's own statistics, exact counts on the reader endpoint."""

from __future__ import annotations

import os
from typing import Any

from pydantic import SecretStr

from connectors.dynamodb.config import AwsConnection, DynamoDBSourceConfig
from connectors.postgres.config import PostgresSourceConfig
from pipelines.capture.row_counts import RowTolerance, count_source_rows, estimate_source_rows
from tests.mysql_support import make_config, seq_table


def test_the_tolerance_allows_an_absolute_floor_or_a_share_of_the_larger_count() -> None:
    tolerance = RowTolerance(relative=0.5, absolute=1000)
    assert tolerance.accepts(0, 1000) and not tolerance.accepts(0, 1001)  # a small table: the floor
    assert tolerance.accepts(1_000_000, 600_000)  # InnoDB's estimate may be 40 % off
    assert not tolerance.accepts(1_000_000, 400_000)  # the lake lost more than half
    assert not tolerance.accepts(0, 2_000_000)  # an empty lake beside a large table


def test_mysql_estimates_come_from_the_dictionary(mysql_any_db: Any) -> None:
    conn = mysql_any_db.admin_connect()
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE many (id INT PRIMARY KEY, note VARCHAR(20))")
        cur.execute(f"INSERT INTO many SELECT seq, 'x' FROM {seq_table(500)}")
        cur.execute("CREATE TABLE few (id INT PRIMARY KEY)")
        cur.execute("INSERT INTO few VALUES (1), (2)")
        cur.execute("ANALYZE TABLE many, few")
    conn.commit()
    config = make_config(mysql_any_db, tables=("many", "few"))
    estimates = estimate_source_rows(config, ["many", "few", "missing"])
    assert estimates["few"] == 2 and estimates["missing"] is None
    # InnoDB samples pages: close to, not necessarily exactly, the count.
    assert estimates["many"] is not None and RowTolerance(0.2, 0).accepts(500, estimates["many"])


def _pg_config(db: Any, **extra: Any) -> PostgresSourceConfig:
    return PostgresSourceConfig(
        name="est",
        host=db.host,
        port=db.port,
        user=db.cdc_user,
        password=db.cdc_password,
        database=db.name,
        tables=("grows",),
        **extra,
    )


def test_postgres_estimates_scale_the_last_analyze_to_the_size_now(pg_db: Any) -> None:
    conn = pg_db.admin_connect()
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE grows (id INT PRIMARY KEY, note TEXT)")
        cur.execute("INSERT INTO grows SELECT g, repeat('x', 100) FROM generate_series(1, 1000) g")
    config = _pg_config(pg_db)
    assert estimate_source_rows(config, ["grows", "missing"]) == {"grows": None, "missing": None}
    with conn.cursor() as cur:
        cur.execute("ANALYZE grows")
    assert estimate_source_rows(config, ["grows"]) == {"grows": 1000}
    with conn.cursor() as cur:  # twice the rows, not analyzed again: the planner scales by pages
        cur.execute("INSERT INTO grows SELECT g, repeat('x', 100) FROM generate_series(1001, 2000) g")
    estimate = estimate_source_rows(config, ["grows"])["grows"]
    assert estimate is not None and RowTolerance(0.1, 0).accepts(2000, estimate)


def test_exact_counts_use_the_reader_endpoint(pg_db: Any) -> None:
    conn = pg_db.admin_connect()
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE grows (id INT PRIMARY KEY)")
        cur.execute("INSERT INTO grows SELECT generate_series(1, 7)")
    # The writer endpoint does not even resolve: only the reader can have answered.
    config = _pg_config(pg_db, reader_host=pg_db.host).model_copy(update={"host": "writer.invalid"})
    assert count_source_rows(config, ["grows", "missing"]) == {"grows": 7, "missing": None}


def test_dynamodb_estimates_are_describe_tables_item_count(aws_client_kwargs: dict[str, str]) -> None:
    import boto3

    from tests.ddb_support import create_table

    client = boto3.client("dynamodb", **aws_client_kwargs)
    table = f"est_{os.urandom(5).hex()}"
    create_table(client, table)
    client.batch_write_item(
        RequestItems={
            table: [{"PutRequest": {"Item": {"pk": {"S": f"p{i}"}, "sk": {"N": str(i)}}}} for i in range(4)]
        }
    )
    config = DynamoDBSourceConfig(
        name="est",
        tables=(table,),
        aws=AwsConnection(
            endpoint_url=aws_client_kwargs["endpoint_url"],
            access_key_id="testing",
            secret_access_key=SecretStr("x"),
        ),
    )
    assert estimate_source_rows(config, [table, f"{table}_missing"]) == {table: 4, f"{table}_missing": None}
