"""Airflow under the embedded stack: healthy, logs in, lists our DAGs without import errors, passes
docker-compose.yml's health checks, and stops in order."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
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
    the scheduled run poking every 30 s take ~28% of a core). Without the
    pipeline group no streams could serve Spark Connect (SPARK_CONNECT_IN_STREAMS):
    this stack runs the server of its own, program spark-connect, as
    by default (test_batch_stack covers the streams serving it)."""
    settings = make_settings(tmp_path_factory.mktemp("airflow_run") / "run", spark_connect_in_streams=False)
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
        try:
            with urllib.request.urlopen(base_url(airflow_stack) + "/api/v2/monitor/health", timeout=10) as r:
                h = json.load(r)
        except OSError as exc:  # still starting, or too busy to answer within 10 s: ask again
            print(f"health endpoint: {exc!r}", flush=True)
            return None
        ok = all(h[c]["status"] == "healthy" for c in ("metadatabase", "scheduler", "triggerer", "dag_processor"))
        if not ok:
            print(f"health endpoint: {h}", flush=True)  # which component, if the deadline passes
        return h if ok else None

    # 300 s: a fresh-clone .ci/run in a slow hour (load 5-6, the fixture's start
    # took 170 s) had not seen all four healthy within 120 s.
    wait_for(healthy, 300, "every Airflow component to report healthy", every=2)


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
    assert "scheduler" in airflow.JOB_COMPONENTS
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


def test_lakehouse_airflow_passes_help_to_airflow(airflow_stack, monkeypatch):
    """`lakehouse airflow <command> --help` is Airflow's help of that command
    (the options a user looks up, e.g. a backfill's), not the wrapper's."""
    settings_as_environment(airflow_stack, monkeypatch)
    res = subprocess.run([sys.executable, "-m", "lakehouse.platform.cli", "airflow", "backfill", "create", "--help"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "usage: airflow backfill create" in res.stdout.lower()
    assert "--reprocess-behavior" in res.stdout and "--max-active-runs" in res.stdout


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


def test_a_stopping_airflow_program_can_write_its_stacks_and_runs_on(airflow_stack):
    """`lakehouse down` has an Airflow program that is about to be killed
    write its threads' stacks to its log first (airflow.STACK_DUMP_SIGNAL);
    the running dag-processor writes them on that signal and keeps running."""
    from lakehouse.platform import airflow
    from lakehouse.platform.stack import _proxy

    proxy = _proxy(airflow_stack).supervisor
    before = proxy.getProcessInfo("airflow-dag-processor")
    log = airflow_stack.log_dir / "airflow-dag-processor.log"
    size = log.stat().st_size
    os.kill(before["pid"], airflow.STACK_DUMP_SIGNAL)
    wait_for(lambda: "(most recent call first)" in log.read_text()[size:], 30, "the dag-processor's stack dump")
    assert "in _run_parsing_loop" in log.read_text()[size:]
    after = proxy.getProcessInfo("airflow-dag-processor")
    assert (after["statename"], after["pid"]) == ("RUNNING", before["pid"])


#: A stack dump's frames, most recent first: (file, function).
_FRAME = re.compile(r'^\s+File "(.*)", line \d+ in (\S+)$', re.M)


def deadlocked_in_its_stop_handler(log_text: str) -> bool:
    """Whether a program's log ends in the known Airflow 3.3.2 stop deadlock
    (airflow.JOB_COMPONENTS): a thread of its stack dump runs the SIGTERM
    handler `_exit_gracefully`, waiting for structlog's write lock in the log
    line that handler writes, while the line it interrupted holds the lock."""
    dumps = log_text.split("(most recent call first):")
    for thread in dumps[1:]:
        frames = _FRAME.findall(thread.split("\n\n")[0])
        handler = [i for i, (_, fn) in enumerate(frames) if fn == "_exit_gracefully"]
        if handler:
            i = handler[0]
            structlog = [j for j, (f, _) in enumerate(frames) if f.endswith("structlog/_output.py")]
            if any(j < i for j in structlog) and any(j > i for j in structlog):
                return True
    return False


#: What Airflow's job runners do on SIGTERM (their `_exit_gracefully`): log a
#: line, then exit; here in a program that logs through Airflow's structlog
#: set-up all the time, into a pipe its reader stops reading.
_LOGS_IN_ITS_SIGNAL_HANDLER = """
import faulthandler, signal, sys
import airflow  # Airflow's logging set-up (structlog)
import structlog
log = structlog.get_logger("t")
def _exit_gracefully(signum, frame):
    log.info("Exiting gracefully upon receiving signal", signum=signum)
    sys.exit(0)
faulthandler.register(signal.SIGUSR1, all_threads=True)
signal.signal(signal.SIGTERM, _exit_gracefully)
print("ready", flush=True)
while True:
    log.info("a log line", text="x" * 200)
"""


def test_a_log_line_in_a_signal_handler_deadlocks_on_a_blocked_write_and_its_stack_tells(tmp_path):
    """The premise of deadlocked_in_its_stop_handler: a SIGTERM that lands
    while the program is blocked writing a log line (its output pipe full)
    hangs it in its handler for good; the stack it writes on SIGUSR1 is told
    apart from other hangs."""
    import threading
    import time

    stacks = tmp_path / "stacks.txt"
    with stacks.open("w") as err:
        proc = subprocess.Popen([sys.executable, "-c", _LOGS_IN_ITS_SIGNAL_HANDLER], stdout=subprocess.PIPE,
                                stderr=err)
    try:
        assert proc.stdout.readline() == b"ready\n"
        time.sleep(1)  # nobody reads: the pipe fills, the program blocks in a write
        proc.terminate()
        time.sleep(0.5)
        threading.Thread(target=proc.stdout.read, daemon=True).start()  # the pipe drains again
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(5)
        proc.send_signal(signal.SIGUSR1)
        wait_for(lambda: "_exit_gracefully" in stacks.read_text(), 10, "the stack dump")
    finally:
        proc.kill()
        proc.wait()
    dump = stacks.read_text()
    assert deadlocked_in_its_stop_handler(dump), dump
    # a hang outside the handler, or a handler that interrupted no log line
    assert not deadlocked_in_its_stop_handler(dump.replace("_exit_gracefully", "_refresh_dag_bundles"))
    interrupted = dump.rindex("structlog/_output.py")
    assert not deadlocked_in_its_stop_handler(dump[:interrupted] + "sqlalchemy/pool/base.py" +
                                              dump[interrupted + len("structlog/_output.py"):])
    assert not deadlocked_in_its_stop_handler("no stack at all\n")


def test_down_stops_each_program_before_what_it_uses_and_none_is_killed(airflow_stack):
    """Last in this file: it stops the module's stack. `lakehouse down` stops
    Airflow's scheduler, dag-processor and triggerer together, then the API
    server they report to, then the servers (Service.stop_wave); each stops on
    its own signal, none waits for supervisord's SIGKILL, but for one that
    hung in Airflow's own stop deadlock (deadlocked_in_its_stop_handler,
    shown by the stack it wrote to its log before it was killed)."""
    from lakehouse.platform.services import services

    assert stack.down(airflow_stack)
    log = (airflow_stack.log_dir / "supervisord.log").read_text()
    stopped = re.findall(r"^(\S+ \S+) \w+ stopped: (\S+) \((.*)\)$", log, re.M)
    waves = {s.name: s.stop_wave for s in services(airflow_stack) if s.group in ("core", "airflow")}
    assert sorted(name for _, name, _ in stopped) == sorted(waves), stopped
    for _, name, how in stopped:
        if "SIGKILL" in how:
            text = (airflow_stack.log_dir / f"{name}.log").read_text()
            assert deadlocked_in_its_stop_handler(text), (name, stopped, text[-6000:])
    order = [waves[name] for _, name, _ in sorted(stopped)]
    assert order == sorted(order), stopped
    assert set(order) == {0, 1, 2}
