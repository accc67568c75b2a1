"""Airflow under the embedded stack: healthy, logs in, lists our DAGs without import errors, passes
docker-compose.yml's health checks, and stops in order."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.error
import urllib.request

import pytest

from lakehouse.platform import stack
from lakehouse.platform.airflow import DAGS_DIR, base_url
from lakehouse.polling import wait_for
from tests.airflow_api import Api
from tests.conftest import make_settings, settings_as_environment

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def airflow_stack(tmp_path_factory):
    """A stack of its own with Airflow's api-server, scheduler, dag-processor,
    triggerer (plus PostgreSQL and the broker). Not built on core_stack: a
    running stack's program set is fixed when it starts, so Airflow cannot be
    added to core_stack afterwards (stack.up refuses). Stopped with this file
    (its last test stops it): an idle Airflow stack is not idle (the
    scheduler's loop, the dag-processor's parsing, the completeness sensor of
    the scheduled run poking every 30 s take ~28% of a core)."""
    settings = make_settings(tmp_path_factory.mktemp("airflow_run") / "run")
    try:
        stack.up(settings, groups=("core", "airflow"))
        yield settings
    finally:
        stack.clean(settings)


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


def test_spark_default_is_the_stacks_spark_connect_server_with_delta(airflow_stack, tmp_path):
    """The DAG's Spark tasks get their session from `spark_default`: a Spark
    Connect connection to the stack's server (127.0.0.1 only), which has
    delta-spark; a client session there starts no JVM of its own."""
    from lakehouse.platform import airflow, spark_connect
    from tests.batch_helpers import connect_session

    conn = json.loads(airflow.environment(airflow_stack)["AIRFLOW_CONN_SPARK_DEFAULT"])
    assert conn == {"conn_type": "spark_connect", "host": "127.0.0.1", "port": airflow_stack.spark_connect_port}
    with connect_session(spark_connect.url(airflow_stack)) as spark:
        path = str(tmp_path / "t")
        spark.range(5).selectExpr("id", "DATE'2026-11-20' AS event_date").write.format("delta") \
            .partitionBy("event_date").save(path)
        spark.range(3).selectExpr("id", "DATE'2026-11-20' AS event_date").write.format("delta") \
            .mode("overwrite").option("replaceWhere", "event_date = DATE'2026-11-20'").save(path)
        assert spark.read.format("delta").load(path).count() == 3


def test_the_scheduler_preloads_what_tasks_import():
    """LocalExecutor forks task processes from the scheduler: the scheduler's
    command imports Great Expectations (and the Spark Connect client) first."""
    from lakehouse.platform import airflow

    cmd = airflow.command("scheduler")
    assert cmd[1:4] == ["-m", "lakehouse.platform.airflow", "scheduler"]
    assert {"great_expectations", "pyspark.sql.connect.session"} <= set(airflow.PRELOAD)


def test_the_scheduler_idle_sleep_is_the_setting_airflow_reads(airflow_stack):
    """Each hand-off of a DAG run (its start, every next task, its end) waits
    for the scheduler's next loop; Airflow must read our shorter idle sleep
    under the option name it knows ([scheduler] scheduler_idle_sleep_time)."""
    from lakehouse.platform import airflow

    env = {**os.environ, **airflow.environment(airflow_stack)}
    res = subprocess.run([airflow.airflow_bin(), "config", "get-value", "scheduler", "scheduler_idle_sleep_time"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert float(res.stdout.strip()) == airflow_stack.airflow_scheduler_idle_sleep_seconds


def test_compose_health_checks_pass_against_running_airflow(airflow_stack, monkeypatch):
    """docker-compose.yml's health checks of Airflow's containers
    (`lakehouse.platform.compose health`) pass against the running
    components; an unknown streaming query's check fails."""
    from typer.testing import CliRunner

    from lakehouse.platform import compose

    settings_as_environment(airflow_stack, monkeypatch)
    runner = CliRunner()
    for service in ("airflow-api-server", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"):
        wait_for(lambda: runner.invoke(compose.app, ["health", service]).exit_code == 0, 120,
                 f"{service}'s health check to pass", every=3)
    assert runner.invoke(compose.app, ["health", "stream", "--query", "no-such-stream"]).exit_code == 1


def test_down_stops_each_program_before_what_it_uses_and_none_is_killed(airflow_stack):
    """Last in this file: it stops the module's stack. `lakehouse down` stops
    Airflow's scheduler, dag-processor and triggerer together, then the API
    server they report to, then the servers (Service.stop_wave); each stops on
    its own signal, none waits for supervisord's SIGKILL."""
    import re

    from lakehouse.platform.services import services

    assert stack.down(airflow_stack)
    log = (airflow_stack.log_dir / "supervisord.log").read_text()
    stopped = re.findall(r"^(\S+ \S+) \w+ stopped: (\S+) \((.*)\)$", log, re.M)
    waves = {s.name: s.stop_wave for s in services(airflow_stack) if s.group in ("core", "airflow")}
    assert sorted(name for _, name, _ in stopped) == sorted(waves), stopped
    assert [how for _, _, how in stopped if "SIGKILL" in how] == [], stopped
    order = [waves[name] for _, name, _ in sorted(stopped)]
    assert order == sorted(order), stopped
    assert set(order) == {0, 1, 2}
