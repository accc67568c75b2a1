"""Crash and outage recovery of the streaming jobs, run as subprocesses the
way the process manager runs them: kill -9 of the streams application
mid-stream then restart, and kill -9 plus a PostgreSQL outage during fast
aggregation (run alone, so its log and timing are its own)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import datetime, timezone

import psutil
import pytest

from lakehouse.platform import stack
from tests.conftest import make_settings
from tests.streams_helpers import (
    closed,
    delta_rows,
    expected_realtime,
    final_watermark,
    kill_job,
    messages,
    progress_consumed,
    realtime_rows,
    send,
    start_job,
    stop_job,
    stream_settings,
    wait_for,
    warmup_split,
    well_formed,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def bronze_keys(settings):
    return [(r["kafka_topic"], r["kafka_partition"], r["kafka_offset"]) for r in delta_rows(settings, "events")]


def jvm_args(pid: int) -> list[str]:
    """The command line of the JVM that the job's Python process started."""
    jvms = [p for p in psutil.Process(pid).children(recursive=True) if p.name() == "java"]
    assert len(jvms) == 1, jvms
    return jvms[0].cmdline()


def test_streams_app_kill_9_and_restart_loses_and_duplicates_nothing(core_stack, tmp_path):
    """The `streams` program (both queries in one Spark application), as the
    process manager runs it: kill -9 mid-stream, restart, then a graceful stop."""
    settings = stream_settings(core_stack, tmp_path, stream_max_records_per_batch=500)
    msgs = messages(3000, datetime(2026, 11, 20, 10, 0, tzinfo=timezone.utc), seed=11)
    send(msgs, settings)
    want = len(well_formed(msgs))
    log = tmp_path / "streams.log"

    job = start_job("spark_jobs.streams", settings, log)
    try:
        wait_for(lambda: len(bronze_keys(settings)) >= 1000, 240, "some batches landed", every=0.2)
        args = jvm_args(job.pid)
    finally:
        kill_job(job)
    # STREAMS_JAVA_OPTIONS reach the program's JVM, after SPARK_JAVA_OPTIONS
    assert settings.streams_java_options == "-XX:MinHeapFreeRatio=10"
    assert args.index("-XX:MinHeapFreeRatio=10") > args.index("-XX:MaxHeapFreeRatio=40")
    landed = len(bronze_keys(settings))
    assert landed < want, "the kill came too late to test anything"

    job = start_job("spark_jobs.streams", settings, log)
    try:
        wait_for(lambda: len(bronze_keys(settings)) >= want, 240, "all records landed")
        wait_for(lambda: len(delta_rows(settings, "quarantine")) >= len(msgs) - want, 60, "quarantine")
        wait_for(lambda: progress_consumed(settings, "fast-aggregation") >= len(msgs), 120, "fast aggregation")
    finally:
        assert stop_job(job) == 0, log.read_text()[-3000:]
    text = log.read_text()
    assert "query raw-landing stopped" in text and "query fast-aggregation stopped" in text
    # the log says what happens, not every micro-batch (lakehouse.stream.app.quiet_logs): before,
    # py4j's "Received command c on object id p0" and Spark's "Current batch is falling behind"
    # (fast aggregation's first batches take longer than its 0.5 s trigger) made most of its lines
    assert "Received command" not in text and "falling behind" not in text

    keys = bronze_keys(settings)
    assert len(keys) == len(set(keys)) == want
    assert Counter(r["event_id"] for r in delta_rows(settings, "events")) == Counter(
        m.event["event_id"] for m in well_formed(msgs)
    )
    quarantine = [(r["kafka_partition"], r["kafka_offset"]) for r in delta_rows(settings, "quarantine")]
    assert len(quarantine) == len(set(quarantine)) == len(msgs) - want


def _run_fast_aggregation(settings, msgs, tmp_path, disrupt) -> None:
    """Warm-up batch, then the rest paced so the query is mid-stream when
    `disrupt(job) -> job` runs; waits until every record is processed."""
    log = tmp_path / "fast-aggregation.log"
    k = warmup_split(msgs)
    job = start_job("spark_jobs.fast_aggregation", settings, log)
    try:
        send(msgs[:k], settings)
        wait_for(lambda: progress_consumed(settings, "fast-aggregation") >= k, 240, "the warm-up batch")
        sender = threading.Thread(target=send, args=(msgs[k:], settings, 150.0))
        sender.start()
        job = disrupt(job, log)
        sender.join()
        wait_for(lambda: progress_consumed(settings, "fast-aggregation") >= len(msgs), 300, "all records")
        assert job.poll() is None, "the query died"
    finally:
        code = stop_job(job) if job.poll() is None else job.returncode
    assert code == 0, log.read_text()[-3000:]


def _assert_realtime_exact(settings, msgs, start):
    watermark = final_watermark(msgs, settings.realtime_watermark_minutes)
    want = closed(expected_realtime(msgs), watermark, start)
    assert len(want["events_per_minute"]) >= 8
    got = closed(realtime_rows(settings), watermark, start)
    diff = {t: {k: (got[t].get(k), want[t].get(k)) for k in set(got[t]) | set(want[t]) if got[t].get(k) != want[t].get(k)}
            for t in want}
    assert got == want, f"(got, want) per differing key: {diff}; watermark {watermark}"


@pytest.fixture
def own_stack(tmp_path):
    """A core stack of its own: this test stops its PostgreSQL."""
    settings = make_settings(tmp_path / "stack")
    try:
        stack.up(settings, groups=("core",))
        yield settings
    finally:
        stack.clean(settings)


def test_fast_aggregation_kill_9_restart_and_postgresql_outage(own_stack, tmp_path):
    """One run, two disruptions: kill -9 mid-stream and a restart, then
    PostgreSQL stopped for 30 s. The realtime rows must equal those an
    uninterrupted run gives (the counts computed from what was produced)."""
    settings = stream_settings(own_stack, tmp_path / "streams")
    start = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)
    msgs = messages(2700, start, seed=13)
    supervisor = stack._proxy(own_stack).supervisor

    def crash_then_outage(job, log):
        wait_for(lambda: progress_consumed(settings, "fast-aggregation") >= 800, 240, "mid-stream", every=0.2)
        kill_job(job)
        job = start_job("spark_jobs.fast_aggregation", settings, log)
        wait_for(lambda: progress_consumed(settings, "fast-aggregation") >= 1600, 240, "restarted", every=0.2)
        supervisor.stopProcess("postgres")
        time.sleep(30)
        assert job.poll() is None, "the query died during the outage"
        supervisor.startProcess("postgres")
        return job

    _run_fast_aggregation(settings, msgs, tmp_path, crash_then_outage)
    _assert_realtime_exact(settings, msgs, start)
    assert "Retrying" in (tmp_path / "fast-aggregation.log").read_text()
