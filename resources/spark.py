"""The Spark session resource: dagster-pyspark's ``PySparkResource`` with settings for this project."""

from __future__ import annotations

import sys

from dagster_pyspark import PySparkResource

# local[N,F]: N threads, F attempts per task (plain local[N] never retries a failed task).
LOCAL_MASTER = "local[2,4]"


def spark_session_resource(master: str = LOCAL_MASTER, extra_conf: dict[str, str] | None = None,
                           python: str = sys.executable) -> PySparkResource:
    """Arrow transfer on, UI off, shuffle partitions sized for the master (few locally).

    Python workers must run ``python`` (with pyarrow and pandas), not whatever ``python3`` is on PATH:
    executors read the setting below; PySpark's driver reads ``PYSPARK_PYTHON`` from its process
    environment, which the entry points set (``settings.export_library_environment``)."""
    local = master.startswith("local")
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
        "spark.executorEnv.PYSPARK_PYTHON": python,
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
