"""The Spark session resource: dagster-pyspark's ``PySparkResource`` with settings for this project."""

from __future__ import annotations

from dagster_pyspark import PySparkResource

LOCAL_MASTER = "local[2]"


def spark_session_resource(master: str = LOCAL_MASTER, extra_conf: dict[str, str] | None = None) -> PySparkResource:
    """Arrow transfer on, UI off, shuffle partitions sized for the master (few locally)."""
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
    }
    conf.update(extra_conf or {})
    return PySparkResource(spark_config=conf)
