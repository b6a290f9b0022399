"""The lake's large-table merger: tables of at least `min_rows` rows merged by a local Spark session."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from connectors.lake.current import CurrentState, MergeResult
from connectors.lake.spark.merge import merge_with_spark
from connectors.lake.spark.session import local_spark_session, spark_for_lake

if TYPE_CHECKING:
    from connectors.lake.lake import Lake


class SparkMerger:
    """`CurrentState.large_tables` for `lake.spark_merge_min_rows`: the session starts on the first
    large table (a JVM of its own, some 10 s), then serves every merge of this process."""

    def __init__(self, lake: Lake, min_rows: int, jars_dir: str, master: str = "local[2]") -> None:
        jars = sorted(Path(jars_dir).glob("*.jar"))
        if not jars:
            raise ValueError(
                f"lake.spark_jars_dir {jars_dir!r} holds no jars; `python -m devstack.spark` fetches them"
            )
        self.min_rows = min_rows
        self._lake, self._jars, self._master = lake, jars, master
        self._spark: Any = None
        self._lock = threading.Lock()
        self.merged = 0  # tables merged by Spark in this process

    def merge(self, current: CurrentState, lake_table: str, head: int) -> MergeResult | None:
        with self._lock:
            if self._spark is None:
                # One JVM per process: a session already started (for another lake) is re-pointed.
                self._spark = spark_for_lake(
                    local_spark_session(self._lake, self._jars, master=self._master), self._lake
                )
            result = merge_with_spark(self._spark, current, lake_table, head)
            if result is not None:
                self.merged += 1
            return result
