"""Both streaming queries on a Spark cluster, not in one local JVM: the same
code with SPARK_MASTER=local-cluster[2,1,1024] (Spark's standalone cluster
in miniature: a master, two workers, one executor JVM per worker, the
driver with no task slot of its own). Every task runs in an executor
process: the Kafka reads, the validation UDF in the executors' Python
workers (forked from lakehouse.stream.python_daemon), the Delta data files,
the de-duplication state.

Executors are lost on real clusters (a node fails, a spot instance is taken
back). One executor is killed with SIGKILL while records land; Spark runs its
tasks again on the other one (and the worker starts a replacement), and
bronze, quarantine and realtime must still hold every record exactly once.
"""

from __future__ import annotations

import os
import signal
from datetime import datetime, timezone

import psutil
import pytest

from lakehouse.stream.app import streams_session
from spark_jobs import fast_aggregation, raw_landing
from tests.streams_helpers import (
    assert_bronze_holds_the_well_formed_once,
    assert_quarantine_holds_the_malformed,
    assert_realtime_counts_the_closed_windows,
    consumed,
    messages,
    query_watermark,
    send,
    stream_settings,
    wait_for,
    warmup_split,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MASTER = "local-cluster[2,1,1024]"  # 2 workers, 1 core and 1024 MiB each
N = 2700
START = datetime(2026, 11, 22, 14, 0, tzinfo=timezone.utc)


def executor_processes(app_id: str) -> list[psutil.Process]:
    """This application's executor JVMs (the workers start them as processes of their own)."""
    out = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info["cmdline"] or []
        if any(a.endswith("CoarseGrainedExecutorBackend") for a in cmd) and app_id in cmd:
            out.append(p)
    return out


@pytest.fixture(scope="module")
def run(core_stack, tmp_path_factory):
    """Produce N messages through both queries on the cluster; kill one executor half-way."""
    settings = stream_settings(core_stack, tmp_path_factory.mktemp("cluster"), spark_master=MASTER)
    spark = streams_session(settings, "test-streams-cluster")
    app_id = spark.sparkContext.applicationId
    driver = (spark.conf.get("spark.driver.host"), spark.conf.get("spark.driver.bindAddress"))
    msgs = messages(N, START, seed=13)
    k = warmup_split(msgs)
    queries = [raw_landing.start(spark, settings), fast_aggregation.start(spark, settings)]
    try:
        send(msgs[:k], settings)
        wait_for(lambda: all(consumed(q) >= k for q in queries), 600, "the warm-up batch")
        executors = executor_processes(app_id)
        half = (k + N) // 2
        send(msgs[k:half], settings)
        executors[0].send_signal(signal.SIGKILL)  # as the next batches start (0.5 s triggers)
        send(msgs[half:], settings)
        wait_for(lambda: all(consumed(q) >= N for q in queries), 900, "all records consumed")
        for q in queries:
            assert q.isActive and q.exception() is None, q.exception()
        watermark = query_watermark(queries[1])
        yield settings, msgs, watermark, (executors, executor_processes(app_id), driver)
    finally:
        for q in queries:
            q.stop()
        spark.stop()


def test_the_work_ran_in_executor_processes_and_one_was_replaced(run):
    _, _, _, (before, after, driver) = run
    # every executor is on this machine: the driver listens on loopback (driver_address_conf)
    assert driver == ("127.0.0.1", "127.0.0.1")
    assert len(before) == 2 and all(e.pid != os.getpid() for e in before), before
    killed, survivor = before
    assert not killed.is_running()
    # the worker started a replacement for the killed executor
    assert len(after) == 2 and survivor in after and killed not in after, after


def test_bronze_holds_every_well_formed_record_once(run):
    settings, msgs, _, _ = run
    assert_bronze_holds_the_well_formed_once(settings, msgs)


def test_quarantine_holds_exactly_the_malformed_with_reasons(run):
    settings, msgs, _, _ = run
    assert_quarantine_holds_the_malformed(settings, msgs)


def test_realtime_counts_equal_independent_counts_for_closed_windows(run):
    settings, msgs, watermark, _ = run
    assert_realtime_counts_the_closed_windows(settings, msgs, watermark, START)
