"""The DAG as users run it, on a whole stack of its own (PostgreSQL, Kafka,
raw landing and fast aggregation, which serve Spark Connect to the DAG too,
Airflow's four components):
days of the producer's events go through Kafka and raw landing into bronze,
and runs are triggered through the REST API, from the Airflow UI in headless
Chromium, or by `lakehouse_catch_up`.

* a REST-triggered run equals gold computed independently from the events,
  and a re-run from the UI's Trigger button leaves PostgreSQL identical;
* the REST API refuses a malformed event date;
* while raw landing is stopped the run waits in its completeness sensor (a
  rescheduling sensor: no worker slot), and completes once it resumes;
* a date whose events landed while the scheduler was down is run after the
  scheduler restarts, without anyone triggering it.

Events are sent with their event time as Kafka timestamp, so a day's records
all lie before its cutoff: the sensor waits until raw landing has read up to
the broker's high watermark of every partition.
"""

from __future__ import annotations

import time
from datetime import date, datetime, timedelta, timezone

import psycopg2
import pytest

from lakehouse import testdata
from lakehouse.platform import stack
from lakehouse.polling import wait_for
from tests.airflow_api import Api, wait_for_dag
from tests.batch_helpers import assert_gold_matches, gold_checksum
from tests.browser import launch_chromium
from tests.conftest import make_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DAG_ID = "lakehouse_bronze_to_gold"
TODAY = datetime.now(timezone.utc).date()
# Past dates whose cutoff (D+1 01:00) has passed, inside the broker's 7-day retention,
# not yesterday (the scheduled run's date), sent in date order: Kafka timestamps grow
# with offsets as they do in production (a record with an older timestamp appended
# after newer ones counts as late data, see lakehouse/batch/completeness.py).
D_REST, D_STOPPED, D_MISSED = (TODAY - timedelta(days=n) for n in (4, 3, 2))
N = 3000


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    settings = make_settings(tmp_path_factory.mktemp("batch_stack") / "run", producer_enabled=False,
                             batch_catch_up_minutes=1, spark_connect_in_streams=True)
    try:
        stack.up(settings, groups=("core", "airflow", "pipeline"))
        api = patient(lambda: Api(settings))
        dag = patient(lambda: wait_for_dag(api, DAG_ID))
        assert dag["is_paused"] is False  # DAGS_ARE_PAUSED_AT_CREATION=False (docs/batch.md)
        # The scheduler's own run for yesterday stays: it waits in its sensor
        # until raw landing has reported, then processes an empty day. Runs
        # triggered here (and by lakehouse_catch_up) queue behind it.
        yield settings, api
    finally:
        stack.clean(settings)


def send_day(settings, d: date, n: int, seed: int) -> testdata.ExpectedDay:
    """The producer's messages for one simulated day, sent to Kafka with their
    event time as Kafka timestamp; the gold values they should give."""
    from kafka import KafkaProducer

    messages, _, _ = testdata.day_messages(d, n, seed)
    expected = testdata.ExpectedDay(d)
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap_list, linger_ms=50)
    for m in messages:
        expected.add(m.event)
        ts = datetime.fromisoformat(m.event["timestamp"].replace("Z", "+00:00"))
        producer.send(settings.kafka_topic, key=m.key, value=m.value, timestamp_ms=int(ts.timestamp() * 1000))
    producer.flush()
    producer.close()
    return expected


def patient(call, attempts: int = 10):
    """`call()`, again after a request timeout: on this shared 2-core machine
    the API server can take longer than one request's 30 s."""
    import requests

    for attempt in range(attempts):
        try:
            return call()
        except requests.RequestException:
            if attempt == attempts - 1:
                raise
            time.sleep(5)


def get(api: Api, path: str, **kw) -> dict:
    return patient(lambda: api.get(path, **kw).json())


def wait_for_run(api: Api, run_id: str, timeout: float = 2400) -> dict:
    def finished():
        run = get(api, f"/dags/{DAG_ID}/dagRuns/{run_id}")
        return run if run.get("state") in ("success", "failed") else None

    return wait_for(finished, timeout, f"run {run_id} to finish", every=5)


def trigger(api: Api, d: date) -> str:
    resp = patient(lambda: api.post(f"/dags/{DAG_ID}/dagRuns",
                                    {"logical_date": None, "conf": {"event_date": d.isoformat()}}))
    assert resp.status_code == 200, resp.text
    return resp.json()["dag_run_id"]


def trigger_from_the_ui(settings, api: Api, d: date, screenshots) -> dict:
    """Sign in to the Airflow UI in headless Chromium, press the DAG's Trigger
    button, enter `d` as the event date; the finished run, with the run's page
    screenshot in `screenshots`."""
    from playwright.sync_api import expect, sync_playwright

    from lakehouse.batch.catch_up import RUN_ID_PREFIX
    from lakehouse.platform import airflow

    def manual_runs() -> set[str]:
        runs = get(api, f"/dags/{DAG_ID}/dagRuns", params={"limit": 100})["dag_runs"]
        # lakehouse_catch_up's runs are manual too; they are told apart by their id
        return {r["dag_run_id"] for r in runs
                if r["run_type"] == "manual" and not r["dag_run_id"].startswith(RUN_ID_PREFIX)}

    before = manual_runs()
    base = airflow.base_url(settings)
    with sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(120_000)
        page.goto(f"{base}/")
        page.get_by_label("Username").fill(settings.airflow_admin_user)
        page.get_by_label("Password").fill(settings.airflow_admin_password.get_secret_value())
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(lambda url: "/auth/login" not in url)
        page.goto(f"{base}/dags/{DAG_ID}")
        page.get_by_role("button", name="Trigger").first.click()
        dialog = page.get_by_role("dialog")
        dialog.locator("#element_event_date").fill(d.isoformat())  # the param's date input
        dialog.get_by_role("button", name="Trigger").click()
        new = wait_for(lambda: manual_runs() - before, 120, "the Trigger button to create a run", every=1)
        assert len(new) == 1, new
        run = wait_for_run(api, new.pop())
        page.goto(f"{base}/dags/{DAG_ID}/runs/{run['dag_run_id']}")
        expect(page.get_by_text("success").first).to_be_visible(timeout=120_000)
        page.screenshot(path=str(screenshots / "airflow_run_success.png"), full_page=True)
        browser.close()
    return run


def task_state(api: Api, run_id: str, task_id: str) -> str | None:
    return get(api, f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{task_id}").get("state")


def batch_run(settings, run_id: str):
    with psycopg2.connect(settings.pg_dsn("reader")) as conn, conn.cursor() as cur:
        cur.execute("SELECT bronze_rows, silver_rows, stream_end_offsets FROM ops.batch_runs WHERE run_id = %s",
                    (run_id,))
        row = cur.fetchone()
    conn.close()
    return row


def supervisor(settings):
    return stack._proxy(settings).supervisor


def test_rest_triggered_run_equals_independent_gold_and_a_rerun_from_the_ui_is_identical(full, tmp_path):
    settings, api = full
    # This stack's DAG Spark is the streams application's (SPARK_CONNECT_IN_STREAMS=true): no server of its own.
    assert "spark-connect" not in stack.process_states(settings)
    expected = send_day(settings, D_REST, N, seed=21)
    run = wait_for_run(api, trigger(api, D_REST))
    assert run["state"] == "success", run
    assert_gold_matches(settings, expected)
    bronze_rows, silver_rows, position = batch_run(settings, run["dag_run_id"])
    assert (bronze_rows, silver_rows) == (expected.bronze_rows, expected.silver_rows)
    assert settings.kafka_topic in position  # the stream position the run relied on
    before = gold_checksum(settings, [D_REST])
    rerun = trigger_from_the_ui(settings, api, D_REST, tmp_path)
    assert rerun["state"] == "success", rerun
    assert rerun["conf"] == {"event_date": D_REST.isoformat()}
    assert gold_checksum(settings, [D_REST]) == before

    # A catch-up run planned for the bronze these runs saw (a user's trigger
    # raced the planner) has nothing to do: skipped, nothing recorded.
    from lakehouse.batch import catch_up

    late = catch_up.run_id(D_REST, expected.bronze_rows)
    resp = patient(lambda: api.post(f"/dags/{DAG_ID}/dagRuns", {
        "dag_run_id": late, "logical_date": None, "conf": {"event_date": D_REST.isoformat()}}))
    assert resp.status_code == 200, resp.text
    assert wait_for_run(api, late)["state"] == "success"
    assert [task_state(api, late, t) for t in ("wait_for_complete_date", "bronze_to_silver", "gold_to_postgres")] \
        == ["skipped"] * 3
    assert batch_run(settings, late) is None
    assert gold_checksum(settings, [D_REST]) == before


def test_a_backfill_through_the_rest_api_processes_the_dates_the_docs_say(full):
    """docs/operations.md's backfill: `POST /backfills` from D+1 00:00 to
    D+1 02:00 UTC makes the one run whose data interval starts on D (the
    dry run lists it first), and that run processes D: ops.batch_runs records
    D with bronze's rows of D. `reprocess_behavior` "completed" runs a date
    again even when it has a run; `max_active_runs` 1 keeps a backfill's
    runs one at a time (a backfill does not obey the DAG's own limit)."""
    settings, api = full
    after = datetime(D_REST.year, D_REST.month, D_REST.day, tzinfo=timezone.utc) + timedelta(days=1)
    body = {"dag_id": DAG_ID, "from_date": after.isoformat(), "to_date": (after + timedelta(hours=2)).isoformat(),
            "reprocess_behavior": "completed", "max_active_runs": 1}
    resp = patient(lambda: api.post("/backfills/dry_run", body))
    assert resp.status_code == 200, resp.text
    assert [b["logical_date"] for b in resp.json()["backfills"]] == [f"{D_REST.isoformat()}T01:00:00Z"]
    resp = patient(lambda: api.post("/backfills", body))
    assert resp.status_code == 200, resp.text
    assert resp.json()["max_active_runs"] == 1

    def backfill_run():
        runs = get(api, f"/dags/{DAG_ID}/dagRuns", params={"limit": 100, "run_type": "backfill"})["dag_runs"]
        return next((r for r in runs if r["logical_date"].startswith(D_REST.isoformat())), None)

    run = wait_for_run(api, wait_for(backfill_run, 120, "the backfill's run", every=2)["dag_run_id"])
    assert run["state"] == "success", run
    with psycopg2.connect(settings.pg_dsn("reader")) as conn, conn.cursor() as cur:
        cur.execute("SELECT event_date, bronze_rows FROM ops.batch_runs WHERE run_id = %s", (run["dag_run_id"],))
        assert cur.fetchone() == (D_REST, _bronze_rows(settings, D_REST))
    conn.close()


def test_rest_refuses_a_malformed_event_date(full):
    _, api = full
    resp = patient(lambda: api.post(f"/dags/{DAG_ID}/dagRuns",
                                    {"logical_date": None, "conf": {"event_date": "20-10-2026"}}))
    assert resp.status_code == 400, resp.text
    assert "event_date" in resp.text


def test_sensor_waits_while_raw_landing_is_stopped_and_the_run_completes_once_it_resumes(full):
    settings, api = full
    supervisor(settings).stopProcess("streams", True)
    try:
        expected = send_day(settings, D_STOPPED, N, seed=22)
        run_id = trigger(api, D_STOPPED)
        wait_for(lambda: task_state(api, run_id, "wait_for_complete_date") == "up_for_reschedule", 1800,
                 "the completeness sensor to wait (up_for_reschedule)", every=3)
        time.sleep(3 * settings.batch_completeness_poke_seconds)  # further pokes: still waiting, nothing published
        assert get(api, f"/dags/{DAG_ID}/dagRuns/{run_id}")["state"] == "running"
        assert task_state(api, run_id, "bronze_to_silver") in (None, "scheduled", "queued", "none")
        assert batch_run(settings, run_id) is None
    finally:
        supervisor(settings).startProcess("streams", True)
    run = wait_for_run(api, run_id)
    assert run["state"] == "success", run
    assert_gold_matches(settings, expected)


def test_a_date_missed_while_the_scheduler_was_down_is_run_after_restart(full):
    settings, api = full
    supervisor(settings).stopProcess("airflow-scheduler", True)
    try:
        expected = send_day(settings, D_MISSED, N, seed=23)
        # raw landing lands it while no scheduler runs
        wait_for(lambda: _bronze_rows(settings, D_MISSED) == expected.bronze_rows, 600,
                 f"raw landing to land {D_MISSED}", every=5)
    finally:
        supervisor(settings).startProcess("airflow-scheduler", True)

    def catch_up_run():
        runs = get(api, f"/dags/{DAG_ID}/dagRuns", params={"limit": 100})["dag_runs"]
        mine = [r for r in runs if (r.get("conf") or {}).get("event_date") == D_MISSED.isoformat()]
        done = [r for r in mine if r["state"] == "success"]
        return done[0] if done else None

    run = wait_for(catch_up_run, 2400, f"lakehouse_catch_up to run {D_MISSED}", every=10)
    assert run["dag_run_id"].startswith("catch_up__"), run
    assert_gold_matches(settings, expected)


def _bronze_rows(settings, d: date) -> int:
    from lakehouse import catalog
    from lakehouse.batch.catch_up import bronze_rows_per_date

    return bronze_rows_per_date(catalog.BRONZE_EVENTS.path(settings)).get(d, 0)
