"""
### lakehouse_catch_up

No missed dates, no stale dates. Every `BATCH_CATCH_UP_MINUTES` (and at once
when the scheduler comes back after downtime: catchup is off, so one run
stands for every tick it missed) it compares bronze with `ops.batch_runs`:

* a date with bronze rows and **no successful run** (the stack was down at
  01:00, or for days) is run;
* a date whose bronze row count differs from what its **last successful run
  saw** (late events landed afterwards) is run again.

Only dates whose cutoff (D+1 00:00 UTC + `BATCH_ALLOWED_LATENESS_MINUTES`)
has passed are considered. The runs of `lakehouse_bronze_to_gold` are
triggered oldest first, one after the other (each waits, deferred, for the
previous to finish). Nothing is planned while a run of that DAG is queued or
running. Each (date, bronze row count) gets one run id
(`catch_up__<date>__<rows>`): a run that failed for that state of bronze
(e.g. the quality gate) is not started again until bronze changes; re-run it
by hand after a fix. A planned run whose date a user's run processed in the
meantime (same bronze row count) skips its work. Details: `docs/batch.md`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import dag, get_current_context, task

from lakehouse.settings import get_settings

TARGET_DAG = "lakehouse_bronze_to_gold"


@dag(
    dag_id="lakehouse_catch_up",
    description="Run lakehouse_bronze_to_gold for every missed or stale event date, oldest first",
    schedule=timedelta(minutes=get_settings().batch_catch_up_minutes),
    start_date=datetime(2024, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"owner": "lakehouse", "retries": 1, "retry_delay": timedelta(minutes=1)},
    doc_md=__doc__,
    tags=["lakehouse", "batch"],
)
def lakehouse_catch_up():
    @task
    def plan() -> list[dict]:
        """The dates to run, oldest first, as trigger arguments."""
        from contextlib import closing
        from datetime import timezone

        from lakehouse import catalog
        from lakehouse.batch import catch_up, load

        ctx = get_current_context()
        active = ctx["ti"].get_dr_count(dag_id=TARGET_DAG, states=["queued", "running"])
        if active:
            print(f"{active} run(s) of {TARGET_DAG} queued or running: planning next time", flush=True)
            return []
        settings = get_settings()
        with closing(load.airflow_connect()()) as conn:
            done = catch_up.last_successful_runs(conn)
        bronze = catch_up.bronze_rows_per_date(catalog.BRONZE_EVENTS.path(settings))
        todo = catch_up.dates_to_run(bronze, done, datetime.now(timezone.utc),
                                     timedelta(minutes=settings.batch_allowed_lateness_minutes))
        for d, why in todo:
            print(f"{d}: {why} ({bronze[d]} bronze rows; last successful run saw {done.get(d)})", flush=True)
        return [{"trigger_run_id": catch_up.run_id(d, bronze[d]), "conf": {"event_date": d.isoformat()}}
                for d, _ in todo]

    TriggerDagRunOperator.partial(
        task_id="run_date",
        trigger_dag_id=TARGET_DAG,
        wait_for_completion=True,  # one date after the other, in date order
        deferrable=True,  # the wait is the triggerer's, not a worker slot
        poke_interval=10,
        skip_when_already_exists=True,
        allowed_states=["success"],
        failed_states=["failed"],
        max_active_tis_per_dagrun=1,
        retries=0,
    ).expand_kwargs(plan())


lakehouse_catch_up()
