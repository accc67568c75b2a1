"""Exposure of the running stack, every program of `make up` (PostgreSQL, the
broker, Airflow's four components, producer, streams, dashboard when there is
one) in an isolated run directory:

- every socket a process of the stack listens on is bound to loopback, found
  from the processes' own PIDs (the streams' Spark driver included);
- Airflow's REST API refuses requests without a valid token;
- no secret appears in any process's arguments, in any log file under the
  run directory, in the Airflow UI's rendered task logs, or in `lakehouse up`
  output once the secrets exist; the secrets file stays mode 600.
"""

from __future__ import annotations

import ipaddress
import json
import os
import stat
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psutil
import pytest
import requests
from dotenv import dotenv_values
from typer.testing import CliRunner

from lakehouse.chaos.runner import complete
from lakehouse.platform import airflow, cli, secrets, stack
from lakehouse.platform.services import env_file, services
from lakehouse.polling import wait_for
from lakehouse.settings import SECRET_FIELDS, Settings
from tests.conftest import make_settings
from tests.airflow_api import Api, stop_the_scheduled_run, wait_for_dag, wait_for_run

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DAG_ID = "lakehouse_bronze_to_gold"
#: Files that hold secrets by design (mode 600, read by the launcher and Airflow's auth manager).
SECRET_FILES = {"stack.env", "passwords.json"}
#: Seconds a request may take: refusals are tested here, not speed, and a just-started API server
#: answered its first requests in over 30 s on this busy 2-core machine (CI, 2026-12-03).
TIMEOUT = 120
#: A running stack to check instead of starting one (e.g. a chaos run's); left running, its runs untouched.
EXISTING_RUN_DIR = os.environ.get("LAKEHOUSE_EXPOSURE_RUN_DIR")


@pytest.fixture(scope="module")
def full_stack(tmp_path_factory):
    """Every program of `make up`, in a run directory of its own, the producer slow.
    LAKEHOUSE_EXPOSURE_RUN_DIR=<run dir> checks a stack that is already
    running there (e.g. a chaos run's) instead, and leaves it running."""
    if EXISTING_RUN_DIR:
        values = {k.lower(): v for k, v in dotenv_values(Path(EXISTING_RUN_DIR) / "stack.env").items() if v is not None}
        values["kafka_options"] = json.loads(values.get("kafka_options") or "{}")
        yield Settings(_env_file=None, **values)
        return
    settings = make_settings(tmp_path_factory.mktemp("exposure") / "run", producer_rate=20.0)
    groups = tuple(dict.fromkeys(s.group for s in services(settings)))
    try:
        stack.up(settings, groups=groups)
        wait_for(lambda: all(v == "RUNNING" for v in stack.process_states(settings).values()), 300,
                 "every program RUNNING", every=3)
        yield settings
    finally:
        stack.clean(settings)


def _secrets(settings) -> dict[str, str]:
    out = {}
    for name in SECRET_FIELDS:
        value = getattr(settings, name)
        if value is not None:
            out[name.upper()] = value.get_secret_value()
    assert len(out) >= 7
    return out


def _stack_processes(settings) -> list[psutil.Process]:
    pid = stack.supervisord_pid(settings)
    assert pid, "supervisord is not running"
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def _leaks(text: str, secret_values: dict[str, str]) -> list[str]:
    return [name for name, value in secret_values.items() if value in text]


def test_airflow_api_refuses_unauthenticated_requests(full_stack):
    base = airflow.base_url(full_stack)
    for method, path in (("GET", "/api/v2/dags"), ("GET", "/api/v2/connections"), ("GET", "/api/v2/variables"),
                         ("GET", "/api/v2/config"), ("POST", f"/api/v2/dags/{DAG_ID}/dagRuns"),
                         ("PATCH", f"/api/v2/dags/{DAG_ID}")):
        for headers in ({}, {"Authorization": "Bearer not-a-token"}):
            resp = requests.request(method, base + path, headers=headers, json={}, timeout=TIMEOUT)
            assert resp.status_code in (401, 403), (method, path, headers, resp.status_code)
    wrong = requests.post(f"{base}/auth/token", json={"username": full_stack.airflow_admin_user,
                                                      "password": "wrong"}, timeout=TIMEOUT)
    assert wrong.status_code in (401, 403)
    assert Api(full_stack).get("/dags").status_code == 200  # and the right password works


def test_dashboard_refuses_unauthenticated_requests(full_stack):
    assert "dashboard" in stack.process_states(full_stack), "services.py has a dashboard program"
    base = f"http://127.0.0.1:{full_stack.dashboard_port}"
    wait_for(lambda: _status(base + "/login") == 200, 120, "the dashboard's login page", every=2)
    for method, path in (("GET", "/_dash-layout"), ("GET", "/_dash-dependencies"), ("POST", "/_dash-update-component"),
                         ("GET", "/assets/x.css"), ("GET", "/anything")):
        resp = requests.request(method, base + path, json={}, timeout=TIMEOUT, allow_redirects=False)
        assert resp.status_code in (401, 403), (method, path, resp.status_code)
    assert requests.get(base + "/", timeout=TIMEOUT, allow_redirects=False).status_code in (302, 303, 401)
    session = requests.Session()
    bad = session.post(base + "/login", data={"username": full_stack.dashboard_admin_user, "password": "wrong"},
                       timeout=TIMEOUT, allow_redirects=False)
    assert bad.status_code == 401
    assert session.get(base + "/_dash-layout", timeout=TIMEOUT).status_code == 401
    good = session.post(base + "/login", timeout=TIMEOUT, allow_redirects=False, data={
        "username": full_stack.dashboard_admin_user,
        "password": full_stack.dashboard_admin_password.get_secret_value()})
    assert good.status_code in (302, 303)
    assert session.get(base + "/_dash-layout", timeout=TIMEOUT).status_code == 200  # and the right password works


def _status(url: str) -> int | None:
    try:
        return requests.get(url, timeout=10).status_code
    except requests.RequestException:
        return None


def test_no_secret_in_any_process_arguments(full_stack):
    values = _secrets(full_stack)
    found = []
    for proc in _stack_processes(full_stack):
        try:
            cmdline = "\0".join(proc.cmdline())
        except psutil.NoSuchProcess:
            continue
        found += [f"{name} in pid {proc.pid} {proc.name()}" for name in _leaks(cmdline, values)]
    assert found == []


def test_no_secret_in_rendered_task_logs_or_any_log_file(full_stack):
    """A DAG run through the REST API (for the day before yesterday: a date
    whose cutoff, D+1 00:00 UTC + the allowed lateness, has passed at any time
    of day, so the completeness sensor lets it run at once; yesterday's waits
    until 01:00 UTC); every task's log as the UI renders it, then every log
    file of the run directory."""
    values = _secrets(full_stack)
    api = Api(full_stack)
    wait_for_dag(api, DAG_ID)
    if not EXISTING_RUN_DIR:  # our own stack: ours would queue behind yesterday's
        stop_the_scheduled_run(api, DAG_ID)
    event_date = (datetime.now(timezone.utc) - timedelta(days=2)).date()
    assert complete(full_stack, event_date)  # its cutoff has passed: the sensor lets it run at once
    resp = api.post(f"/dags/{DAG_ID}/dagRuns", {"logical_date": None, "conf": {"event_date": event_date.isoformat()}})
    assert resp.status_code == 200, resp.text
    run_id = resp.json()["dag_run_id"]
    wait_for_run(api, DAG_ID, run_id, timeout=1200)
    tis = api.get(f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances").json()["task_instances"]
    rendered = 0
    found = []
    for ti in tis:
        if not ti.get("try_number"):
            continue
        log = api.get(f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{ti['task_id']}/logs/{ti['try_number']}",
                      params={"full_content": "true"}, headers={"Accept": "application/json"})
        assert log.status_code == 200, log.text
        rendered += 1
        found += [f"{name} in the rendered log of {ti['task_id']}" for name in _leaks(log.text, values)]
    assert rendered >= 1, tis
    files = [p for p in full_stack.run_dir.rglob("*") if p.is_file() and p.name not in SECRET_FILES
             and (p.suffix == ".log" or "logs" in p.relative_to(full_stack.run_dir).parts)]
    assert len(files) >= len(services(full_stack)), files
    for path in files:
        found += [f"{name} in {path}" for name in _leaks(path.read_text(errors="replace"), values)]
    assert found == []


def test_up_output_shows_no_secret_once_the_secrets_exist(full_stack, tmp_path, monkeypatch):
    """`lakehouse up` (what `make up` runs) on the running stack: the first run,
    which generated the secrets, shows the generated login passwords once;
    afterwards the output names where the secrets are, never a value."""
    env_path = tmp_path / ".env"
    monkeypatch.setattr(cli, "ensure_env_file", lambda: secrets.ensure_env_file(env_path))
    monkeypatch.setattr(cli, "get_settings", lambda: full_stack)
    groups = tuple(dict.fromkeys(s.group for s in services(full_stack)))
    real_up = stack.up
    monkeypatch.setattr(cli.stack, "up", lambda settings: real_up(settings, groups=groups))
    values = _secrets(full_stack)
    first = CliRunner().invoke(cli.app, ["up"])
    assert first.exit_code == 0, first.output
    # the logins generated in that run, shown once by design; no other secret
    assert "AIRFLOW_ADMIN_PASSWORD" in _leaks(first.output, values)
    assert set(_leaks(first.output, values)) <= {"AIRFLOW_ADMIN_PASSWORD", "DASHBOARD_ADMIN_PASSWORD"}
    for _ in range(2):
        again = CliRunner().invoke(cli.app, ["up"])
        assert again.exit_code == 0, again.output
        assert "AIRFLOW_ADMIN_PASSWORD in .env" in again.output
        assert _leaks(again.output, values) == []
    assert stat.S_IMODE(env_path.stat().st_mode) == 0o600


def test_secret_files_stay_mode_600(full_stack, tmp_path):
    assert stat.S_IMODE(env_file(full_stack).stat().st_mode) == 0o600
    assert stat.S_IMODE((full_stack.airflow_home / "passwords.json").stat().st_mode) == 0o600
    env_path = tmp_path / ".env"
    old = os.umask(0)
    try:
        secrets.ensure_env_file(env_path)  # created under a permissive umask
        assert stat.S_IMODE(env_path.stat().st_mode) == 0o600
        env_path.chmod(0o644)  # loosened by hand, then a secret is missing
        env_path.write_text("\n".join(env_path.read_text().splitlines()[1:]) + "\n")
        assert len(secrets.ensure_env_file(env_path)) == 1
        assert stat.S_IMODE(env_path.stat().st_mode) == 0o600
    finally:
        os.umask(old)


def _loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%")[0])
    if ip.version == 6 and ip.ipv4_mapped:  # a JVM's IPv4 socket: ::ffff:127.0.0.1
        ip = ip.ipv4_mapped
    return ip.is_loopback


def test_every_listening_socket_is_on_loopback(full_stack):
    # the streams' Spark driver opens its ports once its session is up: wait for its first batch
    def streams_progressed():
        import psycopg2

        with psycopg2.connect(full_stack.pg_dsn("reader")) as conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM ops.stream_progress")
            return cur.fetchone()[0] > 0

    wait_for(streams_progressed, 300, "the streams' first micro-batch", every=3)
    listening, exposed, unread = [], [], []
    for proc in _stack_processes(full_stack):
        try:
            name = " ".join(proc.cmdline()[:3])
            conns = proc.net_connections(kind="inet")
        except psutil.NoSuchProcess:
            continue
        except psutil.AccessDenied:  # not as root: Airflow makes its workers non-dumpable (their fds unreadable)
            unread.append(name)
            continue
        for c in conns:
            bound = c.status == psutil.CONN_LISTEN or (c.type == 2 and not c.raddr)  # TCP listen, UDP bound
            if not bound:
                continue
            listening.append((proc.pid, c.laddr))
            if not _loopback(c.laddr.ip):
                exposed.append(f"pid {proc.pid} ({name}) on {c.laddr.ip}:{c.laddr.port}")
    ports = {addr.port for _, addr in listening}
    assert {full_stack.pg_port, full_stack.airflow_port,
            int(full_stack.kafka_bootstrap_servers.rsplit(":", 1)[1])} <= ports, listening
    assert exposed == []
    # as root (CI) every process is read; a user's run reads all but Airflow's executor workers (prctl
    # PR_SET_DUMPABLE 0, airflow.sdk.execution_time.supervisor), which talk to their parent over socketpairs
    assert all(name.startswith("airflow worker") for name in unread), unread


