"""The Spark session resource: dagster-pyspark's ``PySparkResource`` with settings for this project."""

from __future__ import annotations

import sys

import polars as pl
import pyarrow as pa
from dagster_pyspark import PySparkResource

from pinlanding_assets.settings import export_default

# local[N,F]: N threads, F attempts per task (plain local[N] never retries a failed task).
LOCAL_MASTER = "local[2,4]"


def spark_session_resource(master: str = LOCAL_MASTER, extra_conf: dict[str, str] | None = None) -> PySparkResource:
    """Arrow transfer on, UI off, shuffle partitions sized for the master (few locally)."""
    local = master.startswith("local")
    # Python workers must run this interpreter (pyarrow, pandas), not whatever `python3` is on PATH;
    # PySpark's driver reads the environment variable, executors the setting.
    python = export_default("PYSPARK_PYTHON", sys.executable)
    conf = {
        "spark.master": master,
        "spark.app.name": "pinlanding",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.shuffle.partitions": "8" if local else "200",
        "spark.ui.enabled": "false",
        "spark.sql.session.timeZone": "UTC",
        "spark.task.maxFailures": "4",
        "spark.driver.memory": "2g",
        "spark.pyspark.python": python,
    }
    conf.update(extra_conf or {})
    return PySparkResource(spark_config=conf)


def spark_session(master: str = LOCAL_MASTER, extra_conf: dict[str, str] | None = None):
    """A SparkSession with the resource's settings, for benchmarks and tests that run outside Dagster."""
    from pyspark.sql import SparkSession

    builder = SparkSession.builder
    for key, value in spark_session_resource(master, extra_conf).spark_config.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def spark_table(frame: pl.DataFrame) -> pa.Table:
    """Arrow that Spark accepts: plain strings and signed integers (polars emits large strings, u32)."""
    table = frame.to_arrow(compat_level=pl.CompatLevel.oldest())
    fields = []
    for field in table.schema:
        kind = field.type
        if pa.types.is_large_string(kind) or pa.types.is_string_view(kind):
            kind = pa.string()
        elif pa.types.is_unsigned_integer(kind):
            kind = pa.int64()
        elif pa.types.is_large_list(kind):
            kind = pa.list_(pa.string())
        fields.append(pa.field(field.name, kind))
    return table.cast(pa.schema(fields))
