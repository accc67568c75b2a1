"""Batch: one day of events written straight into bronze, then the DAG as
users run it: triggered through Airflow's REST API on the running stack
(what the UI's Trigger button does), timed from the trigger to the run's
success, against the floor of a plain Spark read and write of the same data
on the same Spark (the stack's Spark Connect server, bench.floor)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

from lakehouse import catalog
from lakehouse.kafka_clients import client_config
from lakehouse.platform import airflow, spark_connect
from lakehouse.settings import Settings

DAG_ID = "lakehouse_bronze_to_gold"


#: Days above this many events are made by copying a generated day of this
#: size on the stack's Spark (bench.big_day), not generated in Python.
GENERATED_DAY_MAX = 1_000_000


def write_day(settings: Settings, day: date, events: int, log, log_file: Path | None = None) -> dict:
    """One day of `events` events into bronze/events (not timed as part of the
    DAG): generated (lakehouse.testdata) up to GENERATED_DAY_MAX, and for a
    bigger day that many generated then copied on Spark (bench.big_day)."""
    from lakehouse import testdata

    copies = max(1, round(events / GENERATED_DAY_MAX))
    base = events // copies
    log(f"batch: writing {events:,} events for {day} into bronze"
        + (f" ({base:,} generated, copied {copies} times on Spark)" if copies > 1 else ""))
    t0 = time.perf_counter()
    result = testdata.write_bronze_day(settings, day, base)
    out = {"seconds": time.perf_counter() - t0, "bronze_rows": result.bronze_rows, "duplicates": result.duplicates}
    if copies > 1:
        with open(log_file or os.devnull, "a") as log_f:
            res = subprocess.run(
                [sys.executable, "-m", "bench.big_day", "--remote", spark_connect.url(settings),
                 "--bronze", catalog.BRONZE_EVENTS.path(settings), "--date", day.isoformat(),
                 "--copies", str(copies)],
                stdout=subprocess.PIPE, stderr=log_f, text=True,
                env={**os.environ, "PYSPARK_PYTHON": sys.executable},
            )
        if res.returncode != 0:
            raise RuntimeError(f"copying the day on Spark failed (exit {res.returncode}); see {log_file}")
        detail = json.loads(res.stdout.strip().splitlines()[-1])
        out.update(seconds=time.perf_counter() - t0, bronze_rows=detail["rows"],
                   duplicates=result.duplicates * copies, copies=copies)
    log(f"batch: {out['bronze_rows']:,} bronze rows for {day} in {out['seconds']:.0f}s")
    return out


class Rest:
    """Airflow's REST API with the stack's admin login (token, then JSON)."""

    def __init__(self, settings: Settings):
        import requests

        self.base = f"{airflow.base_url(settings)}/api/v2"
        resp = requests.post(f"{airflow.base_url(settings)}/auth/token", timeout=30,
                             json={"username": settings.airflow_admin_user,
                                   "password": settings.airflow_admin_password.get_secret_value()})
        resp.raise_for_status()
        self.headers = {"Authorization": f"Bearer {resp.json()['access_token']}"}

    def call(self, method: str, path: str, **kw):
        import requests

        resp = requests.request(method, self.base + path, headers=self.headers, timeout=30, **kw)
        resp.raise_for_status()
        return resp.json()


def set_paused(settings: Settings, dag_id: str, paused: bool, timeout: float = 180) -> None:
    """Pause (or unpause) a DAG, e.g. lakehouse_catch_up while the benchmark
    writes a day into bronze that it would otherwise run by itself. Waits
    (up to `timeout`) for a DAG the dag-processor has not parsed yet (404)."""
    import requests

    from lakehouse.polling import wait_for

    api = Rest(settings)

    def patched() -> bool:
        try:
            api.call("PATCH", f"/dags/{dag_id}", json={"is_paused": paused})
            return True
        except requests.HTTPError as exc:
            if exc.response is not None and exc.response.status_code == 404:
                return False
            raise

    wait_for(patched, timeout, f"Airflow to know the DAG {dag_id}", every=2.0)


def wait_idle(api: Rest, timeout: float = 1800) -> None:
    """Until no run of the DAG is queued or running (a scheduled one may be)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = api.call("GET", f"/dags/{DAG_ID}/dagRuns", params={"state": ["queued", "running"], "limit": 10})
        if not runs["dag_runs"]:
            return
        time.sleep(2)
    raise RuntimeError(f"{DAG_ID} still has active runs after {timeout:.0f}s")


def ensure_stream_progress(settings: Settings, log, timeout: float = 300) -> None:
    """The DAG's sensor needs raw landing's committed progress on the topic:
    on a stack that never ingested anything (`--only batch`), send a few
    events and wait for raw landing to report them."""
    from datetime import datetime, timezone

    import psycopg2
    from kafka import KafkaProducer

    from lakehouse import testdata

    def reported() -> bool:
        conn = psycopg2.connect(settings.pg_dsn("reader"))
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM ops.stream_progress WHERE query_name = 'raw-landing' "
                            "AND end_offsets ? %s LIMIT 1", (settings.kafka_topic,))
                return cur.fetchone() is not None
        finally:
            conn.close()

    if reported():
        return
    log("batch: raw landing has not reported yet; sending 10 events so the completeness sensor has a position")
    messages, _, _ = testdata.day_messages(datetime.now(timezone.utc).date(), 10, seed=1)
    producer = KafkaProducer(**client_config(settings))
    for m in messages:
        producer.send(settings.kafka_topic, key=m.key, value=m.value)
    producer.flush()
    producer.close()
    deadline = time.monotonic() + timeout
    while not reported():
        if time.monotonic() > deadline:
            raise RuntimeError("raw landing reported no progress on the topic; is the streams program running?")
        time.sleep(2)


def rest_once(settings: Settings, day: date, poll_s: float = 0.5, timeout: float = 3600) -> dict:
    """Trigger a run for `day` through the REST API; wall seconds from the
    trigger request to the run's success, plus each task's seconds."""
    api = Rest(settings)
    wait_idle(api)
    t0 = time.perf_counter()
    run = api.call("POST", f"/dags/{DAG_ID}/dagRuns",
                   json={"logical_date": None, "conf": {"event_date": day.isoformat()}})
    run_id = run["dag_run_id"]
    while True:
        state = api.call("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}")["state"]
        if state in ("success", "failed"):
            break
        if time.perf_counter() - t0 > timeout:
            raise RuntimeError(f"run {run_id} not finished after {timeout:.0f}s")
        time.sleep(poll_s)
    wall = time.perf_counter() - t0
    tasks = task_runs(settings, run_id)
    if state != "success":
        raise RuntimeError(f"the REST-triggered run {run_id} failed: {tasks}; see the task logs in the Airflow UI")
    bad = {t: st for t, (st, _) in tasks.items() if st != "success"}
    if len(tasks) < len(EXPECTED_TASKS) or bad:
        raise RuntimeError(f"the DAG run did not run every task to success: {bad or tasks}")
    gold = gold_rows(settings, day)
    if not gold:
        raise RuntimeError(f"the DAG run left no gold.daily_active_users row for {day}")
    return {"wall_s": wall, "run_id": run_id, "tasks": {t: d for t, (_, d) in tasks.items()}, "dau": gold}


def floor_once(settings: Settings, day: date, out: Path, log_file: Path) -> dict:
    t0 = time.perf_counter()
    with open(log_file, "a") as log_f:
        res = subprocess.run(
            [sys.executable, "-m", "bench.floor", "--remote", spark_connect.url(settings),
             "--bronze", catalog.BRONZE_EVENTS.path(settings), "--date", day.isoformat(), "--out", str(out)],
            stdout=subprocess.PIPE, stderr=log_f, text=True, env={**os.environ, "PYSPARK_PYTHON": sys.executable},
        )
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise RuntimeError(f"floor job failed (exit {res.returncode}); see {log_file}")
    detail = json.loads(res.stdout.strip().splitlines()[-1])
    return {"wall_s": wall, **detail}


#: The DAG's tasks; a run is only timed as a success when all of them succeeded.
EXPECTED_TASKS = (
    "wait_for_complete_date", "bronze_to_silver", "validate_silver", "silver_to_gold", "gold_to_postgres",
)


def task_runs(settings: Settings, run_id: str) -> dict[str, tuple[str, float | None]]:
    """task_id -> (state, seconds) of one run of the DAG, from Airflow's metadata."""
    import psycopg2

    conn = psycopg2.connect(settings.pg_dsn("airflow"))
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT ti.task_id, ti.state, EXTRACT(EPOCH FROM ti.end_date - ti.start_date) FROM task_instance ti "
                "WHERE ti.dag_id = %s AND ti.run_id = %s",
                (DAG_ID, run_id),
            )
            return {t: (str(st), None if s is None else float(s)) for t, st, s in cur.fetchall()}
    finally:
        conn.close()


def gold_rows(settings: Settings, day: date) -> int | None:
    """The day's DAU in PostgreSQL gold (None when absent): proof the run did the work."""
    from bench.stack_ctl import query

    rows = query(settings, "SELECT dau_count FROM gold.daily_active_users WHERE event_date = %s", (day,))
    return rows[0][0] if rows else None
