"""
### lakehouse_maintenance

Daily upkeep of what the streams and the batch DAG write:

* **compact** silver's small files of *closed* date partitions (older than
  `DELTA_COMPACT_AFTER_DAYS`, default 2: no late event lands there any more),
  so readers open few large files instead of many small ones;
* **vacuum** bronze and silver files unreferenced for longer than
  `DELTA_VACUUM_RETENTION_HOURS` (default and minimum 168 h = 7 days: time
  travel and slow readers keep working);
* **prune** the streams' progress history in `ops.stream_progress` (one row
  per micro-batch, ~200,000 a day while producing) to
  `OPS_PROGRESS_RETENTION_DAYS` (default 7); each stream's latest row stays.
* **prune** the realtime tables' one-minute windows older than
  `REALTIME_RETENTION_DAYS` whole UTC days (default 30): the speed layer keeps
  recent minutes, gold keeps every day;
* **prune** Airflow's own log files (a file per task try, the DAG processor's
  parsing logs) older than `AIRFLOW_LOG_RETENTION_DAYS` (default 30), as
  Airflow's log groomer does. Its metadata database is Airflow's to clean
  (`airflow db clean`, docs/operations.md): tasks may not reach it.

Delta's own `OPTIMIZE ... WHERE` and `VACUUM` (the retention is the tables'
`delta.deletedFileRetentionDuration`), through Spark SQL on the
`spark_default` session (the stack's Spark Connect server). Every Delta table
has one writing application: this Spark writes silver; bronze is written,
and compacted, by raw landing, so `maintain_bronze` only VACUUMs it, without
committing to its log. Gold tables are tiny (one small file per date) and are
left alone. Details: `docs/batch.md`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import CronTriggerTimetable, dag, get_current_context, task

from lakehouse.batch.spark_task import pyspark_task
from lakehouse.settings import get_settings


@dag(
    dag_id="lakehouse_maintenance",
    description="Compact silver's closed partitions, vacuum bronze and silver; prune stream progress, realtime, Airflow logs",
    schedule=CronTriggerTimetable("30 3 * * *", timezone="UTC"),
    start_date=datetime(2024, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"owner": "lakehouse", "retries": 2, "retry_delay": timedelta(minutes=1),
                  "retry_exponential_backoff": True,
                  "execution_timeout": timedelta(minutes=get_settings().batch_task_timeout_minutes)},
    doc_md=__doc__,
    tags=["lakehouse", "maintenance"],
)
def lakehouse_maintenance():
    def maintain_layer(layer: str):
        @pyspark_task(task_id=f"maintain_{layer}")  # @task.pyspark on spark_default, stopped with its task
        def maintain(spark=None):
            """OPTIMIZE closed partitions (silver), then VACUUM, for every table of the layer."""
            from lakehouse.batch.maintenance import maintain as run

            today = get_current_context()["dag_run"].run_after.date()
            return run(spark, get_settings(), layer, today)

        return maintain()

    @task
    def prune_stream_progress() -> int:
        """Delete ops.stream_progress rows older than the retention (each stream's latest stays)."""
        from lakehouse.batch import load, maintenance

        return maintenance.prune_stream_progress(load.airflow_connect(), get_settings().ops_progress_retention_days)

    @task
    def prune_realtime() -> dict[str, int]:
        """Delete realtime windows that start before the UTC day REALTIME_RETENTION_DAYS ago."""
        from lakehouse.batch import load, maintenance

        today = get_current_context()["dag_run"].run_after.date()
        kept_from = maintenance.realtime_kept_from(today, get_settings().realtime_retention_days)
        return maintenance.prune_realtime(load.airflow_connect(), kept_from)

    @task
    def prune_airflow_logs() -> int:
        """Delete Airflow's log files last written more than AIRFLOW_LOG_RETENTION_DAYS ago
        (on the machine this task runs on: a cluster's workers each keep their own)."""
        from pathlib import Path

        from airflow.sdk.configuration import conf

        from lakehouse.batch import maintenance

        before = get_current_context()["dag_run"].run_after - timedelta(days=get_settings().airflow_log_retention_days)
        return maintenance.prune_logs(Path(conf.get("logging", "base_log_folder")), before)

    maintain_layer("bronze") >> maintain_layer("silver")
    prune_stream_progress()
    prune_realtime()
    prune_airflow_logs()


lakehouse_maintenance()
