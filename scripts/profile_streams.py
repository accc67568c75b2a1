"""Where the streams application spends CPU and memory: start a private core
stack (PostgreSQL, Apache Kafka), run `python -m spark_jobs.streams` (both queries,
as `make up` runs them), produce N events at full speed, and wait until both
queries have finished them. Prints the CPU seconds each kind of process spent
(JVM, Spark's Python workers, driver) and the peak PSS of each, sampled every
second.

    .venv/bin/python scripts/profile_streams.py 300000
    .venv/bin/python scripts/profile_streams.py 300000 spark_driver_memory=1g stream_max_records_per_batch=200000
    JAVA_TOOL_OPTIONS="-XX:StartFlightRecording=filename=streams.jfr,settings=profile,dumponexit=true" \\
        .venv/bin/python scripts/profile_streams.py 300000   # then: jfr print --events jdk.ExecutionSample streams.jfr

Arguments after N are settings overrides (name=value). This is the
experiment behind the streams' Spark settings (lakehouse.stream.app) and the
streams' sections of docs/performance.md ("Where the streams' memory goes",
"The JVM hands its free C heap back"); `make bench` is the measurement.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil  # noqa: E402

from bench.memory import pss_bytes  # noqa: E402
from lakehouse.platform import stack  # noqa: E402
from lakehouse.platform.isolated import isolated_settings  # noqa: E402
from producer.generator import EventGenerator, GeneratorConfig  # noqa: E402
from producer.sender import produce  # noqa: E402
from tests.streams_helpers import progress_consumed, start_job, stop_job  # noqa: E402


def pss(pid: int) -> int:
    return pss_bytes(pid) or 0


def kind(p: psutil.Process) -> str:
    if "java" in p.name():
        return "JVM"
    cmd = p.cmdline()
    return cmd[-1] if "pyspark" in " ".join(cmd) else "driver (spark_jobs.streams)"


def tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def cpu_seconds(pid: int) -> dict:
    out = {}
    for p in tree(pid):
        try:
            c = p.cpu_times()
            out[(kind(p), p.pid)] = c.user + c.system
        except psutil.Error:
            pass
    return out


def main(n: int, overrides: dict[str, str]) -> None:
    run = Path(tempfile.mkdtemp(prefix="profile-streams-")) / "run"
    settings = isolated_settings(run, **overrides)
    stack.up(settings, groups=("core",))
    try:
        msgs = EventGenerator(GeneratorConfig(oversize_share=0)).messages(n)
        job = start_job("spark_jobs.streams", settings, run.parent / "streams.log")
        peak: dict[str, int] = {}
        totals: list[int] = []
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                try:
                    procs = tree(job.pid)
                except psutil.Error:
                    return
                total = 0
                for p in procs:
                    try:
                        k, v = kind(p), pss(p.pid)
                    except psutil.Error:
                        continue
                    total += v
                    peak[k] = max(peak.get(k, 0), v)
                totals.append(total)
                time.sleep(1)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        time.sleep(25)  # start-up and the first empty batches
        idle = totals[-1]
        before = cpu_seconds(job.pid)
        t0 = time.monotonic()
        produce(msgs, settings)
        t_sent = time.monotonic() - t0
        while min(progress_consumed(settings, q) for q in ("raw-landing", "fast-aggregation")) < n:
            if time.monotonic() - t0 > 600:
                raise TimeoutError("the queries did not finish in 10 minutes; see " + str(run.parent / "streams.log"))
            time.sleep(0.5)
        t_done = time.monotonic() - t0
        after = cpu_seconds(job.pid)
        done.set()
        sampler.join()
        by_kind: dict[str, float] = {}
        for key, seconds in after.items():
            by_kind[key[0]] = by_kind.get(key[0], 0.0) + seconds - before.get(key, 0.0)
        print(f"settings overrides {overrides or '-'}; JAVA_TOOL_OPTIONS {os.environ.get('JAVA_TOOL_OPTIONS', '-')}; "
              f"load average {os.getloadavg()}")
        print(f"sent {n:,} in {t_sent:.1f}s ({n / t_sent:,.0f}/s); both queries done {t_done:.1f}s after the first send")
        print("CPU seconds while producing and draining: "
              + ", ".join(f"{k} {v:.1f}" for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1]) if v >= 0.05))
        print(f"PSS of the application: idle {idle / 1e9:.2f} GB, peak {max(totals) / 1e9:.2f} GB; peak per process:")
        for k, v in sorted(peak.items(), key=lambda kv: -kv[1]):
            print(f"  {v / 1e6:6.0f} MB  {k}")
        stop_job(job)
    finally:
        stack.clean(settings)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    main(int(sys.argv[1]), dict(a.split("=", 1) for a in sys.argv[2:]))
