"""Batch: one day of events written straight into bronze, then the whole DAG
end to end with `airflow dags test` (the stack's Airflow environment), against
the floor of a plain Spark read and write of the same data (bench.floor)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

from lakehouse.platform import airflow
from lakehouse.settings import Settings

DAG_ID = "lakehouse_bronze_to_gold"


def write_day(settings: Settings, day: date, events: int, log) -> dict:
    """One day of `events` generated events into bronze/events (not timed as part of the DAG)."""
    from lakehouse import testdata

    log(f"batch: writing {events:,} events for {day} straight into bronze")
    t0 = time.perf_counter()
    result = testdata.write_bronze_day(settings, day, events)
    return {"seconds": time.perf_counter() - t0, "bronze_rows": getattr(result, "bronze_rows", None),
            "duplicates": getattr(result, "duplicates", None)}


def floor_once(settings: Settings, day: date, out: Path, log_file: Path) -> dict:
    t0 = time.perf_counter()
    with open(log_file, "a") as log_f:
        res = subprocess.run(
            [sys.executable, "-m", "bench.floor", "--run-dir", str(settings.run_dir), "--date", day.isoformat(),
             "--out", str(out)],
            stdout=subprocess.PIPE, stderr=log_f, text=True, env={**os.environ, "PYSPARK_PYTHON": sys.executable},
        )
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise RuntimeError(f"floor job failed (exit {res.returncode}); see {log_file}")
    detail = json.loads(res.stdout.strip().splitlines()[-1])
    return {"wall_s": wall, **detail}


def dag_once(settings: Settings, day: date, log_file: Path) -> dict:
    env = {**os.environ, **airflow.environment(settings)}
    cmd = [airflow.airflow_bin(), "dags", "test", DAG_ID, day.isoformat(),
           "--conf", json.dumps({"event_date": day.isoformat()})]
    t0 = time.perf_counter()
    with open(log_file, "a") as log_f:
        log_f.write(f"\n===== {' '.join(cmd)}\n")
        log_f.flush()
        res = subprocess.run(cmd, env=env, stdout=log_f, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise RuntimeError(f"`airflow dags test {DAG_ID} {day}` failed (exit {res.returncode}); see {log_file}")
    tasks = task_runs(settings)
    bad = {t: st for t, (st, _) in tasks.items() if st != "success"}
    if len(tasks) < len(EXPECTED_TASKS) or bad:
        raise RuntimeError(f"the DAG run did not run every task to success: {bad or tasks}; see {log_file}")
    gold = gold_rows(settings, day)
    if not gold:
        raise RuntimeError(f"the DAG run left no gold.daily_active_users row for {day}; see {log_file}")
    return {"wall_s": wall, "tasks": {t: d for t, (_, d) in tasks.items()}, "dau": gold}


#: The DAG's tasks (issue 4); a run is only timed as a success when all of them succeeded.
EXPECTED_TASKS = (
    "bronze_to_silver", "validate_silver", "silver_to_gold_dau", "silver_to_gold_conversion",
    "silver_to_gold_events_source", "silver_to_gold_purchases_page", "gold_to_postgres",
)


def task_runs(settings: Settings) -> dict[str, tuple[str, float | None]]:
    """task_id -> (state, seconds) of the latest run of the DAG, from Airflow's metadata."""
    import psycopg2

    conn = psycopg2.connect(settings.pg_dsn("airflow"))
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT ti.task_id, ti.state, EXTRACT(EPOCH FROM ti.end_date - ti.start_date) FROM task_instance ti "
                "WHERE ti.dag_id = %s AND ti.run_id = (SELECT run_id FROM dag_run WHERE dag_id = %s "
                "ORDER BY id DESC LIMIT 1)",
                (DAG_ID, DAG_ID),
            )
            return {t: (str(st), None if s is None else float(s)) for t, st, s in cur.fetchall()}
    finally:
        conn.close()


def gold_rows(settings: Settings, day: date) -> int | None:
    """The day's DAU in PostgreSQL gold (None when absent): proof the run did the work."""
    from bench.stack_ctl import query

    rows = query(settings, "SELECT dau_count FROM gold.daily_active_users WHERE event_date = %s", (day,))
    return rows[0][0] if rows else None
