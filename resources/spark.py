"""The Spark session resource: dagster-pyspark's ``PySparkResource`` with settings for this project."""

from __future__ import annotations

import sys

from dagster_pyspark import PySparkResource

# local[N,F]: N threads, F attempts per task (plain local[N] never retries a failed task).
LOCAL_MASTER = "local[2,4]"


class ProjectSparkResource(PySparkResource):
    """dagster-pyspark's resource whose Python workers run the configured interpreter. PySpark takes
    the driver's worker interpreter from ``PYSPARK_PYTHON`` in its own process environment (else
    ``python3`` on PATH, without this project's packages); it is set on the session's context instead."""

    def setup_for_execution(self, context) -> None:
        super().setup_for_execution(context)
        use_interpreter(self.spark_session, self.spark_config["spark.pyspark.python"])


def use_interpreter(session, python: str) -> None:
    session.sparkContext.pythonExec = python


def spark_session_resource(master: str = LOCAL_MASTER, extra_conf: dict[str, str] | None = None,
                           python: str = sys.executable) -> ProjectSparkResource:
    """Arrow transfer on, UI off, shuffle partitions sized for the master (few locally); Python
    workers run ``python`` (with pyarrow and pandas) on the driver and on executors."""
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
    return ProjectSparkResource(spark_config=conf)


def spark_session(master: str = LOCAL_MASTER, extra_conf: dict[str, str] | None = None):
    """A SparkSession with the resource's settings, for benchmarks and tests that run outside Dagster."""
    from pyspark.sql import SparkSession

    config = spark_session_resource(master, extra_conf).spark_config
    builder = SparkSession.builder
    for key, value in config.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    use_interpreter(session, config["spark.pyspark.python"])
    return session
