"""Freshness: the time from an event's send to its count being visible in
PostgreSQL `realtime.events_per_minute`, at a steady 1,000 events/s.

Exact by construction: the run's events carry event time = now (one-minute
windows no earlier run touched, since ingest uses a past day), no duplicates,
no late or malformed ones, so each (window_start, event_type) count rises by
exactly one per event of that key. The benchmark records when each event was
handed to the client; a probe thread polls the table every 100 ms. The k-th
event of a key is visible at the first poll whose count reaches
baseline + k (stats.visibility_latencies). Resolution: the poll period."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from itertools import islice

import psycopg2

from bench.ingest import send, wait_streams_caught_up
from bench.stats import percentile, visibility_latencies
from lakehouse.settings import Settings

SQL = "SELECT window_start, event_type, event_count FROM realtime.events_per_minute WHERE window_start >= %s"


def _key(event: dict) -> tuple[datetime, str]:
    ts = datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))
    return ts.replace(second=0, microsecond=0), event["event_type"]


class Probe(threading.Thread):
    """Polls the per-minute counts of windows from `since` on."""

    def __init__(self, settings: Settings, since: datetime, interval: float) -> None:
        super().__init__(daemon=True)
        self.conn = psycopg2.connect(settings.pg_dsn("reader"))
        self.conn.autocommit = True
        self.since = since
        self.interval = interval
        self.polls: list[tuple[float, dict]] = []
        self.stopping = threading.Event()

    def read(self) -> tuple[float, dict]:
        with self.conn.cursor() as cur:
            cur.execute(SQL, (self.since,))
            rows = cur.fetchall()
        return time.time(), {(w, t): c for w, t, c in rows}

    def run(self) -> None:
        while not self.stopping.is_set():
            t0 = time.monotonic()
            self.polls.append(self.read())
            self.stopping.wait(max(0.0, self.interval - (time.monotonic() - t0)))

    def stop(self) -> None:
        self.stopping.set()
        self.join(10)
        self.conn.close()


def run_once(settings: Settings, run: int, seconds: float, rate: float, interval: float, timeout: float, log) -> dict:
    from producer.generator import EventGenerator, GeneratorConfig

    n = int(seconds * rate)
    start = datetime.now(timezone.utc)
    gen = EventGenerator(GeneratorConfig(seed=5000 + run, start=start, events_per_second=rate,
                                         duplicate_fraction=0.0, late_fraction=0.0, malformed_fraction=0.0))
    since = start.replace(second=0, microsecond=0)
    probe = Probe(settings, since, interval)
    _, baseline = probe.read()
    sends: dict[tuple, list[float]] = defaultdict(list)

    def timed(msgs):
        # the send loop asks for message i+1 right after handing message i to
        # the client: that moment is message i's send time
        for m in msgs:
            yield m
            sends[_key(m.event)].append(time.time())

    log(f"freshness run {run + 1}: {n:,} events at {rate:,.0f}/s, probing every {interval * 1000:.0f} ms")
    probe.start()
    try:
        stats = send(settings, timed(islice(gen.iter_messages(), n)), rate=rate)
        expected = {k: baseline.get(k, 0) + len(v) for k, v in sends.items()}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            last = probe.polls[-1][1] if probe.polls else {}
            if all(last.get(k, 0) >= c for k, c in expected.items()):
                break
            time.sleep(interval)
    finally:
        probe.stop()
    latencies: list[float] = []
    missing = 0
    for k, times in sends.items():
        polls = [(t, counts.get(k, 0)) for t, counts in probe.polls]
        lat, miss = visibility_latencies(times, polls, baseline.get(k, 0))
        latencies += lat
        missing += miss
    over = sum(max(0, probe.polls[-1][1].get(k, 0) - c) for k, c in expected.items()) if probe.polls else 0
    result = {
        "events": stats.sent,
        "send_rate": stats.rate,
        "keys": len(sends),
        "polls": len(probe.polls),
        "visible": len(latencies),
        "never_visible": missing,
        "overcounted": over,
        "p50": percentile(latencies, 50) if latencies else float("nan"),
        "p95": percentile(latencies, 95) if latencies else float("nan"),
        "p99": percentile(latencies, 99) if latencies else float("nan"),
        "max": max(latencies) if latencies else float("nan"),
    }
    log(f"freshness run {run + 1}: p50 {result['p50']:.2f}s p95 {result['p95']:.2f}s p99 {result['p99']:.2f}s; "
        f"{missing} never visible, {over} over-counted")
    return result


def run_while(settings: Settings, work, run: int, lead: float, seconds: float, rate: float, interval: float,
              log) -> tuple[object, dict]:
    """(work(), freshness): `run_once` while `work` (a DAG run triggered
    through the REST API) runs in a thread started `lead` seconds before the
    first send: what the dashboard shows while the DAG's Spark jobs share the
    machine (and, with SPARK_CONNECT_IN_STREAMS, the streams' JVM) with the
    micro-batches. An error of `work` is raised after the measurement."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="work") as pool:
        pending = pool.submit(work)
        time.sleep(lead)
        fresh = run_once(settings, run, seconds, rate, interval, 60.0, log)
        return pending.result(), fresh


def settle(settings: Settings, timeout: float, log) -> float:
    """Bring the aggregation's event time to now before measuring; returns the
    seconds it took. The ingest phase's events are backdated (a fixed past
    day), so the first batch that sees a current event moves the watermark by
    days and evicts the whole de-duplication state at once (millions of keys
    after a full ingest phase). That one-off batch belongs to neither phase:
    it is timed and reported (details.freshness_settle_s), not measured as
    freshness."""
    from producer.generator import EventGenerator, GeneratorConfig

    t0 = time.monotonic()
    gen = EventGenerator(GeneratorConfig(seed=4999, start=datetime.now(timezone.utc), events_per_second=1000,
                                         duplicate_fraction=0.0, late_fraction=0.0, malformed_fraction=0.0))
    send(settings, islice(gen.iter_messages(), 2000), rate=1000)
    wait_streams_caught_up(settings, timeout)
    took = time.monotonic() - t0
    log(f"freshness: settled in {took:.1f}s (2,000 current events; the watermark leaves the ingest day)")
    return took
