"""A DAG's Spark task that Airflow stops (the UI's "Mark as failed" or
"Clear" on a running task, its execution_timeout) stops its Spark job on the
stack's Spark Connect server (lakehouse.batch.spark_task), a task past its
timeout ends even when the server does not answer, a task whose server
restarts under it fails with an error that says so, and a task process killed
outright leaves no job running for long (the server's detached-operation
timeout, lakehouse.platform.spark_connect). All with the server program `make
up` runs; a job that only sleeps (in the server's tasks) and then writes
stands in for bronze_to_silver, so the tests cost little CPU."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from lakehouse.batch.spark_task import SERVER_WAIT_S, server_lost
from lakehouse.platform import airflow, spark_connect
from tests.batch_helpers import spark_connect_log, spark_connect_server
from tests.conftest import make_settings

#: How long each of the job's two Spark tasks sleeps before the write commits.
SLEEP_S = 60

#: The job, in the scripts below: a Delta write (what bronze_to_silver commits)
#: whose two Spark tasks sleep first; the client prints "running" once they run.
WRITE = """
def write(spark):
    def progress(inflight_tasks, **_):
        if inflight_tasks:
            print("running", flush=True)

    spark.registerProgressHandler(progress)
    (spark.range(0, 2, 1, 2)
     .selectExpr("reflect('java.lang.Thread', 'sleep', bigint({sleep_ms})) AS slept")
     .write.format("delta").save({out!r}))
"""


def _running(proc: subprocess.Popen) -> None:
    """Until the script's job runs on the server (its first "running"; other
    lines are Airflow's log)."""
    for line in proc.stdout:
        if line.strip() == "running":
            return
    raise AssertionError(f"the job did not start (exit {proc.wait()})")


def _cancelled(server_log, timeout: float) -> bool:
    """Whether the server cancelled the job's tasks within `timeout` seconds
    (its log's `TaskKilled (Stage cancelled: [SPARK_JOB_CANCELLED] ...` line)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if "SPARK_JOB_CANCELLED" in server_log.read_text():
            return True
        time.sleep(0.5)
    return False


def _start(code: str, settings) -> subprocess.Popen:
    """One of the scripts below in a process of its own (a Spark Connect
    session cannot start in a pytest worker that holds a classic one), with a
    task's environment under `make up`: `spark_default` is the stack's Spark
    Connect server (AIRFLOW_CONN_SPARK_DEFAULT). Its output and Airflow's log
    in one text pipe."""
    env = {**os.environ, "AIRFLOW_CONN_SPARK_DEFAULT": airflow.environment(settings)["AIRFLOW_CONN_SPARK_DEFAULT"]}
    # -u: its lines as they come, whatever PYTHONUNBUFFERED says (a script whose threads hang
    # at exit never flushed its "raised ..." line where the variable was unset)
    return subprocess.Popen([sys.executable, "-u", "-c", code], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _raised(said: str) -> str:
    """The script's own `raised ...` line in its output ("" if none): not a
    line of Airflow's log that happens to contain the word."""
    return next((line for line in said.splitlines() if line.startswith("raised")), "")


def _committed(out) -> bool:
    """Whether the write committed: a version in the Delta table's log."""
    return any((out / "_delta_log").glob("*.json"))


TASK = WRITE + """
import signal
from datetime import datetime

from airflow.sdk import DAG
from lakehouse.batch.spark_task import pyspark_task

with DAG("spark_task_kill", schedule=None, start_date=datetime(2024, 1, 1)):
    @pyspark_task(task_id="slow")  # on spark_default, as the DAGs' tasks
    def slow(spark=None):
        write(spark)

    operator = slow().operator

# what Airflow's task runner does on SIGTERM (airflow.sdk.execution_time.task_runner)
signal.signal(signal.SIGTERM, lambda signum, frame: operator.on_kill())
try:
    operator.execute({{}})
    print("returned")
except Exception as exc:
    print("raised", exc)
"""


def test_a_spark_task_airflow_stops_interrupts_its_spark_job(tmp_path):
    """A task process as Airflow runs one (execute in the main thread, on_kill
    on SIGTERM), sent SIGTERM while its Spark job runs: the job is cancelled
    and never commits, and execute ends at once instead of after the job."""
    settings = make_settings(tmp_path / "run")
    out = tmp_path / "out"
    code = TASK.format(sleep_ms=SLEEP_S * 1000, out=str(out))
    with spark_connect_server(settings):
        task = _start(code, settings)
        try:
            _running(task)
            killed = time.monotonic()
            task.send_signal(signal.SIGTERM)
            said, _ = task.communicate(timeout=SLEEP_S)
            took = time.monotonic() - killed
        finally:
            task.kill()
        assert "OPERATION_CANCELED" in _raised(said), said[-3000:]
        assert took < 10, f"the task ended {took:.1f} s after SIGTERM"
        assert _cancelled(spark_connect_log(settings), 30), "the server did not cancel the job"
        assert not _committed(out), "the stopped task's write committed"


TIMED = WRITE + """
from datetime import datetime, timedelta

from airflow.sdk import DAG
from airflow.sdk.execution_time.task_runner import _run_execute_callable
from lakehouse.batch.spark_task import pyspark_task

with DAG("spark_task_timeout", schedule=None, start_date=datetime(2024, 1, 1)):
    @pyspark_task(task_id="slow", execution_timeout=timedelta(seconds={timeout_s}))
    def slow(spark=None):
        write(spark)

    operator = slow().operator

# Airflow's task runner: execute under the task's execution_timeout, on_kill when it expires
try:
    _run_execute_callable({{}}, operator.execute, operator)
    print("returned")
except BaseException as exc:  # AirflowTaskTimeout is one, so that no task's `except Exception` swallows it
    print("raised", type(exc).__name__, exc)
"""


def test_a_spark_task_past_its_execution_timeout_stops_its_spark_job(tmp_path):
    """A task past its execution_timeout (the DAGs' BATCH_TASK_TIMEOUT_MINUTES),
    run by Airflow's own task-runner function: the timeout interrupts the wait
    on the server, the job is cancelled and never commits, and the task ends
    with AirflowTaskTimeout (which Airflow retries) at its timeout, not at the
    job's end."""
    timeout_s = 30
    assert timeout_s + 20 < SLEEP_S
    settings = make_settings(tmp_path / "run")
    out = tmp_path / "out"
    code = TIMED.format(sleep_ms=SLEEP_S * 1000, out=str(out), timeout_s=timeout_s)
    with spark_connect_server(settings):
        started = time.monotonic()
        task = _start(code, settings)
        try:
            _running(task)
            said, _ = task.communicate(timeout=SLEEP_S)
            took = time.monotonic() - started
        finally:
            task.kill()
        assert "raised AirflowTaskTimeout" in said, said[-3000:]
        assert took < timeout_s + 15, f"the task ended {took:.1f} s after it started"
        assert "this task's Spark session has ended" in said, said[-3000:]  # on_kill, after the operator's stop
        assert _cancelled(spark_connect_log(settings), 30), "the server did not cancel the job"
        assert not _committed(out), "the timed-out task's write committed"


def test_a_spark_task_past_its_timeout_ends_when_the_server_does_not_answer(tmp_path):
    """The case the DAGs' timeout is for: a server that hangs (here frozen with
    SIGSTOP while the job runs). The timeout's exception comes, the session's
    release waits at most SERVER_WAIT_S for the server, on_kill asks it
    nothing more, and the task ends with AirflowTaskTimeout, which Airflow
    retries. (pyspark's gRPC calls have no deadline: before, the release
    waited for ever, and the task with it.) What is left behind in the process
    (pyspark's threads still waiting on the server) is Airflow's to end: its
    supervisor kills a task process that lingers after reporting its state
    (task_success_overtime)."""
    timeout_s = 20
    settings = make_settings(tmp_path / "run")
    code = TIMED.format(sleep_ms=SLEEP_S * 1000, out=str(tmp_path / "out"), timeout_s=timeout_s)
    with spark_connect_server(settings) as server:
        started = time.monotonic()
        task = _start(code, settings)
        lines = []
        bound = timeout_s + SERVER_WAIT_S + 15
        watchdog = threading.Timer(bound + 45, task.kill)  # a task that never ends fails the asserts below
        try:
            _running(task)
            os.killpg(server.pid, signal.SIGSTOP)
            watchdog.start()
            for line in task.stdout:
                lines.append(line)
                if line.startswith("raised"):
                    break
            took = time.monotonic() - started
        finally:
            watchdog.cancel()
            os.killpg(server.pid, signal.SIGCONT)
            task.kill()
        said = "".join(lines)
        assert "raised AirflowTaskTimeout" in said, said[-3000:]
        assert "did not answer the session's release" in said, said[-3000:]
        assert took < bound, f"the task ended {took:.1f} s after it started"


@pytest.mark.slow
def test_a_spark_task_whose_server_restarts_under_it_fails_with_an_error_naming_the_server(tmp_path):
    """kill -9 of the server while a task's job runs, and a new server on the
    same port (what the process manager does): pyspark's client reattaches to
    a server without the task's session and fails with
    `[RESPONSE_ALREADY_RECEIVED] INVALID_HANDLE.SESSION_NOT_FOUND`; the task
    fails with SparkServerLost, which names the connection and where to look,
    and keeps pyspark's error as its cause. Nothing commits."""
    settings = make_settings(tmp_path / "run")
    out = tmp_path / "out"
    code = TIMED.format(sleep_ms=SLEEP_S * 1000, out=str(out), timeout_s=900)
    with spark_connect_server(settings) as first:
        task = _start(code, settings)
        try:
            _running(task)
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
            with spark_connect_server(settings):
                said, _ = task.communicate(timeout=300)
        finally:
            task.kill()
    raised = _raised(said)
    assert raised.startswith("raised SparkServerLost"), said[-3000:]
    assert "'spark_default' went away" in raised and "make logs SERVICE=spark-connect" in raised, raised
    assert "RESPONSE_ALREADY_RECEIVED" in raised, raised  # pyspark's error, kept
    assert not _committed(out), "a write committed"


def test_server_lost_tells_a_server_gone_from_the_tasks_own_errors():
    """Pure: the errors pyspark gives when the server went away (seen with the
    stack's server killed, restarted, or out of memory; validate_silver's
    when Great Expectations caught them) against those of the task's own
    work and of its on_kill's interrupt."""
    import grpc
    from airflow.sdk.exceptions import AirflowFailException
    from pyspark.errors import AnalysisException, PySparkRuntimeError
    from pyspark.errors.exceptions.connect import SparkConnectException, SparkConnectGrpcException, UnknownException

    from lakehouse.batch.quality import ValidationNotRun

    gone = [
        PySparkRuntimeError(errorClass="RESPONSE_ALREADY_RECEIVED",
                            messageParameters={"error_type": "INVALID_HANDLE.SESSION_NOT_FOUND"}),
        SparkConnectException(errorClass="NO_ACTIVE_SESSION", messageParameters={}),
        SparkConnectGrpcException("Stream removed (RST_STREAM)", grpc_status_code=grpc.StatusCode.CANCELLED),
        SparkConnectGrpcException("failed to connect to all addresses", grpc_status_code=grpc.StatusCode.UNAVAILABLE),
        UnknownException("(java.lang.IllegalStateException) Cannot call methods on a stopped SparkContext.",
                         grpc_status_code=grpc.StatusCode.INTERNAL),
        ValidationNotRun("Great Expectations could not evaluate 9 expectation(s) of silver for 2026-11-20: ...: "
                         "[NO_ACTIVE_SESSION] No active Spark session found. (expect_table_row_count_to_be_between)"),
    ]
    own = [
        UnknownException("[OPERATION_CANCELED] Operation has been canceled.", errorClass="OPERATION_CANCELED",
                         messageParameters={}, grpc_status_code=grpc.StatusCode.INTERNAL),
        AnalysisException("[TABLE_OR_VIEW_NOT_FOUND] The table or view `x` cannot be found."),
        ValueError("event_date parameter '2026-13-45' is not a date"),
        ValidationNotRun("Great Expectations could not evaluate 1 expectation(s) of silver for 2026-11-20: ...: "
                         "[USER_RAISED_EXCEPTION] boom SQLSTATE: P0001 (expect_column_values_to_be_between(user_id))"),
        # a failed gate quotes the data, which may hold anything
        AirflowFailException("silver for 2026-11-20 failed 1 critical expectation(s): expect_column_values_to_be_in_set"
                             "(event_type): 1 of 3 rows unexpected, e.g. ['[NO_ACTIVE_SESSION]']"),
    ]
    assert [server_lost(e) for e in gone] == [True] * len(gone)
    assert [server_lost(e) for e in own] == [False] * len(own)


CLIENT = WRITE + """
from pyspark.sql import SparkSession

write(SparkSession.builder.remote({url!r}).getOrCreate())
"""


@pytest.mark.slow
def test_a_killed_spark_client_leaves_no_job_to_commit_after_it(tmp_path):
    """kill -9 of a task's process (no on_kill runs): the server cancels its
    operation once its response stream has ended and no client reattached
    (lakehouse.platform.spark_connect.DETACHED_TIMEOUT_S), long before the
    job would commit (with Spark's defaults this write committed)."""
    # cancelled by then, with 20 s to spare, < when the job (begun before the kill) would commit
    bound = spark_connect.RESPONSE_STREAM_S + spark_connect.DETACHED_TIMEOUT_S + spark_connect.DETACHED_CHECK_S
    assert bound + 20 < SLEEP_S
    settings = make_settings(tmp_path / "run")
    out = tmp_path / "out"
    code = CLIENT.format(url=spark_connect.url(settings), sleep_ms=SLEEP_S * 1000, out=str(out))
    with spark_connect_server(settings):
        client = _start(code, settings)
        _running(client)
        client.send_signal(signal.SIGKILL)
        client.wait()
        assert _cancelled(spark_connect_log(settings), bound + 20), f"the server did not cancel the job within {bound + 20} s"
        assert not _committed(out), "the killed client's write committed"
