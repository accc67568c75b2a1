"""A small client for Airflow 3's REST API (token login, then JSON calls),
shared by the tests that drive a running stack."""

from __future__ import annotations

from datetime import datetime, timedelta

import requests

from lakehouse.platform import airflow
from lakehouse.polling import wait_for


def token(settings) -> str:
    resp = requests.post(
        f"{airflow.base_url(settings)}/auth/token",
        json={"username": settings.airflow_admin_user,
              "password": settings.airflow_admin_password.get_secret_value()},
        timeout=30,
    )
    resp.raise_for_status()
    return resp.json()["access_token"]


class Api:
    def __init__(self, settings):
        self.base = f"{airflow.base_url(settings)}/api/v2"
        self.headers = {"Authorization": f"Bearer {token(settings)}"}

    def get(self, path: str, headers: dict | None = None, **kw) -> requests.Response:
        return requests.get(self.base + path, headers={**self.headers, **(headers or {})}, timeout=30, **kw)

    def post(self, path: str, body: dict) -> requests.Response:
        return requests.post(self.base + path, headers=self.headers, json=body, timeout=30)


def wait_for_dag(api: Api, dag_id: str, timeout: float = 240) -> dict:
    resp = wait_for(lambda: (r := api.get(f"/dags/{dag_id}")).status_code == 200 and r,
                    timeout, f"{dag_id} to appear in the API", every=3)
    return resp.json()


def wait_for_run(api: Api, dag_id: str, run_id: str, timeout: float = 900) -> dict:
    def finished():
        run = api.get(f"/dags/{dag_id}/dagRuns/{run_id}").json()
        return run if run.get("state") in ("success", "failed") else None

    return wait_for(finished, timeout, f"run {run_id} of {dag_id} to finish", every=5)


def stop_the_scheduled_run(api: Api, dag_id: str) -> None:
    """An unpaused daily DAG with catchup off gets one scheduled run at once,
    for the latest interval (01:00 UTC, the day before). Tests that trigger
    their own runs do not need it, and with max_active_runs=1 each of theirs
    would queue behind it (a whole DAG run when the completeness sensor lets
    it through): check it is that daily run, then mark it failed (a running
    task is stopped at its next heartbeat)."""
    def scheduled():
        runs = api.get(f"/dags/{dag_id}/dagRuns", params={"limit": 100}).json()["dag_runs"]
        return [r for r in runs if r["run_type"] == "scheduled"]

    for run in wait_for(scheduled, 120, f"the scheduler's first run of {dag_id}", every=2):
        start, end = (datetime.fromisoformat(run[k]) for k in ("data_interval_start", "data_interval_end"))
        assert (end - start, end.hour, end.minute) == (timedelta(days=1), 1, 0), run
        if run["state"] in ("queued", "running"):
            resp = requests.patch(f"{api.base}/dags/{dag_id}/dagRuns/{run['dag_run_id']}", json={"state": "failed"},
                                  headers=api.headers, timeout=30)
            assert resp.status_code == 200, resp.text
