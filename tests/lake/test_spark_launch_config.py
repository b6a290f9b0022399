"""`[lake.spark]`: each launcher's required settings, refused by field name when missing."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from connectors.lake.config import LakeConfig

S3_GLUE: dict[str, Any] = {"root": "s3://lake/prefix", "catalog": "glue", "spark_merge_min_rows": 1_000_000}


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({**S3_GLUE, "spark": {"launcher": "glue", "pipes_bucket": "p"}}, "lake.spark.glue_job_name"),
        ({**S3_GLUE, "spark": {"launcher": "glue", "glue_job_name": "merge"}}, "lake.spark.pipes_bucket"),
        (
            {
                **S3_GLUE,
                "spark": {"launcher": "emr_serverless", "emr_application_id": "a", "pipes_bucket": "p"},
            },
            "lake.spark.execution_role_arn, lake.spark.entry_point",
        ),
        (
            {
                **S3_GLUE,
                "spark": {
                    "launcher": "emr_serverless",
                    "emr_application_id": "a",
                    "execution_role_arn": "arn:aws:iam::1:role/r",
                    "pipes_bucket": "p",
                    "entry_point": "/local/pipes_job.py",
                },
            },
            "lake.spark.entry_point",
        ),
        ({"spark": {"launcher": "local_pipes"}}, "lake.spark_merge_min_rows"),
        ({"spark_merge_min_rows": 1, "spark": {"launcher": "local_pipes"}}, "lake.spark_jars_dir"),
        (
            {
                **S3_GLUE,
                "root": ".lake",
                "spark": {"launcher": "glue", "glue_job_name": "m", "pipes_bucket": "p"},
            },
            "lake.root",
        ),
        (
            {
                **S3_GLUE,
                "catalog": "sqlite",
                "spark": {"launcher": "glue", "glue_job_name": "m", "pipes_bucket": "p"},
            },
            "lake.catalog",
        ),
        ({"spark": {"launcher": "databricks"}}, "launcher"),
    ],
)
def test_a_launcher_without_its_settings_is_refused_naming_them(settings: dict[str, Any], named: str) -> None:
    with pytest.raises(ValidationError, match=named):
        LakeConfig.model_validate(settings)


def test_complete_launcher_settings_load_and_in_process_needs_nothing() -> None:
    glue = LakeConfig.model_validate(
        {**S3_GLUE, "spark": {"launcher": "glue", "glue_job_name": "m", "pipes_bucket": "p"}}
    )
    assert glue.spark.launcher == "glue" and glue.spark.pipes_prefix == "dagster-pipes/"
    assert LakeConfig().spark.launcher == "in_process"
