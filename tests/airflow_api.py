"""A small client for Airflow 3's REST API (token login, then JSON calls),
shared by the tests that drive a running stack."""

from __future__ import annotations

import re
import warnings
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
        self.settings = settings
        self.base = f"{airflow.base_url(settings)}/api/v2"
        self.headers = {"Authorization": f"Bearer {token(settings)}"}

    def get(self, path: str, headers: dict | None = None, **kw) -> requests.Response:
        return requests.get(self.base + path, headers={**self.headers, **(headers or {})}, timeout=30, **kw)

    def post(self, path: str, body: dict) -> requests.Response:
        return requests.post(self.base + path, headers=self.headers, json=body, timeout=30)

    def patch(self, path: str, body: dict) -> requests.Response:
        return requests.patch(self.base + path, headers=self.headers, json=body, timeout=30)


def wait_for_dag(api: Api, dag_id: str, timeout: float = 240) -> dict:
    resp = wait_for(lambda: (r := api.get(f"/dags/{dag_id}")).status_code == 200 and r,
                    timeout, f"{dag_id} to appear in the API", every=3)
    return resp.json()


def wait_for_run(api: Api, dag_id: str, run_id: str, timeout: float = 900) -> dict:
    def finished():
        run = api.get(f"/dags/{dag_id}/dagRuns/{run_id}").json()
        return run if run.get("state") in ("success", "failed") else None

    return wait_for(finished, timeout, f"run {run_id} of {dag_id} to finish", every=5)


def server_side(settings, answer: str) -> str:
    """What the servers logged about a 500 "Database error" answer: the API
    server's lines for the error id it names (the statement; the database's
    own error is not in them) and PostgreSQL's last ERROR lines (a deadlock
    names both processes)."""
    found = re.search(r"look for ID (\w+)", answer)
    api_log = (settings.log_dir / "airflow-api-server.log").read_text(errors="replace").splitlines()
    pg_log = (settings.log_dir / "postgres.log").read_text(errors="replace").splitlines()
    at = [i for i, line in enumerate(api_log) if found and found.group(1) in line]
    errors = [i for i, line in enumerate(pg_log) if " ERROR: " in line][-3:]
    return "\n".join([*(line for i in at for line in api_log[i:i + 8]),
                      *(line for i in errors for line in pg_log[i:i + 4])])


def stop_the_scheduled_run(api: Api, dag_id: str) -> None:
    """An unpaused daily DAG with catchup off gets one scheduled run at once,
    for the latest interval (01:00 UTC, the day before). Tests that trigger
    their own runs do not need it, and with max_active_runs=1 each of theirs
    would queue behind it (a whole DAG run when the completeness sensor lets
    it through): check it is that daily run, then mark it failed (a running
    task is stopped at its next heartbeat).

    The API server and the scheduler write the same run's rows; once in CI the
    mark was answered 500 "Database error" (cause not known: Airflow logs only
    the statement), and once, on a loaded machine, not within the request's
    30 s. The mark is tried again until it is taken or the run has ended
    anyway (a mark answered too late may have been taken), and each such
    answer is a warning with what the servers logged."""
    def scheduled():
        runs = api.get(f"/dags/{dag_id}/dagRuns", params={"limit": 100}).json()["dag_runs"]
        return [r for r in runs if r["run_type"] == "scheduled"]

    def ended(run_id: str) -> bool:
        return api.get(f"/dags/{dag_id}/dagRuns/{run_id}").json()["state"] not in ("queued", "running")

    def marked_failed(run_id: str) -> bool:
        try:
            resp = api.patch(f"/dags/{dag_id}/dagRuns/{run_id}", {"state": "failed"})
        except requests.Timeout as exc:
            warnings.warn(f"PATCH {run_id} state=failed: no answer ({exc})", stacklevel=2)
            return ended(run_id)
        if resp.status_code == 200:
            return True
        assert resp.status_code == 500 and "Database error" in resp.text, resp.text
        warnings.warn(f"PATCH {run_id} state=failed: {resp.text}\n{server_side(api.settings, resp.text)}", stacklevel=2)
        return ended(run_id)

    for run in wait_for(scheduled, 120, f"the scheduler's first run of {dag_id}", every=2):
        start, end = (datetime.fromisoformat(run[k]) for k in ("data_interval_start", "data_interval_end"))
        assert (end - start, end.hour, end.minute) == (timedelta(days=1), 1, 0), run
        if run["state"] in ("queued", "running"):
            run_id = run["dag_run_id"]
            wait_for(lambda: marked_failed(run_id), 180, f"{run_id} marked failed", every=2)
