"""
### lakehouse_bronze_to_gold

Promotes one **event date** of the Delta lakehouse from bronze to gold and
loads gold into PostgreSQL (`gold` schema), idempotently: every step replaces
exactly that date, so re-running a date (late data, a fix) is always safe.

1. **bronze_to_silver** (Spark) types and de-duplicates the date's bronze
   events (the earliest Kafka record of each event_id wins) and moves rows that
   break a rule to `silver/quarantine` with the reason.
2. **validate_silver** runs the Great Expectations suite; a failed *critical*
   expectation fails the run here, naming the expectation and its counts, and
   nothing downstream runs. Results: `ops.data_quality` and
   `<run dir>/data_quality/` (JSON, Data Docs).
3. **silver_to_gold_*** (Spark, in parallel) compute the four gold tables.
4. **gold_to_postgres** replaces the date's rows of each `gold.*` table in one
   transaction per table and records the run in `ops.batch_runs`.

**Which date.** A run processes the date its data interval starts on: the
scheduled run at 01:00 UTC processes the day before (the hour lets late
events land), and so does `airflow dags test lakehouse_bronze_to_gold
2026-11-21` (-> 2026-11-20). Set the `event_date` parameter (YYYY-MM-DD) in
the trigger form or with `-c '{"event_date": "2026-11-20"}'` to choose the
date; a malformed value fails the run at once.

Metric definitions, quarantine rules, backfills: `docs/batch.md`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import CronTriggerTimetable, Param, dag, get_current_context, task

from lakehouse.settings import get_settings
from lakehouse.spark import driver_java_options

SPARK_CONN_ID = "spark_default"
POSTGRES_CONN_ID = "lakehouse_postgres"

DEFAULT_ARGS = {
    "owner": "lakehouse",
    "retries": 2,
    "retry_delay": timedelta(seconds=20),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=5),
}


def _spark_config() -> dict:
    """Spark session settings of every Spark task (the master comes from the
    `spark_default` connection: local[2] by default, or a cluster / Spark
    Connect URL). Each task's session is a short job, usually in a fresh JVM:
    SPARK_JAVA_OPTIONS trims what that JVM spends on JIT and GC."""
    settings = get_settings()
    return {
        "spark.driver.memory": settings.batch_spark_driver_memory,
        "spark.driver.extraJavaOptions": driver_java_options(settings),
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.shuffle.partitions": "4",
        "spark.ui.enabled": "false",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
    }


def _run():
    """(settings, event date, run id) of the running task, or a fail-fast error."""
    from airflow.sdk.exceptions import AirflowFailException

    from lakehouse.batch.dates import EventDateError, resolve_event_date

    ctx = get_current_context()
    try:
        event_date = resolve_event_date(
            ctx["params"].get("event_date"), ctx.get("data_interval_start"), ctx["dag_run"].run_after
        )
    except EventDateError as exc:
        raise AirflowFailException(str(exc)) from None
    return get_settings(), event_date, ctx["run_id"]


def _pg_connect():
    """A psycopg2 connection factory for the `lakehouse_postgres` connection (writer role)."""
    import psycopg2
    from airflow.sdk import Connection

    c = Connection.get(POSTGRES_CONN_ID)
    return lambda: psycopg2.connect(
        host=c.host, port=c.port, user=c.login, password=c.password, dbname=c.schema, connect_timeout=10
    )


@dag(
    dag_id="lakehouse_bronze_to_gold",
    description="Bronze -> silver (GE gate) -> gold -> PostgreSQL, one event date per run",
    schedule=CronTriggerTimetable("0 1 * * *", timezone="UTC", interval=timedelta(days=1)),
    start_date=datetime(2024, 1, 1),  # before any date one may backfill: tasks never run for dates before it
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    doc_md=__doc__,
    tags=["lakehouse", "batch"],
    params={
        "event_date": Param(
            None,
            type=["null", "string"],
            format="date",
            title="Event date",
            description="YYYY-MM-DD to process; empty = the date the run's data interval starts on.",
        )
    },
)
def lakehouse_bronze_to_gold():
    def spark_task(**kwargs):
        """The provider's @task.pyspark: a Spark session from `spark_default`."""
        return task.pyspark(conn_id=SPARK_CONN_ID, config_kwargs=_spark_config(), **kwargs)

    @spark_task()
    def bronze_to_silver(spark=None):
        """Type and de-duplicate the date's bronze events (earliest Kafka record
        per event_id) into `silver/events`; rule-breaking rows go to
        `silver/quarantine` with the reason. Replaces exactly the event date."""
        from lakehouse.batch import jobs

        settings, event_date, _ = _run()
        return jobs.bronze_to_silver(spark, settings, event_date)

    @task
    def validate_silver():
        """Great Expectations gate on the date's silver rows (+ quarantined ones).
        Critical expectations fail the run with the expectation's name and counts
        (no retry: the data must change first); warnings are only recorded.
        Summary: `ops.data_quality`; JSON and Data Docs: `<run dir>/data_quality/`."""
        from airflow.sdk.exceptions import AirflowFailException

        from lakehouse.batch import jobs
        from lakehouse.batch.quality import QualityGateError

        settings, event_date, run_id = _run()
        try:
            return jobs.validate_silver(settings, event_date, run_id, _pg_connect())
        except QualityGateError as exc:
            raise AirflowFailException(str(exc)) from None

    def gold_task(task_id: str, table: str, doc: str):
        @spark_task(task_id=task_id, doc_md=doc)
        def silver_to_gold(spark=None):
            from lakehouse.batch import jobs

            settings, event_date, _ = _run()
            return jobs.silver_to_gold(spark, settings, table, event_date)

        return silver_to_gold()

    @task
    def gold_to_postgres():
        """Replace the event date's rows of every `gold.*` table in PostgreSQL,
        one transaction per table (DELETE the date, INSERT the new rows), and
        record the run in `ops.batch_runs`. An outage rolls back; retries follow."""
        from lakehouse.batch import jobs

        settings, event_date, run_id = _run()
        return jobs.gold_to_postgres(settings, event_date, run_id, _pg_connect())

    silver = bronze_to_silver()
    gate = validate_silver()
    gold = [
        gold_task("silver_to_gold_dau", "daily_active_users",
                  "Gold `daily_active_users`: distinct users with at least one silver event that day."),
        gold_task("silver_to_gold_conversion", "conversion_rate_daily",
                  "Gold `conversion_rate_daily`: distinct purchasing users / DAU, purchase events, DAU."),
        gold_task("silver_to_gold_events_source", "events_per_source_daily",
                  "Gold `events_per_source_daily`: silver events per source."),
        gold_task("silver_to_gold_purchases_page", "purchases_per_page_daily",
                  "Gold `purchases_per_page_daily`: purchase events per page."),
    ]
    load = gold_to_postgres()

    silver >> gate >> gold >> load


lakehouse_bronze_to_gold()
