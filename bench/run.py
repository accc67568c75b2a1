"""The benchmark run: one isolated embedded stack, then the phases in order
(broker ceiling, ingest with memory sampling, freshness, batch), each figure
over `config.runs` runs. A phase whose component is missing or fails yields
rows that say "not run: <why>" -- never a made-up number."""

from __future__ import annotations

import math
import shutil
import tempfile
import time
import traceback
from datetime import datetime, timedelta, timezone
from pathlib import Path

from bench import stack_ctl
from bench.config import BenchConfig
from bench.stats import Row, Target, ratio, summarize
from lakehouse.platform import spark_connect

GB = 1e9

#: When, in seconds after the last DAG run of a day, the batch phase samples
#: the idle stack: after one periodic full GC of the Spark JVMs
#: (SPARK_PERIODIC_GC_INTERVAL, 1 min) has had time to run.
IDLE_AFTER_BATCH_S = (75, 95)

#: Paused for the whole benchmark (a scheduled OPTIMIZE and VACUUM).
MAINTENANCE_DAG = "lakehouse_maintenance"
#: Paused for the whole benchmark too: every 15 minutes (BATCH_CATCH_UP_MINUTES)
#: it runs the DAG for each closed date whose bronze changed, and the drain's
#: events land on a closed date (bench.drain.DRAIN_DAY), so in a full run a
#: tick that fell in the drain phase ran a DAG over 1-3M events on the same two
#: cores as the drain it measured (docs/performance.md, session 43). The batch
#: phase triggers its runs itself.
CATCH_UP_DAG = "lakehouse_catch_up"

#: Freshness while a DAG run works: the first event is sent this many seconds
#: after the trigger (the sensor's poke and Airflow's hand-off are over, the
#: run's Spark jobs begin), the last one about when the timed runs ended.
DURING_DAG_LEAD_S = 2.0
#: Days above this many events get one timed DAG run and no freshness-while-
#: running runs (a 20M-event run takes minutes).
BATCH_RUNS_MAX_EVENTS = 5_000_000

TARGETS = {
    "landed": Target(">=", 20_000, "≥ 20,000 events/s"),
    "landed_ratio": Target(">=", 0.6, "≥ 0.6"),
    "complete": Target("<=", 0, "0"),
    "p95": Target("<=", 2.0, "≤ 2 s"),
    "drain": Target(">=", 50_000, "≥ 50,000 events/s"),
    "streams_pss": Target("<=", 1.2, "≤ 1.2 GB"),
    "dag": Target("<=", 60.0, "≤ 60 s (1M events, REST trigger to success)"),
    "dag_floor": Target("<=", 2.0, "≤ 2"),
    "memory": Target("<=", 3.0, "≤ 3 GB"),
}


class NotRun(Exception):
    """A measurement that cannot run here; the message says why."""


def log(msg: str) -> None:
    print(f"[bench {datetime.now(timezone.utc):%H:%M:%S}] {msg}", flush=True)


def load_average() -> list[float]:
    """1/5/15-minute load averages: other work on the machine skews every figure."""
    import os

    return [round(x, 2) for x in os.getloadavg()]


def _nan_safe(values):
    return [v for v in values if not (isinstance(v, float) and math.isnan(v))]


def _summary(values):
    values = _nan_safe(values)
    return summarize(values) if values else None


def memory_rows(names, samples, idle_window, runs) -> list[Row]:
    """Rows of the memory figures from (time, rss, pss, processes) samples.
    Idle: the idle window split in three, the median sample of each third.
    Per ingest run: steady = median sample while producing, peak = max sample
    from start to drained. A sample whose PSS could not be read (a process
    exiting mid-read) is left out of the PSS figures only."""
    def pss(ss):
        return [p / GB for _, _, p, _ in ss if p is not None]

    t0, t1 = idle_window
    third = (t1 - t0) / 3
    idle = [summarize(v).median for v in
            (pss([x for x in samples if t0 + i * third <= x[0] <= t0 + (i + 1) * third]) for i in range(3)) if v]
    steady, peak_pss, peak_rss = [], [], []
    for r in runs:
        during = [x for x in samples if r["t_start"] <= x[0] <= r["t_drained"]]
        producing = [x for x in during if x[0] <= r["t_sent"]] or during
        if pss(producing):
            steady.append(summarize(pss(producing)).median)
        if pss(during):
            peak_pss.append(max(pss(during)))
        if during:
            peak_rss.append(max(x[1] for x in during) / GB)
    nmax = max(x[3] for x in samples)
    return [
        Row(*names[0][:3], _summary(idle), names[0][3],
            f"median sample in each third of the idle window before the first event; {nmax} processes at most"),
        Row(*names[1][:3], _summary(steady), names[1][3], "median sample while producing"),
        Row(*names[2][:3], _summary(peak_pss), names[2][3], "max sample, start to drained"),
        Row(*names[3][:3], _summary(peak_rss), names[3][3], "upper bound: RSS counts shared pages once per process"),
    ]


class Bench:
    def __init__(self, config: BenchConfig, out_dir: Path, keep: bool = False, phases: set[str] | None = None,
                 profile: bool = False):
        self.profile = profile
        self.config = config
        self.out_dir = out_dir
        self.keep = keep
        self.phases = phases or {"ceiling", "ingest", "drain", "freshness", "batch"}
        self.rows: list[Row] = []
        self.details: dict = {}
        self.ceiling: float | None = None
        self.settings = None
        self.run_root = Path(tempfile.mkdtemp(prefix="lakehouse-bench-"))

    # --- helpers ---------------------------------------------------------------
    def _failed(self, phase: str, names: list[tuple[str, str, str, Target | None]], exc: BaseException) -> None:
        why = str(exc) if isinstance(exc, NotRun) else f"failed: {exc.__class__.__name__}: {exc}"
        why = why.replace("|", "/").replace("\n", " ")[:300]
        if not isinstance(exc, NotRun):
            log(f"{phase} failed:\n{traceback.format_exc()}")
        else:
            log(f"{phase}: {why}")
        self.details[phase] = {"not_run": why}
        for section, name, unit, target in names:
            self.rows.append(Row(section, name, unit, None, target, why))

    def _require_programs(self, *names: str) -> None:
        have = stack_ctl.programs(self.settings)
        missing = [n for n in names if n not in have]
        if missing:
            raise NotRun(f"not run: {', '.join(missing)} not registered in lakehouse/platform/services.py")
        states = stack_ctl.states(self.settings)
        down = [n for n in names if states.get(n) != "RUNNING"]
        if down:
            raise NotRun(f"not run: {', '.join(f'{n} is {states.get(n)}' for n in down)} (see {self.settings.log_dir})")

    # --- phases -------------------------------------------------------------------
    def run(self) -> dict:
        started = datetime.now(timezone.utc)
        self.settings = stack_ctl.bench_settings(self.run_root / "run")
        log(f"stack: starting core, airflow and pipeline groups in {self.settings.run_dir}")
        t0 = time.monotonic()
        try:
            stack_ctl.start(self.settings)
            self.details["stack_start_s"] = time.monotonic() - t0
            log(f"stack: up in {self.details['stack_start_s']:.0f}s; programs {stack_ctl.programs(self.settings)}")
            waited = stack_ctl.wait_for_airflow_idle(self.settings)
            self.details["airflow_idle_wait_s"] = waited
            log(f"stack: no DAG run queued or running (waited {waited:.0f}s for the scheduler's own runs)")
            # Its daily run (03:30 UTC) would land in whichever phase runs
            # then (a 1M-event DAG run triggered at 03:30:30 took 70.8 s, its
            # tasks 23 s; docs/performance.md, session 40). Paused only now:
            # a run the scheduler started at start-up (the latest 03:30) would
            # never finish once paused.
            from bench import batch

            batch.set_paused(self.settings, MAINTENANCE_DAG, True)
            log(f"stack: {MAINTENANCE_DAG} paused for the benchmark (it runs daily at 03:30 UTC)")
            batch.set_paused(self.settings, CATCH_UP_DAG, True)
            log(f"stack: {CATCH_UP_DAG} paused for the benchmark (it would run the drain's closed date)")
            self.details["load_average"] = {"start": load_average()}
            for phase, method in (("ceiling", self.phase_ceiling), ("ingest", self.phase_ingest_and_memory),
                                  ("drain", self.phase_drain), ("freshness", self.phase_freshness),
                                  ("batch", self.phase_batch)):
                if phase in self.phases:
                    method()
                    self.details["load_average"][phase] = load_average()
                    log(f"{phase} done; load average {self.details['load_average'][phase]}")
        finally:
            if self.keep:
                log(f"stack left running (--keep): {self.settings.run_dir}")
            else:
                log("stack: stopping and removing the run directory")
                from lakehouse.platform import stack

                for attempt in (1, 2):
                    try:
                        stack.clean(self.settings)
                        break
                    except Exception as exc:  # noqa: BLE001 - a slow stop on a busy machine
                        log(f"stack clean attempt {attempt} failed: {exc}")
                shutil.rmtree(self.run_root, ignore_errors=True)
        return {"started_at": started.isoformat(), "finished_at": datetime.now(timezone.utc).isoformat(),
                "config": self.config.to_dict(), "rows": self.rows, "details": self.details}

    def phase_ceiling(self) -> None:
        names = [("Broker ceiling", "kafka-python alone → broker", "events/s", None)]
        try:
            from bench.ceiling import measure_ceiling, pregenerate

            msgs = pregenerate(self.settings, self.config.ceiling_events)
            runs = []
            for i in range(self.config.runs):
                r = measure_ceiling(self.settings, msgs, f"bench-ceiling-{i}")
                log(f"ceiling run {i + 1}: {r['events_per_s']:,.0f} events/s ({r['events']:,} in {r['seconds']:.1f}s)")
                runs.append(r)
            self.details["ceiling"] = runs
            s = summarize([r["events_per_s"] for r in runs])
            self.ceiling = s.median
            mean_bytes = runs[0]["bytes"] / runs[0]["events"]
            self.rows.append(Row(*names[0][:3], s, None,
                                 f"{self.config.ceiling_events:,} producer messages (mean {mean_bytes:.0f} B), pre-generated"))
        except Exception as exc:  # noqa: BLE001
            self._failed("ceiling", names, exc)

    def phase_ingest_and_memory(self) -> None:
        names = [
            ("Ingest", "producer send rate", "events/s", None),
            ("Ingest", "landed rate into bronze", "events/s", TARGETS["landed"]),
            ("Ingest", "landed / broker ceiling", "", TARGETS["landed_ratio"]),
            ("Ingest", "records missing or duplicated", "", TARGETS["complete"]),
        ]
        mem_names = [
            ("Memory", "stack idle (PSS)", "GB", None),
            ("Memory", "stack steady under ingest (PSS)", "GB", TARGETS["memory"]),
            ("Memory", "stack peak under ingest (PSS)", "GB", TARGETS["memory"]),
            ("Memory", "stack peak under ingest (RSS sum)", "GB", TARGETS["memory"]),
        ]
        from bench.memory import MemorySampler

        sampler = None
        runs: list[dict] = []
        try:
            self._require_programs(*stack_ctl.STREAM_PROGRAMS)
            from bench import ingest

            named = {"broker": stack_ctl.program_pid(self.settings, "broker")} if "broker" in stack_ctl.programs(self.settings) else None
            sampler = MemorySampler(stack_ctl.supervisord_pid(self.settings), 2.0, named).start()
            t_idle = time.time()
            time.sleep(10 if self.config.quick else 20)
            self.details["idle_window"] = (t_idle, time.time())
            ledger = ingest.Ledger()
            ingest.warm_up(self.settings, ledger, max(600.0, self.config.drain_timeout_s), log)
            for i in range(self.config.runs):
                runs.append(ingest.run_once(self.settings, ledger, i, self.config.ingest_seconds,
                                            self.config.drain_timeout_s, log,
                                            profile_dir=self.out_dir / "profiles" if self.profile and i == 0 else None))
        except Exception as exc:  # noqa: BLE001
            if not runs:
                self._failed("ingest", names, exc)
            else:
                log(f"ingest stopped after {len(runs)} runs: {exc!r}")
                self.details["ingest_error"] = repr(exc)
        finally:
            samples = sampler.stop() if sampler else []
        if runs:
            self.details["ingest"] = runs
            rates = [r["landed_rate"] for r in runs]
            note = f"{len(runs)} × {self.config.ingest_seconds:.0f}s at full speed; both streams running"
            if self.profile:
                note += "; run 1 profiled with py-spy"
            self.rows.append(Row(*names[0][:3], _summary([r["producer_rate"] for r in runs]), None, note))
            self.rows.append(Row(*names[1][:3], _summary(rates), names[1][3], "bronze/events Delta commits, steady state"))
            if self.ceiling:
                self.rows.append(Row(*names[2][:3], _summary([ratio(x, self.ceiling) for x in rates]), names[2][3],
                                     "each run's landed rate / median ceiling"))
            else:
                self.rows.append(Row(*names[2][:3], None, names[2][3], "not run: no broker ceiling"))
            errs = [r["completeness"]["errors"] for r in runs]
            self.rows.append(Row(*names[3][:3], summarize(errs), names[3][3],
                                 "(partition, offset) of bronze + quarantine vs the topic, after draining"))
        self._memory_rows(mem_names, samples, runs)

    def _memory_rows(self, names, samples, runs) -> None:
        if not samples or not runs:
            why = self.details.get("ingest", {}).get("not_run") if isinstance(self.details.get("ingest"), dict) else None
            self._failed("memory", names, NotRun(why or "not run: no ingest run to sample"))
            return
        self.details["memory"] = {
            "samples": [(s.t, s.rss, s.pss, s.processes) for s in samples],
            "processes_max": max(s.processes for s in samples),
        }
        self.rows += memory_rows(names, [(s.t, s.rss, s.pss, s.processes) for s in samples],
                                 self.details["idle_window"], runs)
        if any(s.named for s in samples):  # the embedded broker's share of the figures above
            from bench.memory import program_rows

            self.rows += program_rows("broker", samples, self.details["idle_window"], runs)

    def phase_drain(self) -> None:
        n = self.config.drain_events
        names = [
            ("Drain", f"pipeline drain rate, {n:,} pre-loaded events", "events/s", TARGETS["drain"]),
            ("Drain", "floor: plain Spark Kafka → Parquet copy", "events/s", None),
            ("Drain", "drain / floor", "", None),
            ("Drain", "streams application peak (PSS)", "GB", TARGETS["streams_pss"]),
        ]
        try:
            self._require_programs(*stack_ctl.STREAM_PROGRAMS)
            from bench import drain

            runs = []
            for i in range(self.config.runs):
                runs.append(drain.run_once(self.settings, i, n, max(self.config.drain_timeout_s, 900.0),
                                           self.out_dir, log))
            self.details["drain"] = [{k: v for k, v in r.items() if k != "pss_samples"} for r in runs]
            note = ("both queries, no producer; steady state: rows over the durations of each query's batches "
                    "after its first (ops.stream_progress); "
                    f"overall incl. first batch and idle waits: median {summarize([r['drain_rate_overall'] for r in runs]).median:,.0f}/s")
            self.rows.append(Row(*names[0][:3], summarize([r["drain_rate"] for r in runs]), names[0][3], note))
            self.rows.append(Row(*names[1][:3], summarize([r["floor"]["rows_per_s"] for r in runs]), None,
                                 "fresh Spark process, same offsets, read + write timed"))
            self.rows.append(Row(*names[2][:3], summarize([r["ratio"] for r in runs]), None, "per run"))
            self.rows.append(Row(*names[3][:3], _summary([r["pss_peak"] / GB for r in runs if r["pss_peak"]]),
                                 names[3][3], "driver + JVM + Python workers, sampled every 1 s while draining"))
        except Exception as exc:  # noqa: BLE001
            self._failed("drain", names, exc)

    def phase_freshness(self) -> None:
        names = [
            ("Freshness", "send → visible in realtime, p50", "s", None),
            ("Freshness", "send → visible in realtime, p95", "s", TARGETS["p95"]),
            ("Freshness", "send → visible in realtime, p99", "s", None),
            ("Freshness", "events never visible", "", None),
        ]
        try:
            self._require_programs(*stack_ctl.STREAM_PROGRAMS)
            from bench import freshness

            self.details["freshness_settle_s"] = freshness.settle(self.settings, self.config.drain_timeout_s, log)
            runs = []
            for i in range(self.config.runs):
                runs.append(freshness.run_once(self.settings, i, self.config.freshness_seconds, self.config.freshness_rate,
                                               self.config.poll_interval_s, 60.0, log))
            self.details["freshness"] = runs
            if not any(r["visible"] for r in runs):
                raise RuntimeError(f"no event became visible in realtime.events_per_minute in {len(runs)} runs "
                                   "(is the streams program running? see its log)")
            note = (f"{self.config.freshness_rate:,.0f} events/s for {self.config.freshness_seconds:.0f}s per run; "
                    f"poll every {self.config.poll_interval_s * 1000:.0f} ms")
            for (section, name, unit, target), key in zip(names[:3], ("p50", "p95", "p99")):
                self.rows.append(Row(section, name, unit, _summary([r[key] for r in runs]), target, note))
            self.rows.append(Row(*names[3][:3], summarize([r["never_visible"] for r in runs]), None,
                                 "within 60 s after the last send"))
        except Exception as exc:  # noqa: BLE001
            self._failed("freshness", names, exc)

    def phase_batch(self) -> None:
        """The DAG as users run it: triggered through the REST API on the
        running stack, trigger to success, for a 1M-event day (and a 20M-event
        day in the full run), each against the floor on the same Spark."""
        sizes = [self.config.batch_events] + ([] if self.config.quick else [20_000_000])
        for i, n in enumerate(sizes):
            self._batch_day(n, self.config.batch_date + timedelta(days=i))

    def _sampling_programs(self, work):
        """(work(), samples): the stack's memory every 2 s while `work` runs,
        each supervisord program on its own too (what a sample is made of)."""
        from bench.memory import MemorySampler

        named = stack_ctl.program_pids(self.settings)
        sampler = MemorySampler(stack_ctl.supervisord_pid(self.settings), 2.0, named).start()
        try:
            result = work()
        finally:
            samples = sampler.stop()
        return result, samples

    def _idle_after_batch(self, n: int) -> dict:
        """The stack's PSS between IDLE_AFTER_BATCH_S[0] and [1] seconds after
        the last DAG run: what stays resident once a run is over (the Spark
        JVMs give back heap at their periodic full GC)."""
        from bench.memory import median_by_program

        first, last = IDLE_AFTER_BATCH_S
        time.sleep(first)
        _, samples = self._sampling_programs(lambda: time.sleep(last - first))
        pss = [s.pss / 1e9 for s in samples if s.pss]
        by_program = median_by_program(samples)
        log(f"batch {n:,}: stack idle {first}-{last} s after the last run: median "
            f"{summarize(pss).median:.2f} GB PSS; " + ", ".join(f"{p} {v:.2f}" for p, v in by_program.items()))
        return {"pss_gb": pss, "by_program_gb": {p: round(v, 3) for p, v in by_program.items()}}

    def _freshness_during_dag(self, n: int, day, dags: list[dict]) -> list[dict]:
        """`runs` more REST-triggered runs of the day, each while events
        arrive at the freshness rate: realtime's freshness as a user watching
        the dashboard sees it while the daily run works."""
        from bench import batch, freshness

        if "freshness_settle_s" not in self.details:  # the freshness phase settled it already
            freshness.settle(self.settings, self.config.drain_timeout_s, log)
        seconds = max(5.0, summarize([d["wall_s"] for d in dags]).median - DURING_DAG_LEAD_S)
        out = []
        for i in range(self.config.runs):
            d, f = freshness.run_while(self.settings, lambda: batch.rest_once(self.settings, day), 100 + i,
                                       DURING_DAG_LEAD_S, seconds, self.config.freshness_rate,
                                       self.config.poll_interval_s, log)
            log(f"batch {n:,}: run {i + 1} while events land: {d['wall_s']:.1f}s; freshness p50 / p95 / p99 "
                f"{f['p50']:.2f} / {f['p95']:.2f} / {f['p99']:.2f} s; {f['never_visible']} never visible")
            if f["never_visible"] or f["overcounted"]:
                raise RuntimeError(f"freshness while the DAG ran: {f['never_visible']} events never visible, "
                                   f"{f['overcounted']} over-counted")
            out.append({"dag": d, "freshness": f})
        return out

    def _batch_day(self, n: int, day) -> None:
        names = [
            ("Batch", f"DAG via REST, trigger to success, {n:,} events", "s",
             TARGETS["dag"] if n == 1_000_000 else None),
            ("Batch", f"DAG throughput, {n:,} events", "events/s", None),
            ("Batch", f"floor: plain Spark read + write, {n:,} events", "s", None),
            ("Batch", f"DAG / floor, {n:,} events", "", TARGETS["dag_floor"]),
            ("Batch", f"stack peak during the DAG runs (PSS), {n:,} events", "GB", TARGETS["memory"]),
            ("Batch", f"stack idle after the DAG runs (PSS), {n:,} events", "GB", TARGETS["memory"]),
            ("Batch", f"freshness p95 while a DAG run works, {n:,} events", "s", None),
            ("Batch", f"DAG via REST while events land, {n:,} events", "s", None),
        ]
        try:
            if not (Path(__file__).resolve().parent.parent / "dags" / "lakehouse_bronze_to_gold.py").exists():
                raise NotRun("not run: dags/lakehouse_bronze_to_gold.py has not landed")
            from bench import batch

            # The running stack as users have it (scheduler, triggerer, Spark
            # Connect, streams idle: no producer). CATCH_UP_DAG, which would run
            # the day written straight into bronze by itself, is paused since
            # `run` started; the wait below is for the DAG's own daily run
            # (01:00 UTC), the one run left that the benchmark does not trigger.
            if spark_connect.external(self.settings):
                raise NotRun("not run: spark_default is another Spark's (AIRFLOW_CONN_SPARK_DEFAULT); "
                             "the benchmark measures the stack's own")
            self._require_programs(spark_connect.program(self.settings), "airflow-scheduler", "airflow-triggerer")
            stack_ctl.wait_for_airflow_idle(self.settings)
            batch.ensure_stream_progress(self.settings, log)
            runs = 1 if n > BATCH_RUNS_MAX_EVENTS else self.config.runs
            key = f"batch_{n}"
            logs = self.out_dir / "logs"
            logs.mkdir(parents=True, exist_ok=True)
            self.details[f"{key}_write"] = batch.write_day(self.settings, day, n, log, logs / "big_day.log")
            floors, dags = [], []
            for i in range(runs):
                f = batch.floor_once(self.settings, day, self.run_root / f"floor-{n}-{i}", logs / "floor.log")
                log(f"batch {n:,}: floor run {i + 1}: {f['wall_s']:.1f}s wall "
                    f"({f['read_write_s']:.1f}s read+write, {f['rows']:,} rows)")
                floors.append(f)
            from bench.memory import peak_by_program

            for i in range(runs):
                d, samples = self._sampling_programs(lambda: batch.rest_once(self.settings, day))
                d["pss_peak_gb"] = max((s.pss or 0 for s in samples), default=0) / 1e9
                d["pss_peak_by_program_gb"] = {p: round(v, 3) for p, v in peak_by_program(samples).items()}
                log(f"batch {n:,}: REST-triggered run {i + 1}: {d['wall_s']:.1f}s, stack peak "
                    f"{d['pss_peak_gb']:.2f} GB PSS; tasks {d['tasks']}")
                log("  at the peak, GB PSS: " + ", ".join(f"{p} {v:.2f}" for p, v in
                                                        d["pss_peak_by_program_gb"].items()))
                dags.append(d)
            idle_after = self._idle_after_batch(n)
            during, during_error = [], f"not run: {n:,} events is above {BATCH_RUNS_MAX_EVENTS:,} (one timed run)"
            if n <= BATCH_RUNS_MAX_EVENTS:
                try:  # a failure here keeps the timed runs' rows
                    during = self._freshness_during_dag(n, day, dags)
                except Exception as exc:  # noqa: BLE001
                    during_error = f"failed: {exc}"
                    log(f"batch {n:,}: freshness while a DAG run works failed:\n{traceback.format_exc()}")
            self.details[key] = {"floor": floors, "dag": dags, "events": n, "date": day.isoformat(),
                                 "idle_after": idle_after, "during": during}
            fmed = summarize([f["wall_s"] for f in floors]).median
            self.rows.append(Row(*names[0][:3], summarize([d["wall_s"] for d in dags]), names[0][3],
                                 "REST trigger to run success on the running stack"))
            self.rows.append(Row(*names[1][:3], summarize([n / d["wall_s"] for d in dags]), None, ""))
            self.rows.append(Row(*names[2][:3], summarize([f["wall_s"] for f in floors]), None,
                                 "Spark Connect client process: session, read the day's bronze, write Delta"))
            self.rows.append(Row(*names[3][:3], summarize([d["wall_s"] / fmed for d in dags]), names[3][3],
                                 "each DAG run / median floor"))
            self.rows.append(Row(*names[4][:3], summarize([d["pss_peak_gb"] for d in dags]), names[4][3],
                                 "whole stack, max 2 s sample from each trigger to its run's success"))
            self.rows.append(Row(*names[5][:3], summarize(idle_after["pss_gb"]), names[5][3],
                                 f"whole stack, 2 s samples {IDLE_AFTER_BATCH_S[0]}-{IDLE_AFTER_BATCH_S[1]} s "
                                 "after the last run's success: what a user's stack holds between runs"))
            if during:
                self.rows.append(Row(*names[6][:3], _summary([r["freshness"]["p95"] for r in during]), names[6][3],
                                     f"{self.config.freshness_rate:,.0f} events/s from {DURING_DAG_LEAD_S:.0f} s "
                                     "after each trigger to about its run's end (the freshness target is for "
                                     "no DAG running)"))
                self.rows.append(Row(*names[7][:3], summarize([r["dag"]["wall_s"] for r in during]), None,
                                     "the same runs, trigger to success"))
            else:
                for name in names[6:]:
                    self.rows.append(Row(*name[:3], None, None, during_error))
        except Exception as exc:  # noqa: BLE001
            self._failed("batch", names, exc)
