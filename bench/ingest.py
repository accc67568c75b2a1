"""Ingest: the producer at full speed with both streams running.

Per run: the producer (`producer.sender.produce`, the project's own sending
loop, generating as it sends) runs for a fixed time at full speed; then the
benchmark waits until raw landing has committed every record it sent. The
landed rate is taken from bronze/events' Delta commits between the start and
the drain (rows of batches 2..n over first-to-last commit time, see
stats.steady_rate, without the tail that waited for raw landing's batch delay
after the producer stopped, stats.without_tail); completeness compares bronze
with the topic's offsets."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from itertools import islice

from bench import bronze
from bench.kafka_util import high_watermarks
from bench.stack_ctl import query, wait_for
from bench.stats import steady_rate, without_tail
from lakehouse.settings import Settings

#: Ingest events carry event times of a fixed past day, one hour per run:
#: the realtime watermark stays behind the wall clock, so the freshness runs
#: that follow (event time = now) are never "late".
INGEST_DAY = datetime(2026, 1, 10, tzinfo=timezone.utc)


def messages(settings: Settings, seed: int, start: datetime, events_per_second: float):
    from producer.generator import EventGenerator, GeneratorConfig

    return EventGenerator(
        GeneratorConfig(
            seed=seed,
            start=start,
            events_per_second=events_per_second,
            duplicate_fraction=settings.producer_duplicate_fraction,
            late_fraction=settings.producer_late_fraction,
            malformed_fraction=settings.producer_malformed_fraction,
        )
    ).iter_messages()


def send(settings: Settings, msgs, seconds: float | None = None, rate: float | None = None):
    """Run the producer over `msgs` (for `seconds` when given); fail on any failed send."""
    from producer.sender import produce

    stop = threading.Event()
    timer = None
    if seconds is not None:
        timer = threading.Timer(seconds, stop.set)
        timer.daemon = True
        timer.start()
    try:
        stats = produce(msgs, settings, rate, stop=stop)
    finally:
        if timer is not None:
            timer.cancel()
    if stats.failed:
        raise RuntimeError(f"producer: {stats.failed} sends failed: {stats.errors[:3]}")
    return stats


class Ledger:
    """What was sent to the topic so far, for the drain wait and the completeness check."""

    def __init__(self) -> None:
        self.sent = 0
        self.well_formed = 0

    def add(self, stats) -> None:
        self.sent += stats.sent
        self.well_formed += stats.sent - stats.by_kind.get("malformed", 0)


def wait_landed(settings: Settings, ledger: Ledger, timeout: float) -> float:
    """Block until bronze + quarantine hold as many rows as were sent; returns the time."""
    wait_for(lambda: bronze.landed(settings) >= ledger.sent, timeout,
             f"raw landing to commit {ledger.sent} records", every=0.5)
    return time.time()


def wait_streams_caught_up(settings: Settings, timeout: float) -> None:
    """Block until both queries have finished every record now on the topic:
    each one's latest progress row ends at or past the high watermark of every
    partition (the aggregation may still be working through a backlog, or
    through a long batch, after raw landing finished)."""
    import json

    from spark_jobs import fast_aggregation, raw_landing

    hw = high_watermarks(settings, settings.kafka_topic)
    names = (raw_landing.QUERY_NAME, fast_aggregation.QUERY_NAME)

    def caught_up() -> bool:
        rows = query(
            settings,
            "SELECT query_name, end_offsets FROM ops.stream_latest WHERE query_name = ANY(%s)",
            (list(names),),
        )
        done = {}
        for name, end in rows:
            end = json.loads(end) if isinstance(end, str) else end
            done[name] = {int(p): int(o) for p, o in end.get(settings.kafka_topic, {}).items()}
        return len(done) == len(names) and all(
            done[n].get(p, 0) >= o for n in names for p, o in hw.items())

    wait_for(caught_up, timeout, "both queries to finish every record on the topic", every=1.0)


def warm_up(settings: Settings, ledger: Ledger, timeout: float, log) -> None:
    """A small first load so Spark sessions, Python workers and tables exist
    before the clock runs."""
    log("ingest: warm-up (5,000 events) until both streams have committed them")
    msgs = islice(messages(settings, seed=99, start=INGEST_DAY - timedelta(hours=1), events_per_second=5000), 5000)
    ledger.add(send(settings, msgs))
    wait_landed(settings, ledger, timeout)
    wait_streams_caught_up(settings, timeout)


def run_once(settings: Settings, ledger: Ledger, run: int, seconds: float, timeout: float, log,
             profile_dir=None) -> dict:
    start = INGEST_DAY + timedelta(hours=run)
    log(f"ingest run {run + 1}: producer at full speed for {seconds:.0f}s")
    spies = _start_profiles(settings, seconds, profile_dir, log) if profile_dir else {}
    t_start = time.time()
    stats = send(settings, messages(settings, seed=1000 + run, start=start, events_per_second=20_000), seconds)
    t_sent = time.time()
    ledger.add(stats)
    t_drained = wait_landed(settings, ledger, timeout)
    batches = bronze.commits(settings, t_start, t_drained + 1)
    landed_rate = steady_rate(without_tail(batches, settings.stream_min_records_per_batch))
    overall = sum(rows for _, rows in batches) / max(t_drained - t_start, 1e-9)
    log(f"ingest run {run + 1}: sent {stats.sent:,} at {stats.rate:,.0f}/s; landed {landed_rate:,.0f} rows/s "
        f"over {len(batches)} commits; drained {t_drained - t_sent:.1f}s after the producer stopped")
    profiles = _finish_profiles(spies)
    hw = high_watermarks(settings, settings.kafka_topic)
    check = bronze.completeness(settings, hw, ledger.well_formed)
    log(f"ingest run {run + 1}: completeness {'exact' if check['exact'] else 'NOT EXACT'}: {check}")
    wait_streams_caught_up(settings, timeout)
    return {
        "t_start": t_start,
        "t_sent": t_sent,
        "t_drained": t_drained,
        "t_caught_up": time.time(),
        "sent": stats.sent,
        "by_kind": dict(stats.by_kind),
        "producer_rate": stats.rate,
        "producer_seconds": stats.elapsed_s,
        "landed_rate": landed_rate,
        "landed_rate_overall": overall,  # all rows of the run / (drained - start), idle gaps included
        "batches": batches,
        "drain_seconds": t_drained - t_sent,
        "completeness": check,
        "profiles": profiles,
    }


def _start_profiles(settings: Settings, seconds: float, profile_dir, log) -> dict:
    from bench import profile
    from bench.stack_ctl import STREAM_PROGRAMS, program_pid

    if profile.py_spy() is None:
        log("profile: py-spy not found; not profiling")
        return {}
    spies = {name: profile.start_tree(program_pid(settings, name), seconds, profile_dir, name)
             for name in STREAM_PROGRAMS}
    log(f"profile: py-spy sampling {sum(map(len, spies.values()))} Python processes of "
        f"{', '.join(spies)} for {seconds:.0f}s into {profile_dir}")
    return spies


def _finish_profiles(spies: dict) -> dict:
    from bench import profile

    out = {}
    for name, procs in spies.items():
        for proc, _ in procs:
            try:
                proc.wait(timeout=60)
            except Exception:  # noqa: BLE001
                proc.kill()
        paths = [path for _, path in procs]
        out[name] = {"raw": [str(p) for p in paths], "summary": profile.summarize_many(paths)}
    return out
