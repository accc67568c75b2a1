"""A Spark JVM of ours gives back the heap a burst of work grew, and keeps
little of its status history.

The Spark Connect server is the DAG's Spark: a 1M-event run grows its heap to
~1 GB, and without a full GC the JVM keeps it committed until the next run
(~1.8 GB PSS between runs, docs/performance.md, session 21). Every Spark JVM
we start runs a full GC every SPARK_PERIODIC_GC_INTERVAL
(spark.cleaner.periodicGC.interval) and, with SPARK_JAVA_OPTIONS' heap
settings, shrinks its heap at that GC. Here a server of the test's own, with
a 5 s interval, sorts a few million strings in one task and must then come
back down within a few of its periodic GCs, without any call from outside.

Spark's status store records every SQL execution, job and stage (plans,
graphs, metrics) whether or not its UI runs, up to 1,000 of each by default;
ours keep the last few (`lakehouse.spark.STATUS_RETENTION`).
"""

from __future__ import annotations

import contextlib
import threading
import time

import pytest

from bench.memory import pss_bytes
from lakehouse.platform import spark_connect
from lakehouse.polling import wait_for
from tests.batch_helpers import connect_session, spark_connect_server
from tests.conftest import make_settings


def pss_mb(pid: int) -> float:
    pss = pss_bytes(pid)
    assert pss is not None, f"no PSS readable in /proc/{pid}/smaps_rollup"
    return pss / 2**20


@pytest.mark.slow
def test_the_spark_connect_server_gives_back_the_heap_a_job_grew(tmp_path):
    settings = make_settings(tmp_path / "run", spark_periodic_gc_interval="5s")
    argv, _ = spark_connect.server_command(settings)
    assert "spark.cleaner.periodicGC.interval=5s" in argv
    assert any("-XX:-ShrinkHeapInSteps" in a and "-XX:MaxHeapFreeRatio=40" in a for a in argv)
    with spark_connect_server(settings) as server, connect_session(spark_connect.url(settings)) as spark:
        spark.range(1).collect()  # the session and its classes, before the baseline
        time.sleep(12)  # two periodic GCs
        baseline = pss_mb(server.pid)
        # one task sorts ~4M random strings on the heap (Spark's sort pages are on-heap);
        # the server's PSS is sampled while it runs: a periodic GC right after the job
        # (a slow machine) may already give part of it back before a sample taken then
        samples, done = [], threading.Event()

        def sample() -> None:
            while not done.is_set():
                samples.append(pss_mb(server.pid))
                done.wait(0.25)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            spark.range(4_000_000, numPartitions=1).selectExpr("uuid() AS u", "repeat('x', 40) AS pad") \
                .sortWithinPartitions("u").write.format("noop").mode("overwrite").save()
        finally:
            done.set()
            sampler.join()
        grown = max(samples + [pss_mb(server.pid)])
        assert grown > baseline + 200, f"the job did not grow the server: {baseline:.0f} -> {grown:.0f} MB PSS"
        deadline, now = time.monotonic() + 40, pss_mb(server.pid)
        while now > baseline + (grown - baseline) / 3 and time.monotonic() < deadline:
            time.sleep(1)
            now = pss_mb(server.pid)
        assert now <= baseline + (grown - baseline) / 3, (
            f"the server kept the heap the job grew: {baseline:.0f} MB PSS before, {grown:.0f} after the job, "
            f"{now:.0f} 40 s later")


def test_spark_keeps_only_the_last_few_executions_jobs_and_stages(spark, tmp_path):
    """Twice as many queries as the status store may keep: it records them
    (the store is not off) and drops the oldest, in a local session as in the
    Spark Connect server (whose command line carries the same settings)."""
    from lakehouse.spark import STATUS_RETENTION

    executions_cap = int(STATUS_RETENTION["spark.sql.ui.retainedExecutions"])
    jobs_cap = int(STATUS_RETENTION["spark.ui.retainedJobs"])
    store = spark._jsparkSession.sharedState().statusStore()
    tracker = spark.sparkContext.statusTracker()
    for i in range(2 * executions_cap):
        assert spark.range(i + 1).count() == i + 1  # one SQL execution, one job or more

    def counts() -> tuple[int, int]:
        return store.executionsCount(), len(tracker.getJobIdsForGroup())

    def within_limits() -> bool:
        executions, jobs = counts()
        return executions <= executions_cap and jobs <= jobs_cap

    # the listener bus applies the limits after each execution's end event;
    # the assertions below say what was kept if it never gets there
    with contextlib.suppress(TimeoutError):
        wait_for(within_limits, 30, "the status store to drop its oldest executions and jobs")
    executions, jobs = counts()
    assert 0 < executions <= executions_cap, f"{executions} SQL executions kept, at most {executions_cap} wanted"
    assert 0 < jobs <= jobs_cap, f"{jobs} jobs kept, at most {jobs_cap} wanted"
    argv, _ = spark_connect.server_command(make_settings(tmp_path / "run"))
    assert all(f"{key}={value}" in argv for key, value in STATUS_RETENTION.items())
