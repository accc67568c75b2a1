"""
### lakehouse_bronze_to_gold

Promotes one **event date** of the Delta lakehouse from bronze to gold and
loads gold into PostgreSQL (`gold` schema), idempotently: every step replaces
exactly that date, so re-running a date (late data, a fix) is always safe.

0. **wait_for_complete_date** (a rescheduling sensor: no worker slot while it
   waits) lets the run go once raw landing's committed progress shows the
   topic read past D+1 00:00 UTC + `BATCH_ALLOWED_LATENESS_MINUTES`; it fails
   with what is missing after `BATCH_COMPLETENESS_TIMEOUT_MINUTES`, and at
   once for a date whose cutoff comes later than that (today's, a future
   one). A run of
   `lakehouse_catch_up` whose date another run processed after it was planned
   is skipped here (every task skipped, nothing replaced).
1. **bronze_to_silver** (Spark) types and de-duplicates the date's bronze
   events (the earliest Kafka record of each event_id wins) and moves rows that
   break a rule to `silver/quarantine` with the reason.
2. **validate_silver** runs the Great Expectations suite; a failed *critical*
   expectation fails the run here, naming the expectation and its counts, and
   nothing downstream runs. Results: `ops.data_quality` and
   `<run dir>/data_quality/` (JSON, Data Docs).
3. **silver_to_gold** (Spark) replaces the date in the four gold tables
   (one model per table, `lakehouse/batch/gold/`).
4. **gold_to_postgres** replaces the date's rows of all four `gold.*` tables
   and records the run in `ops.batch_runs` (bronze rows and stream position
   it saw) in ONE transaction; a value PostgreSQL rejects fails the run at
   once, naming table, column and value.

Spark tasks get their session from the `spark_default` connection: the
stack's Spark Connect server (no task starts a JVM); Delta is written by
delta-spark on the executors with `replaceWhere` on the date. A Spark task
Airflow stops (marked failed, cleared, or past `BATCH_TASK_TIMEOUT_MINUTES`,
default 60, then retried) stops its Spark job too
(`lakehouse/batch/spark_task.py`): nothing of it commits afterwards.
`gold_to_postgres` reads the date's few gold rows with delta-rs.

**Which date.** A run processes the date its data interval starts on: the
scheduled run at 01:00 UTC processes the day before, and so does `airflow
dags test lakehouse_bronze_to_gold 2026-11-21` (-> 2026-11-20). Set the
`event_date` parameter (YYYY-MM-DD) in the trigger form or with
`-c '{"event_date": "2026-11-20"}'` to choose the date; a malformed value
fails the run at once. Dates missed while the stack was down, and dates whose
bronze changed after their run, are run by `lakehouse_catch_up`.

Metric definitions, quarantine rules, backfills: `docs/batch.md`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import CronTriggerTimetable, Param, PokeReturnValue, dag, get_current_context, task

from lakehouse.batch.spark_task import pyspark_task
from lakehouse.settings import get_settings

#: What the DAG's structure takes from the settings when the file is parsed
#: (task timeout, the sensor's intervals); tasks read theirs when they run (_run).
SETTINGS = get_settings()

DEFAULT_ARGS = {
    "owner": "lakehouse",
    "retries": 2,
    "retry_delay": timedelta(seconds=20),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=5),
    # a hung Spark server or cluster stops the task (and its Spark job) instead of holding the run
    "execution_timeout": timedelta(minutes=SETTINGS.batch_task_timeout_minutes),
}


def _spark_config() -> dict:
    """Session settings of every Spark task. Only SQL settings a Spark Connect
    session may change: the JVM (memory, jars, Delta) is the server's
    (`lakehouse.platform.spark_connect`), or the cluster's that `spark_default`
    names. Silver's de-duplication adds its own (`silver.SESSION_CONF`).

    16 shuffle partitions: adaptive execution coalesces them on a small day
    (the 1M-event DAG took the same as with 4), and a 20M-event day's
    de-duplication sorts 16 pieces instead of 4 (its write 130.9-138.5 s
    against 140.9-304.5 s in four alternating rounds; the DAG/floor ratio
    2.14 against 2.24; docs/performance.md, session 19)."""
    from lakehouse.batch import silver

    return {
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.shuffle.partitions": "16",
        **silver.SESSION_CONF,
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
    from lakehouse.batch.load import airflow_connect

    return airflow_connect()


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
        """The provider's @task.pyspark (a Spark session from `spark_default`),
        whose Spark job stops when Airflow stops the task (mark failed, clear)."""
        return pyspark_task(config_kwargs=_spark_config(), **kwargs)

    @task.sensor(
        mode="reschedule",
        poke_interval=SETTINGS.batch_completeness_poke_seconds,
        # backstop only: the poke fails first, with what is missing
        timeout=(SETTINGS.batch_completeness_timeout_minutes + 30) * 60,
        # retries (the DAG's) cover a task that could not start; the timeout
        # below is an AirflowFailException, which is never retried
    )
    def wait_for_complete_date() -> PokeReturnValue:
        """Wait (rescheduling: no worker slot) until raw landing's committed
        progress shows the topic read past D+1 00:00 UTC + the allowed
        lateness; fail after BATCH_COMPLETENESS_TIMEOUT_MINUTES naming what is
        missing. Returns raw landing's position the run relies on. Skips the
        run when it is a catch-up run made unnecessary by another run."""
        from datetime import datetime, timedelta, timezone

        from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

        from lakehouse.batch import completeness, jobs

        settings, event_date, run_id = _run()
        ctx = get_current_context()
        if jobs.superseded_catch_up(run_id, _pg_connect()):
            raise AirflowSkipException(
                f"{event_date} was processed by another run that saw the same bronze rows after this "
                f"catch-up run was planned: nothing to do")
        first = ctx["ti"].get_first_reschedule_date(ctx) or datetime.now(timezone.utc)
        timeout = settings.batch_completeness_timeout_minutes
        too_early = completeness.beyond_the_wait(
            event_date, jobs.cutoff(settings, event_date), first + timedelta(minutes=timeout))
        if too_early:
            raise AirflowFailException(
                f"{too_early} (BATCH_ALLOWED_LATENESS_MINUTES={settings.batch_allowed_lateness_minutes}, "
                f"BATCH_COMPLETENESS_TIMEOUT_MINUTES={timeout}); nothing was published for {event_date}")
        verdict, position = jobs.check_complete(settings, event_date, _pg_connect())
        print(f"completeness of {event_date}: {verdict.reason}", flush=True)
        if verdict.complete:
            return PokeReturnValue(is_done=True, xcom_value=position)
        waited = (datetime.now(timezone.utc) - first).total_seconds() / 60
        if waited >= timeout:
            raise AirflowFailException(
                f"event date {event_date} is not complete after waiting {waited:.0f} min "
                f"(BATCH_COMPLETENESS_TIMEOUT_MINUTES={timeout}): "
                f"{verdict.reason}. Is raw landing running and caught up? (`make status`, "
                f"ops.stream_progress); nothing was published for {event_date}"
            )
        return PokeReturnValue(is_done=False)

    @spark_task()
    def bronze_to_silver(spark=None):
        """Type and de-duplicate the date's bronze events (earliest Kafka record
        per event_id) into `silver/events`; rule-breaking rows go to
        `silver/quarantine` with the reason. Replaces exactly the event date,
        with delta-spark on the executors."""
        from lakehouse.batch import jobs

        settings, event_date, _ = _run()
        return jobs.bronze_to_silver(spark, settings, event_date)

    @spark_task()
    def validate_silver(spark=None):
        """Great Expectations gate on the date's silver rows (+ quarantined ones),
        computed on Spark (GE's Spark datasource): no day reaches the worker.
        Critical expectations fail the run with the expectation's name and
        counts (no retry: the data must change first); warnings are only recorded.
        Summary: `ops.data_quality`; JSON and Data Docs: `<run dir>/data_quality/`."""
        from airflow.sdk.exceptions import AirflowFailException

        from lakehouse.batch import jobs
        from lakehouse.batch.quality import QualityGateError

        settings, event_date, run_id = _run()
        try:
            return jobs.validate_silver(spark, settings, event_date, run_id, _pg_connect())
        except QualityGateError as exc:
            raise AirflowFailException(str(exc)) from None

    @spark_task()
    def silver_to_gold(spark=None):
        """Replace the date in the four gold Delta tables (`gold/<table>`, one
        model per table in `lakehouse/batch/gold/`) from the date's silver:
        daily_active_users, conversion_rate_daily,
        events_per_source_daily, purchases_per_page_daily."""
        from lakehouse.batch import jobs

        settings, event_date, _ = _run()
        return jobs.silver_to_gold(spark, settings, event_date)

    @task
    def gold_to_postgres(silver_stats: dict, position: dict | None):
        """Replace the event date's rows of all four `gold.*` tables and record
        the run in `ops.batch_runs`, in ONE transaction. The gold rows (a
        handful) are read with delta-rs: no Spark session. A value PostgreSQL
        rejects fails the run at once (table, column, value; no retry); an
        outage rolls back and is retried."""
        from airflow.sdk.exceptions import AirflowFailException

        from lakehouse.batch import jobs
        from lakehouse.batch.load import GoldValueError

        settings, event_date, run_id = _run()
        try:
            return jobs.gold_to_postgres(settings, event_date, run_id, _pg_connect(), silver_stats, position)
        except GoldValueError as exc:
            raise AirflowFailException(str(exc)) from None

    position = wait_for_complete_date()
    silver = bronze_to_silver()
    gate = validate_silver()
    gold = silver_to_gold()
    load = gold_to_postgres(silver, position)

    position >> silver >> gate >> gold >> load


lakehouse_bronze_to_gold()
