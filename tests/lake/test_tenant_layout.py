"""Tenants in the lake (issue 16): every tenant-owned row under its tenant's prefix, and an IAM
policy on those prefixes that lets a tenant read its own objects and no one else's."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pyarrow as pa
import pytest
from botocore.exceptions import ParamValidationError

from connectors.catalog.glue_changelog import ChangelogCatalog
from connectors.events import TableId
from connectors.lake.config import LakeConfig
from connectors.lake.lake import Lake
from connectors.lake.tenant_policies import (
    TenantTables,
    iam_policy,
    lake_formation_documents,
    lake_tenants,
    role_tags,
    tenant_tables,
    validate_lake_formation,
)
from connectors.tenancy import TenancyConfig
from pipelines.capture.runner import sync_source
from pipelines.capture.sources import open_source
from tests.lake.helpers import changes, schema, snapshot_batch, stream_batch
from tests.lake.iam_policy_eval import UnsupportedPolicy, is_allowed
from tests.mysql_support import make_config

A, B = "clinic-a", "clinic-b"


@dataclass
class Captured:
    lake: Lake
    source: str
    database: str
    bucket: str
    claim_tenants: dict[int, str]  # the tenant each claim's rows must land under


def _tenancy(source: str) -> TenancyConfig:
    return TenancyConfig(
        tables={
            f"{source}.patients": {"column": "tenant_id"},
            f"{source}.insurance_claims": {
                "via": {"table": "patients", "column": "patient_id", "key": "patient_id"}
            },
        }
    )


def _sync(lake: Lake, db: Any, source: str) -> None:
    config = make_config(db, name=source, tables=["patients", "insurance_claims"])
    src = open_source(config)
    try:
        sync_source(lake, src)
    finally:
        src.close()


@pytest.fixture
def captured(mysql_db: Any, s3_lake: Any, moto_endpoint: str) -> Iterator[Captured]:
    """Two tenants captured from MariaDB into an S3 lake (moto): a snapshot, then a stream with a
    tenant change, a NULL tenant, a parent and child in one transaction, and a delete."""
    source = f"shop_{uuid.uuid4().hex[:6]}"
    conn = mysql_db.admin_connect()
    with conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE patients (patient_id BIGINT PRIMARY KEY, tenant_id VARCHAR(64) NULL, name VARCHAR(50))"
        )
        cur.execute(
            "CREATE TABLE insurance_claims (claim_id BIGINT PRIMARY KEY, patient_id BIGINT, amount INT)"
        )
        for i in range(1, 7):
            cur.execute("INSERT INTO patients VALUES (%s, %s, %s)", (i, A if i % 2 else B, f"p{i}"))
            cur.execute("INSERT INTO insurance_claims VALUES (%s, %s, %s)", (i, i, 100 * i))
    config = LakeConfig(
        root=s3_lake.root, s3=s3_lake.options, catalog="glue", glue_endpoint_url=moto_endpoint
    )
    lake = Lake(config, _tenancy(source))
    _sync(lake, mysql_db, source)  # the snapshot
    claim_tenants = {i: A if i % 2 else B for i in range(1, 7)}
    with conn.cursor() as cur:
        cur.execute("UPDATE patients SET tenant_id = %s WHERE patient_id = 1", (B,))  # A -> B
        cur.execute("INSERT INTO patients VALUES (7, NULL, 'nobody')")
        cur.execute("INSERT INTO patients VALUES (9, 'Clinic/../b', 'unsafe')")
        cur.execute("BEGIN")
        cur.execute("INSERT INTO patients VALUES (8, %s, 'p8')", (A,))
        cur.execute("INSERT INTO insurance_claims VALUES (8, 8, 800)")  # its parent: same transaction
        cur.execute("COMMIT")
        cur.execute("INSERT INTO insurance_claims VALUES (9, 3, 900)")  # its parent: in the lake only
        cur.execute("INSERT INTO insurance_claims VALUES (10, 1, 1000)")  # its parent moved to B
        cur.execute("INSERT INTO insurance_claims VALUES (11, 77, 1100)")  # no such patient
        cur.execute("DELETE FROM patients WHERE patient_id = 6")
    claim_tenants |= {8: A, 9: A, 10: B}
    # A new Lake object: its writer's cache is empty, so claim 9 is resolved from the lake.
    _sync(Lake(config, _tenancy(source)), mysql_db, source)
    yield Captured(lake, source, mysql_db.name, s3_lake.bucket, claim_tenants)


def test_every_tenant_row_lands_under_its_tenant_prefix(captured: Captured) -> None:
    lake, source = captured.lake, captured.source
    patients, claims = (f"{captured.database}__{t}".lower() for t in ("patients", "insurance_claims"))
    seen: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for entry in lake.storage.list_files(f"changelog/{source}"):
        table, folder = entry.path.split("/")[2:4]
        if folder == "_schema":
            assert lake.storage.read_parquet(entry.path).num_rows == 0
            continue
        assert folder.startswith("tenant="), entry.path  # nothing in a shared prefix
        tenant = folder.removeprefix("tenant=")
        rows = lake.storage.read_parquet(entry.path).to_pylist()
        for row in rows:
            if table == patients:
                assert row["tenant_id"] == tenant, (entry.path, row)
                seen[table][tenant].append(row["patient_id"])
            else:
                assert captured.claim_tenants[row["claim_id"]] == tenant, (entry.path, row)
                seen[table][tenant].append(row["claim_id"])
    # Patient 1 under A (snapshot) and, after it moved, under B; patient 6's delete under B.
    assert sorted(seen[patients][A]) == [1, 3, 5, 8]
    assert sorted(seen[patients][B]) == [1, 2, 4, 6, 6]
    assert sorted(seen[claims][A]) == [1, 3, 5, 8, 9]
    assert sorted(seen[claims][B]) == [2, 4, 6, 10]
    # Readers walk the commit records: every staged row is still seen, and the merge applies them.
    assert lake.read_changelog(source, patients).num_rows == 6 + 3  # the snapshot; U 1, I 8, D 6
    current = {r["patient_id"]: r["tenant_id"] for r in lake.current(source).read(patients).to_pylist()}
    assert current == {1: B, 2: B, 3: A, 4: B, 5: A, 8: A}
    assert sorted(r["claim_id"] for r in lake.current(source).read(claims).to_pylist()) == [
        1,
        2,
        3,
        4,
        5,
        6,
        8,
        9,
        10,
    ]


def test_rows_without_a_usable_tenant_go_to_quarantine_with_the_reason(captured: Captured) -> None:
    lake = captured.lake
    files = [e.path for e in lake.storage.list_files(f"quarantine/{captured.source}")]
    rows = pa.concat_tables([lake.storage.read_parquet(f) for f in files]).to_pylist()
    reasons = {(r["table_name"], r["reason"].split(": ", 1)[1]) for r in rows}
    assert reasons == {
        (
            "patients",
            f"tenant column 'tenant_id' is NULL or empty (tenancy.tables.\"{captured.source}.patients\")",
        ),
        (
            "patients",
            "tenant 'Clinic/../b' in column 'tenant_id' is not a safe tenant id "
            "(lower-case letters, digits, '_' or '-', at most 48)",
        ),
        (
            "insurance_claims",
            "no tenant for patient_id=77: no row of patients with patient_id=77 in this batch or the lake",
        ),
    }
    assert all(r["reason"].startswith(f"{captured.source}:{captured.database}.") for r in rows)


def test_glue_change_log_tables_expose_the_tenant_as_a_partition(
    captured: Captured, aws_client_kwargs: dict[str, str]
) -> None:
    glue = boto3.client("glue", **aws_client_kwargs)
    ChangelogCatalog(glue, captured.lake).publish([captured.source])
    database = ChangelogCatalog.database(captured.source)
    claims = f"{captured.database}__insurance_claims".lower()
    table = glue.get_table(DatabaseName=database, Name=claims)["Table"]
    assert [k["Name"] for k in table["PartitionKeys"]] == ["tenant", "commit_date"]
    parts = glue.get_partitions(DatabaseName=database, TableName=claims)["Partitions"]
    assert {p["Values"][0] for p in parts} == {A, B}
    for p in parts:
        assert p["StorageDescriptor"]["Location"].endswith(
            f"/tenant={p['Values'][0]}/commit_date={p['Values'][1]}/"
        )
    assert ChangelogCatalog(glue, captured.lake).plan([captured.source]).actions == []  # nothing new


def test_the_generated_policy_lets_a_tenant_read_and_list_its_own_objects_only(
    captured: Captured, aws_client_kwargs: dict[str, str]
) -> None:
    layout = tenant_tables(captured.lake)
    assert lake_tenants(captured.lake, layout) == [A, B]
    policy = iam_policy(layout)
    s3 = boto3.client("s3", **aws_client_kwargs)
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=captured.bucket)
            for o in page.get("Contents", [])]  # fmt: skip
    mine = [k for k in keys if "/tenant=clinic-a/" in k]
    assert len(mine) >= 4 and len(keys) > 2 * len(mine)  # A's change logs, and much else in the lake

    def get(key: str, tags: dict[str, str]) -> bool:
        return is_allowed(
            policy, "s3:GetObject", f"arn:aws:s3:::{captured.bucket}/{key}", principal_tags=tags
        )

    def list_(prefix: str | None, tags: dict[str, str]) -> bool:
        request = {} if prefix is None else {"s3:prefix": prefix}
        return is_allowed(
            policy, "s3:ListBucket", f"arn:aws:s3:::{captured.bucket}", principal_tags=tags, request=request
        )

    assert [k for k in keys if get(k, {"tenant": A})] == mine
    assert [k for k in keys if get(k, {"tenant": B})] == [k for k in keys if "/tenant=clinic-b/" in k]
    assert not any(get(k, {}) for k in keys)  # an untagged role reads nothing
    assert not any(get(k, {"team": A}) for k in keys)
    table_root = mine[0].split("/tenant=")[0]
    assert list_(f"{table_root}/tenant={A}/", {"tenant": A})
    assert list_(f"{table_root}/tenant={A}/commit_date=", {"tenant": A})
    for prefix in (f"{table_root}/tenant={B}/", f"{table_root}/tenant=clinic-", f"{table_root}/tenant={A}",
                   f"{table_root}/", "lake/", "", None):  # fmt: skip
        assert not list_(prefix, {"tenant": A}), prefix
    assert not any(is_allowed(policy, "s3:PutObject", f"arn:aws:s3:::{captured.bucket}/{k}",
                              principal_tags={"tenant": A}) for k in mine)  # fmt: skip
    roles = role_tags("tenant", [A, B, "Bad/id"], "lakehouse-tenant-")
    assert roles == [
        {"RoleName": "lakehouse-tenant-clinic-a", "Tags": [{"Key": "tenant", "Value": A}]},
        {"RoleName": "lakehouse-tenant-clinic-b", "Tags": [{"Key": "tenant", "Value": B}]},
    ]


def test_lake_formation_documents_are_valid_operation_inputs() -> None:
    layout = TenantTables(
        "bucket", "lake", "tenant", {"shop": ["health__patients", "health__insurance_claims"]}
    )
    docs = lake_formation_documents(layout, [A, B, "Not Valid"], "123456789012", {"shop": "shop_changelog"})
    assert docs["CreateLFTag"] == {"CatalogId": "123456789012", "TagKey": "tenant", "TagValues": [A, B]}
    filters = docs["CreateDataCellsFilter"]
    assert len(filters) == 4
    assert filters[0]["TableData"]["RowFilter"] == {"FilterExpression": f"tenant = '{A}'"}
    broken = {"CreateLFTag": docs["CreateLFTag"], "CreateDataCellsFilter": [{"TableData": {"Name": "x"}}]}
    with pytest.raises(ParamValidationError):
        validate_lake_formation(broken)


def test_a_delete_without_its_tenant_takes_the_tenant_the_lake_knows(tmp_path: Any) -> None:
    """A PostgreSQL delete under REPLICA IDENTITY DEFAULT logs only the key."""
    table = TableId("src", "health", "patients")
    sch = schema((("id", pa.int64()), ("tenant_id", pa.string())), table)
    tenancy = TenancyConfig(tables={"src.patients": {"column": "tenant_id"}})
    lake = Lake(LakeConfig(root=str(tmp_path)), tenancy)
    lake.writer("src").write(
        snapshot_batch(
            10, changes([("I", 10, {"id": 1, "tenant_id": A}), ("I", 10, {"id": 2, "tenant_id": B})], sch)
        )
    )
    record = (
        Lake(LakeConfig(root=str(tmp_path)), tenancy)
        .writer("src")
        .write(stream_batch(10, 20, changes([("D", 11, {"id": 2, "tenant_id": None})], sch)))
    )
    assert record is not None
    [ref] = record.tables["health__patients"].files
    assert f"/tenant={B}/" in ref.path and record.quarantined_rows == 0


def test_the_cli_prints_the_policy_and_the_role_tags(
    captured: Captured, moto_endpoint: str, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from pipelines.cli import main

    root = captured.lake.config.root
    config = tmp_path / "lakehouse.toml"
    config.write_text(
        f'[lake]\nroot = "{root}"\ncatalog = "glue"\nglue_endpoint_url = "{moto_endpoint}"\n'
        f'[lake.s3]\nendpoint_url = "{moto_endpoint}"\naccess_key_id = "testing"\nsecret_access_key = "testing"\n'
        f'[[sources]]\nname = "{captured.source}"\nkind = "mysql"\nhost = "127.0.0.1"\nuser = "x"\n'
        f'password = "x"\ndatabase = "{captured.database}"\ntables = ["patients", "insurance_claims"]\n'
        f'[tenancy.tables."{captured.source}.patients"]\ncolumn = "tenant_id"\n'
        f'[tenancy.tables."{captured.source}.insurance_claims"]\n'
        'via = { table = "patients", column = "patient_id", key = "patient_id" }\n'
    )
    assert main(["--config", str(config), "tenants", "policies", "--tenant", A, "--role-prefix", "t-"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["Roles"] == [{"RoleName": f"t-{A}", "Tags": [{"Key": "tenant", "Value": A}]}]
    assert out["PolicyDocument"] == iam_policy(tenant_tables(captured.lake))
    resources = out["PolicyDocument"]["Statement"][0]["Resource"]
    assert len(resources) == 2 and all("/tenant=${aws:PrincipalTag/tenant}/*" in r for r in resources)


# Policy-evaluation semantics from the IAM User Guide (reference_policies_variables.html: the
# per-user home folder example; reference_policies_elements_resource.html: wildcards), which the
# evaluator above must reproduce before its verdicts on our policy mean anything.
HOME_FOLDERS = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": ["arn:aws:s3:::amzn-s3-demo-bucket"],
            "Condition": {"StringLike": {"s3:prefix": ["${aws:username}/*"]}},
        },
        {
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:PutObject"],
            "Resource": ["arn:aws:s3:::amzn-s3-demo-bucket/${aws:username}/*"],
        },
    ],
}


def test_the_evaluator_follows_the_iam_documentation_examples() -> None:
    bucket = "arn:aws:s3:::amzn-s3-demo-bucket"
    assert is_allowed(HOME_FOLDERS, "s3:GetObject", f"{bucket}/David/notes/a.txt", username="David")
    assert is_allowed(
        HOME_FOLDERS, "S3:getobject", f"{bucket}/David/a.txt", username="David"
    )  # actions: any case
    assert not is_allowed(
        HOME_FOLDERS, "s3:GetObject", f"{bucket}/david/a.txt", username="David"
    )  # ARNs: exact case
    assert not is_allowed(HOME_FOLDERS, "s3:GetObject", f"{bucket}/Bob/a.txt", username="David")
    assert not is_allowed(HOME_FOLDERS, "s3:DeleteObject", f"{bucket}/David/a.txt", username="David")
    assert not is_allowed(HOME_FOLDERS, "s3:GetObject", f"{bucket}/David/a.txt")  # no such key: no match
    assert is_allowed(
        HOME_FOLDERS, "s3:ListBucket", bucket, username="David", request={"s3:prefix": "David/"}
    )
    assert not is_allowed(
        HOME_FOLDERS, "s3:ListBucket", bucket, username="David", request={"s3:prefix": "Bob/"}
    )
    assert not is_allowed(HOME_FOLDERS, "s3:ListBucket", bucket, username="David", request={"s3:prefix": ""})
    assert not is_allowed(
        HOME_FOLDERS, "s3:ListBucket", bucket, username="David"
    )  # no prefix: condition fails
    # A substituted value is literal text, not a wildcard.
    assert not is_allowed(HOME_FOLDERS, "s3:GetObject", f"{bucket}/David/a.txt", username="*")
    tagged = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::b/${aws:PrincipalTag/team}/?.csv"}
        ],
    }
    assert is_allowed(tagged, "s3:GetObject", "arn:aws:s3:::b/red/x.csv", principal_tags={"team": "red"})
    assert not is_allowed(tagged, "s3:GetObject", "arn:aws:s3:::b/red/xy.csv", principal_tags={"team": "red"})
    assert not is_allowed(tagged, "s3:GetObject", "arn:aws:s3:::b/blue/x.csv", principal_tags={"team": "red"})
    with pytest.raises(UnsupportedPolicy):
        is_allowed(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "*", "Resource": "*"}]},
            "s3:GetObject",
            "x",
        )


def test_a_child_staged_before_its_parent_in_one_unit_waits_for_it(tmp_path: Any) -> None:
    """A large transaction split into incomplete batches: the claim comes before its patient."""
    patients, claims = TableId("src", "health", "patients"), TableId("src", "health", "claims")
    p_sch = schema((("id", pa.int64()), ("tenant_id", pa.string())), patients)
    c_sch = schema((("id", pa.int64()), ("patient_id", pa.int64())), claims)
    tenancy = TenancyConfig(
        tables={
            "src.patients": {"column": "tenant_id"},
            "src.claims": {"via": {"table": "patients", "column": "patient_id", "key": "id"}},
        }
    )
    lake = Lake(LakeConfig(root=str(tmp_path)), tenancy)
    writer = lake.writer("src")
    writer.write(
        snapshot_batch(10, changes([("I", 10, {"id": 1, "tenant_id": A})], p_sch), tables=(patients,))
    )
    claim = changes([("I", 11, {"id": 7, "patient_id": 2}), ("I", 11, {"id": 8, "patient_id": 1})], c_sch)
    assert writer.write(stream_batch(10, 0, claim, complete=False)) is None
    record = writer.write(stream_batch(10, 20, changes([("I", 12, {"id": 2, "tenant_id": B})], p_sch)))
    assert record is not None and record.quarantined_rows == 0
    paths = {f.path.split("/")[3]: f.rows for f in record.tables["health__claims"].files}
    assert paths == {f"tenant={B}": 1, f"tenant={A}": 1}
    rows = lake.read_changelog("src", "health__claims").to_pylist()
    assert [(r["id"], r["_seq"] < rows[1]["_seq"]) for r in rows] == [(7, True), (8, False)]  # order kept
