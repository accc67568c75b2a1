"""A DAG's Spark task that Airflow stops (the UI's "Mark as failed" or
"Clear" on a running task, a timeout) stops its Spark job on the stack's Spark
Connect server (lakehouse.batch.spark_task), and a task process killed outright
leaves no job running for long (the server's detached-operation timeout,
lakehouse.platform.spark_connect). Both with the server program `make up`
runs; a job that only sleeps (in the server's tasks) and then writes stands in
for bronze_to_silver, so the tests cost little CPU."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from datetime import datetime

import pytest

from lakehouse.platform import spark_connect
from tests.batch_helpers import connect_mode_restored, spark_connect_server
from tests.conftest import make_settings

#: Each of the job's two Spark tasks sleeps this long before the write commits.
SLEEP_S = 60


def _slow_write(spark, out: str) -> None:
    (spark.range(0, 2, 1, 2)
     .selectExpr(f"reflect('java.lang.Thread', 'sleep', bigint({SLEEP_S * 1000})) AS slept")
     .write.parquet(out))


def _wait_for_the_write(out, running, timeout: float = 90) -> None:
    """Until the write job has begun (its _temporary directory), while
    `running()` holds; then a second more, so its tasks sleep."""
    deadline = time.monotonic() + timeout
    while not (out / "_temporary").is_dir():
        assert running(), "the job's client ended before its write began"
        assert time.monotonic() < deadline, f"no write job after {timeout} s"
        time.sleep(0.2)
    time.sleep(1)


def _outcome(out, timeout: float) -> str:
    """How the write into `out` ended: "committed" (its _SUCCESS), "aborted"
    (its _temporary directory removed without a commit: a cancelled job's
    abort), or "running" still after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (out / "_SUCCESS").exists():
            return "committed"
        if not (out / "_temporary").exists():
            return "aborted"
        time.sleep(0.5)
    return "running"


def test_a_spark_task_airflow_stops_interrupts_its_spark_job(tmp_path):
    """What Airflow's task runner does on SIGTERM: the operator's on_kill while
    execute still waits on the server. The job is cancelled before its write
    commits, and execute returns (raises) at once instead of after the job."""
    from airflow.sdk import DAG

    from lakehouse.batch.spark_task import pyspark_task

    settings = make_settings(tmp_path / "run")
    out = tmp_path / "out"
    with DAG("spark_task_kill", schedule=None, start_date=datetime(2024, 1, 1)):
        @pyspark_task(task_id="slow", config_kwargs={"spark.remote": spark_connect.url(settings)})
        def slow(spark=None):
            _slow_write(spark, str(out))

        operator = slow().operator

    outcome: dict = {}

    def execute() -> None:
        try:
            operator.execute({})
            outcome["returned"] = True
        except Exception as exc:
            outcome["raised"] = exc
        outcome["at"] = time.monotonic()

    with spark_connect_server(settings), connect_mode_restored():
        runner = threading.Thread(target=execute, daemon=True)
        runner.start()
        _wait_for_the_write(out, runner.is_alive)
        assert "spark" in operator.op_kwargs and runner.is_alive(), outcome
        killed = time.monotonic()
        operator.on_kill()
        runner.join(timeout=SLEEP_S)
        assert not runner.is_alive(), "execute still waits on the job after on_kill"
        assert "OPERATION_CANCELED" in str(outcome.get("raised")), outcome
        assert outcome["at"] - killed < 10, f"execute returned {outcome['at'] - killed:.1f} s after on_kill"
        assert _outcome(out, 30) == "aborted"


CLIENT = """
from pyspark.sql import SparkSession
spark = SparkSession.builder.remote({url!r}).getOrCreate()
(spark.range(0, 2, 1, 2)
 .selectExpr("reflect('java.lang.Thread', 'sleep', bigint({sleep_ms})) AS slept")
 .write.parquet({out!r}))
"""


@pytest.mark.slow
def test_a_killed_spark_client_leaves_no_job_to_commit_after_it(tmp_path):
    """kill -9 of a task's process (no on_kill runs): the server interrupts its
    operation once its response stream has ended and no client reattached
    (lakehouse.platform.spark_connect.DETACHED_TIMEOUT_S), long before the
    job would commit (with Spark's defaults this write committed)."""
    # stopped by then, with 20 s to spare, < when the job (begun before the kill) would commit
    bound = spark_connect.RESPONSE_STREAM_S + spark_connect.DETACHED_TIMEOUT_S + spark_connect.DETACHED_CHECK_S
    assert bound + 20 < SLEEP_S - 5
    settings = make_settings(tmp_path / "run")
    out = tmp_path / "out"
    code = CLIENT.format(url=spark_connect.url(settings), sleep_ms=SLEEP_S * 1000, out=str(out))
    with spark_connect_server(settings):
        client = subprocess.Popen([sys.executable, "-c", code])
        _wait_for_the_write(out, lambda: client.poll() is None)
        client.send_signal(signal.SIGKILL)
        client.wait()
        assert _outcome(out, SLEEP_S) == "aborted"
