"""Drain: how fast both streaming queries work through a pre-loaded topic,
with no producer running, against a plain Spark Kafka-to-Parquet copy of the
same records (bench.stream_floor).

Per run: stop the streams program; produce N events into the topic at full
speed; start the streams program; wait until both queries' progress ends at
the topic's high watermarks. The drain rate is steady state: the records of
every micro-batch after each query's first (which pays the fresh JVM's class
loading, code generation and the Python workers' start, and in raw landing the
compaction every start runs) over those batches' own durations
(ops.stream_progress), the slower query deciding. Durations, not the span from
the first batch's end to the last one's: raw landing starts a batch once
STREAM_MIN_RECORDS_PER_BATCH records wait or STREAM_MAX_BATCH_DELAY_SECONDS
have passed, so the backlog's tail (fewer records than the minimum: 5 of
300,000 split in batches of at most 100,000) waits up to a minute, idle, which
is latency, not work. The overall rate (N from the first batch's start to the
last batch's end, that wait included) is kept too. Meanwhile the
streams program's process tree (driver, JVM, Python workers) is sampled for
PSS every second. Then the floor copies the same offset range in a fresh
Spark process (the streams stopped again, so it has the machine to itself)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from itertools import islice
from pathlib import Path

from bench.ingest import messages, send, wait_streams_caught_up
from bench.kafka_util import high_watermarks
from bench.stack_ctl import program_pid, query, stop_programs
from lakehouse.settings import Settings

PROGRAM = "streams"
#: Drain events carry event times of a fixed past day (never "late" for freshness's later windows).
DRAIN_DAY = datetime(2026, 1, 12, tzinfo=timezone.utc)


def start_streams(settings: Settings) -> None:
    from lakehouse.platform import stack

    stack._proxy(settings).supervisor.startProcess(PROGRAM, True)  # noqa: SLF001 - the platform's client


class PssSampler(threading.Thread):
    """PSS of one program's process tree, every `interval` seconds."""

    def __init__(self, settings: Settings, interval: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.settings, self.interval = settings, interval
        self.samples: list[tuple[float, int]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        from bench.memory import sample_tree

        while not self.stopping.is_set():
            try:
                s = sample_tree(program_pid(self.settings, PROGRAM))
                if s.pss is not None:
                    self.samples.append((s.t, s.pss))
            except Exception:  # noqa: BLE001 - the program is starting or stopping
                pass
            self.stopping.wait(self.interval)

    def stop(self) -> list[tuple[float, int]]:
        self.stopping.set()
        self.join(30)
        return self.samples


def batch_span(settings: Settings, since: float) -> dict:
    """Per query, from its progress rows with input since `since`: first batch
    start, last batch end, rows in all, and rows and summed durations
    (`busy_after_first`, s) of the batches after the first."""
    rows = query(
        settings,
        "SELECT query_name, extract(epoch FROM recorded_at) - duration_ms / 1000.0, "
        "extract(epoch FROM recorded_at), input_rows FROM ops.stream_progress "
        "WHERE recorded_at >= to_timestamp(%s) AND input_rows > 0 ORDER BY query_name, batch_id",
        (since,),
    )
    return span_of(rows)


def span_of(rows) -> dict:
    """batch_span's result from (query, batch start s, batch end s, rows) in batch order."""
    out: dict = {}
    for name, start, end, n in rows:
        q = out.setdefault(name, {"start": float(start), "rows": 0, "rows_after_first": 0, "busy_after_first": 0.0,
                                  "batches": 0})
        q["end"] = float(end)
        q["rows"] += int(n)
        if q["batches"]:
            q["rows_after_first"] += int(n)
            q["busy_after_first"] += float(end) - float(start)
        q["batches"] += 1
    return out


def steady_rate(span: dict) -> float | None:
    """Rows of each query's batches after its first over those batches' summed
    durations (batch_span); the slower query decides. None unless every query
    had a batch after its first."""
    rates = [q["rows_after_first"] / q["busy_after_first"] for q in span.values()
             if q["batches"] > 1 and q["busy_after_first"] > 0]
    return min(rates) if len(rates) == len(span) and rates else None


def run_once(settings: Settings, run: int, events: int, timeout: float, out_dir: Path, log) -> dict:
    stop_programs(settings, [PROGRAM])
    before = high_watermarks(settings, settings.kafka_topic)
    start = DRAIN_DAY + timedelta(hours=run)
    log(f"drain run {run + 1}: streams stopped; pre-loading {events:,} events")
    stats = send(settings, islice(messages(settings, seed=2000 + run, start=start, events_per_second=20_000), events))
    after = high_watermarks(settings, settings.kafka_topic)
    records = sum(after.values()) - sum(before.values())
    sampler = PssSampler(settings)
    t_start = time.time()
    start_streams(settings)
    sampler.start()
    try:
        wait_streams_caught_up(settings, timeout)
    finally:
        samples = sampler.stop()
    t_done = time.time()
    time.sleep(2)  # the listener writes the last progress row asynchronously
    span = batch_span(settings, t_start)
    first = min(s["start"] for s in span.values())
    last = max(s["end"] for s in span.values())
    overall = records / max(last - first, 1e-9)
    steady = steady_rate(span)
    rate = steady if steady is not None else overall
    pss = [p for _, p in samples]
    log(f"drain run {run + 1}: {records:,} records; steady {steady or 0:,.0f}/s, overall {overall:,.0f}/s "
        f"({last - first:.1f}s of batches; {t_done - t_start:.1f}s from program start); "
        f"streams PSS peak {max(pss, default=0) / 1e9:.2f} GB")
    stop_programs(settings, [PROGRAM])
    # The copy is scratch data: it goes to the stack's run directory (removed with
    # the stack), its log next to the results.
    out_dir.mkdir(parents=True, exist_ok=True)
    floor = floor_once(settings, before, after, settings.run_dir / f"drain-floor-{run}", out_dir / "drain-floor.log")
    log(f"drain run {run + 1}: floor (plain Spark Kafka -> Parquet) {floor['rows']:,} rows at "
        f"{floor['rows_per_s']:,.0f}/s ({floor['read_write_s']:.1f}s)")
    start_streams(settings)
    return {
        "records": records, "sent": stats.sent, "t_start": t_start, "t_done": t_done,
        "batches": span, "drain_rate": rate, "drain_rate_overall": overall, "seconds": last - first, "wall_from_start_s": t_done - t_start,
        "pss_peak": max(pss, default=None), "pss_median": sorted(pss)[len(pss) // 2] if pss else None,
        "pss_samples": samples, "floor": floor, "ratio": rate / floor["rows_per_s"],
    }


def floor_once(settings: Settings, start: dict[int, int], end: dict[int, int], out: Path, log_path: Path) -> dict:
    """The plain copy, in a fresh Spark process: returns its JSON line."""
    topic = settings.kafka_topic
    cmd = [sys.executable, "-m", "bench.stream_floor", "--run-dir", str(settings.run_dir), "--out", str(out),
           "--start", json.dumps({topic: {str(p): o for p, o in start.items()}}),
           "--end", json.dumps({topic: {str(p): o for p, o in end.items()}})]
    with open(log_path, "ab") as log:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=log, timeout=900,
                              cwd=Path(__file__).resolve().parent.parent)
    if proc.returncode != 0:
        raise RuntimeError(f"stream floor failed ({proc.returncode}); see {log_path}")
    return json.loads(proc.stdout.decode().strip().splitlines()[-1])
