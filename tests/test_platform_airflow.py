"""Airflow under the embedded stack: healthy, logs in, lists our DAGs without import errors."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from lakehouse.platform.airflow import DAGS_DIR, base_url
from lakehouse.polling import wait_for
from tests.airflow_api import Api

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def repository_dag_ids() -> set[str]:
    """Convention: each file in dags/ defines one DAG whose id is the file's stem."""
    return {p.stem for p in DAGS_DIR.glob("*.py") if not p.name.startswith("_")}


def test_health_endpoint_reports_healthy(airflow_stack):
    def healthy():
        with urllib.request.urlopen(base_url(airflow_stack) + "/api/v2/monitor/health", timeout=10) as r:
            h = json.load(r)
        ok = all(h[c]["status"] == "healthy" for c in ("metadatabase", "scheduler", "triggerer", "dag_processor"))
        return h if ok else None

    wait_for(healthy, 120, "every Airflow component to report healthy", every=2)


def test_login_is_required(airflow_stack):
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(base_url(airflow_stack) + "/api/v2/dags", timeout=10)
    assert err.value.code in (401, 403)


def test_rest_api_lists_repository_dags_without_import_errors(airflow_stack):
    api = Api(airflow_stack)
    expected = repository_dag_ids()
    assert expected, "dags/ holds no DAG file"

    def listed():
        ids = {d["dag_id"] for d in api.get("/dags", params={"limit": 100}).json()["dags"]}
        return ids if expected <= ids else None

    wait_for(listed, 180, f"DAGs {sorted(expected)} to be listed", every=2)
    errors = api.get("/importErrors").json()
    assert errors["total_entries"] == 0, errors
