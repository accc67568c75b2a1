"""`lakehouse_bronze_to_gold` under the running stack (api-server, scheduler,
dag-processor, triggerer, Spark Connect): a run triggered through the REST API, and one
triggered from the Airflow UI in headless Chromium, both reach success and
load the gold values computed independently from the generated events."""

from __future__ import annotations

import time
from datetime import date

import pytest

from lakehouse import testdata
from lakehouse.platform import airflow
from tests.airflow_api import Api, stop_the_scheduled_run, wait_for_dag, wait_for_run
from tests.batch_helpers import assert_gold_matches, raw_landing_caught_up

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DAG_ID = "lakehouse_bronze_to_gold"
REST_DATE = date(2026, 10, 20)
UI_DATE = date(2026, 10, 21)
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def api(airflow_stack):
    api = Api(airflow_stack)
    dag = wait_for_dag(api, DAG_ID)
    assert dag["is_paused"] is False  # DAGS_ARE_PAUSED_AT_CREATION=False (docs/batch.md)
    errors = api.get("/importErrors").json()
    assert errors["total_entries"] == 0, errors
    stop_the_scheduled_run(api, DAG_ID)
    # No streams in this stack: its topic is empty and "raw landing" has read
    # all of it, so the completeness sensor lets these past dates through.
    raw_landing_caught_up(airflow_stack)
    return api


def test_rest_triggered_run_succeeds(airflow_stack, api):
    expected = testdata.write_bronze_day(airflow_stack, REST_DATE, 2000, seed=11)
    resp = api.post(f"/dags/{DAG_ID}/dagRuns", {"logical_date": None, "conf": {"event_date": REST_DATE.isoformat()}})
    assert resp.status_code == 200, resp.text
    run = wait_for_run(api, DAG_ID, resp.json()["dag_run_id"])
    assert run["state"] == "success", run
    assert_gold_matches(airflow_stack, expected)


def test_rest_refuses_a_malformed_event_date(api):
    resp = api.post(f"/dags/{DAG_ID}/dagRuns", {"logical_date": None, "conf": {"event_date": "20-10-2026"}})
    assert resp.status_code == 400, resp.text
    assert "event_date" in resp.text


def test_ui_trigger_button_runs_the_dag(airflow_stack, api, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    expected = testdata.write_bronze_day(airflow_stack, UI_DATE, 2000, seed=12)
    before = {r["dag_run_id"] for r in api.get(f"/dags/{DAG_ID}/dagRuns", params={"limit": 100}).json()["dag_runs"]}
    base = airflow.base_url(airflow_stack)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(60_000)
        page.goto(f"{base}/")
        page.get_by_label("Username").fill(airflow_stack.airflow_admin_user)
        page.get_by_label("Password").fill(airflow_stack.airflow_admin_password.get_secret_value())
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(lambda url: "/auth/login" not in url)
        page.goto(f"{base}/dags/{DAG_ID}")
        page.get_by_role("button", name="Trigger").first.click()
        dialog = page.get_by_role("dialog")
        dialog.locator("#element_event_date").fill(UI_DATE.isoformat())  # the param's date input
        dialog.get_by_role("button", name="Trigger").click()
        run_id = None
        deadline = time.monotonic() + 60
        while run_id is None and time.monotonic() < deadline:
            runs = api.get(f"/dags/{DAG_ID}/dagRuns", params={"limit": 100}).json()["dag_runs"]
            new = [r["dag_run_id"] for r in runs if r["dag_run_id"] not in before and r["run_type"] == "manual"]
            run_id = new[0] if new else None
            time.sleep(1)
        assert run_id, "the Trigger button created no run"
        run = wait_for_run(api, DAG_ID, run_id)
        page.goto(f"{base}/dags/{DAG_ID}/runs/{run_id}")
        expect(page.get_by_text("success").first).to_be_visible(timeout=60_000)
        page.screenshot(path=str(tmp_path / "airflow_run_success.png"), full_page=True)
        browser.close()
    assert run["state"] == "success", run
    assert run["conf"] == {"event_date": UI_DATE.isoformat()}
    assert_gold_matches(airflow_stack, expected)
