"""A chaos run: the stack of `make up` in a run directory of its own, the
producer at load with duplicates, late and malformed events, the seeded
fault schedule (lakehouse.chaos.schedule) executed against it, then a drain
and the checks of lakehouse.chaos.checks. Wiring only: what to check lives
in checks.py, when to strike in schedule.py.

The lake's data directory is a small tmpfs mounted by the run (root only),
so that "the disk under the lake is full" is a real ENOSPC for every writer
of the lake, and nothing else on the machine fills up.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import statistics
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import psycopg2
import pyarrow as pa
import requests

from lakehouse import catalog
from lakehouse.chaos import checks
from lakehouse.chaos.schedule import Fault, build_schedule
from lakehouse.platform import airflow, stack
from lakehouse.platform.isolated import isolated_settings
from lakehouse.platform.services import services
from lakehouse.settings import Settings

DAG_ID = "lakehouse_bronze_to_gold"
#: Seconds the stack runs under load before the first fault, and after the last one.
WARMUP_S, COOLDOWN_S = 45.0, 30.0
#: Events/s of the second producer (yesterday's events, for the DAG runs).
BACKFILL_RATE = 100.0
#: How long the second producer may take to stop on SIGTERM (a blocked send, 60 s, then its
#: flush, up to the client's 120 s delivery timeout) before it is killed.
BACKFILL_STOP_TIMEOUT_S = 240.0
#: Both streaming queries must report a first micro-batch this soon after start
#: (the first batch of raw landing holds up to 100,000 records: minutes on a busy machine).
STARTUP_TIMEOUT_S = 1800.0
#: A program that is not RUNNING again this long after a fault has not recovered.
RECOVERY_TIMEOUT_S = 300.0


@dataclass
class Config:
    duration_s: float
    seed: int
    run_dir: Path
    rate: float = 1000.0
    outage_s: float = 30.0
    kills_per_program: int = 3
    lake_fs_mb: int = 4096
    drain_timeout_s: float = 1200.0
    keep: bool = False


@dataclass
class Outcome:
    fault: Fault
    started: float  # monotonic
    recovered_s: float | None = None
    note: str = ""


@dataclass
class Report:
    config: Config
    outcomes: list[Outcome] = field(default_factory=list)
    verdicts: list[checks.Verdict] = field(default_factory=list)
    not_running: dict[str, str] = field(default_factory=dict)
    dag_runs: dict[str, str] = field(default_factory=dict)
    drain_s: float | None = None
    records: int = 0
    started_at: str = ""
    wall_s: float = 0.0

    @property
    def lost(self) -> int:
        return sum(v.lost for v in self.verdicts)

    @property
    def doubled(self) -> int:
        return sum(v.doubled for v in self.verdicts)

    @property
    def ok(self) -> bool:
        return (all(v.ok for v in self.verdicts) and len(self.verdicts) >= 3 and not self.not_running
                and all(o.recovered_s is not None for o in self.outcomes)
                and all(s == "success" for k, s in self.dag_runs.items() if k.startswith("final")))

    def table(self) -> str:
        rows = ["| fault | count | recovery p50 (s) | recovery max (s) | lost | doubled |",
                "|---|---:|---:|---:|---:|---:|"]
        by_label: dict[str, list[Outcome]] = {}
        for o in self.outcomes:
            by_label.setdefault(o.fault.label, []).append(o)
        for label in sorted(by_label):
            outs = by_label[label]
            times = [o.recovered_s for o in outs if o.recovered_s is not None]
            failed = len(outs) - len(times)
            p50 = f"{statistics.median(times):.1f}" if times else "-"
            mx = f"{max(times):.1f}" if times else "-"
            if failed:
                mx += f" ({failed} not recovered)"
            rows.append(f"| {label} | {len(outs)} | {p50} | {mx} | - | - |")
        for v in self.verdicts:
            rows.append(f"| check: {v.name} | {v.checked} | | | {v.lost} | {v.doubled} |")
        return "\n".join(rows)

    def markdown(self, command: str) -> str:
        cfg = self.config
        notes = [f"- {v.name}: {n}" for v in self.verdicts for n in v.notes[:5]]
        notes += [f"- {o.fault.label} at +{o.fault.at:.0f}s: {o.note}" for o in self.outcomes if o.note]
        lines = [
            f"Run of {self.started_at}: `{command}` -- {cfg.duration_s / 60:.0f} minutes, seed {cfg.seed}, "
            f"producer {cfg.rate:.0f} events/s, {self.records} topic records, drain {self._fmt(self.drain_s)} s, "
            f"wall {self.wall_s / 60:.1f} min. Result: **{'PASS' if self.ok else 'FAIL'}**, "
            f"{self.lost} lost, {self.doubled} doubled.",
            "",
            self.table(),
            "",
            "DAG runs: " + ", ".join(f"{k} {v}" for k, v in self.dag_runs.items()),
        ]
        if self.not_running:
            lines += ["", "Not RUNNING at the end: " + ", ".join(f"{k} {v}" for k, v in self.not_running.items())]
        if notes:
            lines += ["", *notes]
        return "\n".join(lines) + "\n"

    @staticmethod
    def _fmt(x: float | None) -> str:
        return "-" if x is None else f"{x:.0f}"


# --- the lake's filesystem ---------------------------------------------------------
def mount_lake(mount: Path, size_mb: int) -> None:
    if os.geteuid() != 0:
        raise RuntimeError("the chaos run mounts a tmpfs under the lake: run it as root")
    mount.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0755", "tmpfs", str(mount)], check=True)


def unmount_lake(mount: Path) -> None:
    if os.path.ismount(mount):
        subprocess.run(["umount", "--lazy", str(mount)], check=False)


def fill(mount: Path) -> Path:
    """Fill the filesystem at `mount` to the last block; returns the filler file."""
    path = mount / ".chaos-fill"
    chunk = b"\0" * (1 << 20)
    with open(path, "wb", buffering=0) as f:
        for size in (1 << 20, 4096, 1):
            piece = chunk[:size]
            while True:
                try:
                    f.write(piece)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
    return path


# --- the stack -----------------------------------------------------------------------
def _supervisor(settings: Settings):
    return stack._proxy(settings).supervisor


def program_info(settings: Settings) -> dict[str, dict]:
    return {p["name"]: p for p in _supervisor(settings).getAllProcessInfo()}


def wait_running(settings: Settings, name: str, timeout: float, not_pid: int | None = None) -> dict | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            info = _supervisor(settings).getProcessInfo(name)
        except OSError:
            info = None
        if info and info["statename"] == "RUNNING" and info["pid"] and info["pid"] != not_pid:
            return info
        time.sleep(0.5)
    return None


def kill_program(settings: Settings, name: str) -> int:
    """SIGKILL to the program's process group (supervisord starts each in its own)."""
    info = _supervisor(settings).getProcessInfo(name)
    pid = info["pid"]
    try:
        os.killpg(os.getpgid(pid), signal.SIGKILL)
    except ProcessLookupError:
        pass
    return pid


def airflow_token(settings: Settings) -> dict[str, str]:
    resp = requests.post(f"{airflow.base_url(settings)}/auth/token", timeout=30,
                         json={"username": settings.airflow_admin_user,
                               "password": settings.airflow_admin_password.get_secret_value()})
    resp.raise_for_status()
    return {"Authorization": f"Bearer {resp.json()['access_token']}"}


def trigger_dag(settings: Settings, event_date: date, timeout: float = 300) -> str:
    """A DAG run for event_date through the REST API, retried while the API is away."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            resp = requests.post(f"{airflow.base_url(settings)}/api/v2/dags/{DAG_ID}/dagRuns",
                                 headers=airflow_token(settings), timeout=30,
                                 json={"logical_date": None, "conf": {"event_date": event_date.isoformat()}})
            if resp.status_code == 200:
                return resp.json()["dag_run_id"]
            last = f"{resp.status_code} {resp.text[:200]}"
        except requests.RequestException as exc:
            last = exc
        time.sleep(5)
    raise RuntimeError(f"could not trigger {DAG_ID} for {event_date}: {last}")


def wait_dag_run(settings: Settings, run_id: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    state = "unknown"
    while time.monotonic() < deadline:
        try:
            resp = requests.get(f"{airflow.base_url(settings)}/api/v2/dags/{DAG_ID}/dagRuns/{run_id}",
                                headers=airflow_token(settings), timeout=30)
            state = resp.json().get("state", state)
            if state in ("success", "failed"):
                return state
        except (requests.RequestException, ValueError):
            pass
        time.sleep(10)
    return f"{state} after {timeout:.0f}s"


def complete(settings: Settings, d: date) -> bool:
    """Whether the DAG's completeness sensor can let date d run now (its cutoff has passed)."""
    from lakehouse.batch import completeness

    lateness = timedelta(minutes=getattr(settings, "batch_allowed_lateness_minutes", 60))
    return datetime.now(timezone.utc) >= completeness.cutoff(d, lateness)


def topic_ranges(settings: Settings) -> dict[tuple[str, int], tuple[int, int]]:
    from kafka import KafkaConsumer, TopicPartition

    from lakehouse.kafka_clients import client_config

    consumer = KafkaConsumer(**client_config(settings), enable_auto_commit=False)
    try:
        parts = [TopicPartition(settings.kafka_topic, p) for p in sorted(consumer.partitions_for_topic(settings.kafka_topic))]
        first, end = consumer.beginning_offsets(parts), consumer.end_offsets(parts)
        return {(tp.topic, tp.partition): (first[tp], end[tp]) for tp in parts}
    finally:
        consumer.close()


def read_delta(path: str, columns: list[str]) -> pa.Table:
    from deltalake import DeltaTable

    try:
        return DeltaTable(path).to_pyarrow_table(columns=columns)
    except Exception as exc:  # noqa: BLE001 -- TableNotFoundError: nothing landed yet
        if "no log files" in str(exc).lower() or "not a delta table" in str(exc).lower() or "notfound" in type(exc).__name__.lower():
            return pa.table({c: pa.array([], pa.null()) for c in columns})
        raise


LANDED = ["kafka_topic", "kafka_partition", "kafka_offset"]


def landed(settings: Settings) -> pa.Table:
    events = read_delta(catalog.BRONZE_EVENTS.path(settings), LANDED)
    quarantine = read_delta(catalog.BRONZE_QUARANTINE.path(settings), LANDED)
    return pa.concat_tables([t.cast(pa.schema([("kafka_topic", pa.string()), ("kafka_partition", pa.int32()),
                                                ("kafka_offset", pa.int64())])) for t in (events, quarantine)])


EVENT_COLUMNS = ["event_id", "event_type", "source", "event_ts", "kafka_timestamp", "event_date",
                 "kafka_partition", "kafka_offset"]


def offset_log(settings: Settings) -> list[tuple[dict[int, int], int]]:
    """The fast aggregation's offset log (Spark's checkpoint `offsets/<batch>`:
    a version line, the batch metadata with its watermark, the source's end
    offsets), batch by batch from 0; [] when batch 0 is no longer kept."""
    folder = settings.checkpoint_dir / "fast_aggregation" / "offsets"
    ids = sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) if folder.is_dir() else []
    if not ids or ids[0] != 0 or ids != list(range(len(ids))):
        return []
    out = []
    for i in ids:
        lines = (folder / str(i)).read_text().splitlines()
        meta = json.loads(lines[1])
        out.append((_offsets_in(lines[2]), int(meta.get("batchWatermarkMs", 0))))
    return out


def stream_progress_count(settings: Settings) -> dict[str, int]:
    try:
        with psycopg2.connect(settings.pg_dsn("reader"), connect_timeout=5) as conn, conn.cursor() as cur:
            cur.execute("SELECT query_name, count(*) FROM ops.stream_progress GROUP BY 1")
            return dict(cur.fetchall())
    except psycopg2.Error:
        return {}


def _offsets_in(obj) -> dict[int, int]:
    """Partition -> offset from Spark's endOffset JSON ({"topic": {"0": n}})."""
    out: dict[int, int] = {}
    if isinstance(obj, str):
        obj = json.loads(obj)
    for parts in (obj or {}).values():
        if isinstance(parts, dict):
            out.update({int(p): int(o) for p, o in parts.items()})
    return out


def queries_caught_up(settings: Settings, ends: dict[int, int]) -> bool:
    """Both streaming queries' latest progress ends at the topic's end offsets."""
    with psycopg2.connect(settings.pg_dsn("reader"), connect_timeout=5) as conn, conn.cursor() as cur:
        cur.execute("SELECT query_name, end_offsets FROM ops.stream_latest")
        latest = {q: _offsets_in(o) for q, o in cur.fetchall()}
    return len(latest) >= 2 and all(all(offs.get(p, -1) >= e for p, e in ends.items()) for offs in latest.values())


# --- the run -------------------------------------------------------------------------
class Chaos:
    def __init__(self, cfg: Config, say=print):
        self.cfg, self.say = cfg, say
        self.mount = cfg.run_dir / "lakefs"
        self.settings = isolated_settings(
            cfg.run_dir / "stack", lakehouse_data_dir=self.mount / "lakehouse", producer_rate=cfg.rate,
            producer_seed=cfg.seed, producer_duplicate_fraction=0.02, producer_late_fraction=0.02,
            producer_malformed_fraction=0.01,
        )
        self.report = Report(cfg)
        self.lock = threading.Lock()
        self.dag_run_during: str | None = None
        # The second producer's date: the newest date before today that the
        # DAG's completeness sensor lets run now (`complete`: its cutoff has
        # passed), i.e. yesterday, or the day before between midnight and
        # midnight + the allowed lateness. Fixed when the run starts, so a run
        # that crosses midnight keeps it.
        self.backfill_date = datetime.now(timezone.utc).date() - timedelta(days=1)
        while not complete(self.settings, self.backfill_date):
            self.backfill_date -= timedelta(days=1)

    # each fault runs in a thread of its own, started at its time
    def _do(self, fault: Fault, outcome: Outcome) -> None:
        s = self.settings
        try:
            if fault.kind == "kill":
                info = wait_running(s, fault.target, RECOVERY_TIMEOUT_S)
                if info is None:
                    outcome.note = "was not RUNNING when its turn came"
                    return
                outcome.started = time.monotonic()
                pid = kill_program(s, fault.target)
                back = wait_running(s, fault.target, RECOVERY_TIMEOUT_S, not_pid=pid)
                if back:
                    outcome.recovered_s = time.monotonic() - outcome.started
            elif fault.kind == "stop":
                outcome.started = time.monotonic()
                _supervisor(s).stopProcess(fault.target, True)
                time.sleep(fault.hold)
                restart = time.monotonic()
                _supervisor(s).startProcess(fault.target, False)
                if wait_running(s, fault.target, RECOVERY_TIMEOUT_S):
                    outcome.recovered_s = time.monotonic() - restart
            elif fault.kind == "disk_full":
                from deltalake import DeltaTable

                outcome.started = time.monotonic()
                filler = fill(self.mount)
                time.sleep(fault.hold)
                version = DeltaTable(catalog.BRONZE_EVENTS.path(s)).version()
                filler.unlink()
                freed = time.monotonic()
                while time.monotonic() - freed < RECOVERY_TIMEOUT_S:
                    if DeltaTable(catalog.BRONZE_EVENTS.path(s)).version() > version:
                        outcome.recovered_s = time.monotonic() - freed
                        outcome.note = "recovery: seconds from freeing the disk to bronze's next commit"
                        break
                    time.sleep(1)
            elif fault.kind == "dag_run":
                outcome.started = time.monotonic()
                self.dag_run_during = trigger_dag(s, self.backfill_date)
                outcome.recovered_s = time.monotonic() - outcome.started
                outcome.note = f"run {self.dag_run_during} triggered (recovery: seconds until the API accepted it)"
        except Exception as exc:  # noqa: BLE001 -- a fault that could not be applied is reported
            outcome.note = f"{type(exc).__name__}: {exc}"

    def run(self) -> Report:
        cfg, s, say = self.cfg, self.settings, self.say
        t_wall = time.monotonic()
        self.report.started_at = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        if cfg.run_dir.exists() and any(cfg.run_dir.iterdir()):
            raise RuntimeError(f"{cfg.run_dir} is not empty; give --run-dir a new directory")
        cfg.run_dir.mkdir(parents=True, exist_ok=True)
        mount_lake(self.mount, cfg.lake_fs_mb)
        failed = True
        try:
            self._run()
            failed = False
        finally:
            self.report.wall_s = time.monotonic() - t_wall
            say("[chaos] stopping the stack")
            try:
                stack.down(s)
            finally:
                unmount_lake(self.mount)
                if failed:
                    say(f"[chaos] the run failed: {cfg.run_dir} kept for its logs ({s.log_dir})")
                elif not cfg.keep:
                    try:
                        stack.clean(s)
                    except Exception as exc:  # noqa: BLE001
                        say(f"[chaos] cleaning {s.run_dir} failed: {exc}")
                    shutil.rmtree(cfg.run_dir, ignore_errors=True)
        return self.report

    def _run(self) -> None:
        cfg, s, say = self.cfg, self.settings, self.say
        programs = [svc.name for svc in services(s)]
        groups = tuple(dict.fromkeys(svc.group for svc in services(s)))
        say(f"[chaos] starting the stack in {s.run_dir}: {', '.join(programs)}")
        stack.up(s, groups=groups)
        for name in programs:
            if not wait_running(s, name, 300):
                raise RuntimeError(f"{name} is not RUNNING after start")
        say("[chaos] waiting for both streams to make progress")
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while len(stream_progress_count(s)) < 2:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the streams made no progress within {STARTUP_TIMEOUT_S:.0f}s of start")
            time.sleep(3)
        time.sleep(WARMUP_S)

        window = max(cfg.duration_s - WARMUP_S - COOLDOWN_S, 3 * (cfg.outage_s + 10))
        backfill = self._start_backfill(window)
        schedule = build_schedule(cfg.seed, window, programs, kills_per_program=cfg.kills_per_program,
                                  outage_s=cfg.outage_s)
        say(f"[chaos] {len(schedule)} faults over {window:.0f}s (seed {cfg.seed})")
        t0 = time.monotonic()
        threads = []
        for fault in schedule:
            delay = t0 + fault.at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            outcome = Outcome(fault, time.monotonic())
            self.report.outcomes.append(outcome)
            say(f"[chaos] +{time.monotonic() - t0:5.0f}s {fault.label}")
            th = threading.Thread(target=self._do, args=(fault, outcome), daemon=True)
            th.start()
            threads.append(th)
        for th in threads:
            th.join(RECOVERY_TIMEOUT_S * 2)
        say("[chaos] faults over; waiting for every program to be RUNNING")
        for name in programs:
            if not wait_running(s, name, RECOVERY_TIMEOUT_S):
                self.report.not_running[name] = _supervisor(s).getProcessInfo(name)["statename"]
        say(self.report.table())
        time.sleep(COOLDOWN_S)

        say("[chaos] draining: producer stopped, waiting for both streams to reach the topic's end")
        _supervisor(s).stopProcess("producer", True)
        if backfill.poll() is None:
            backfill.send_signal(signal.SIGTERM)
        try:
            # On SIGTERM the producer flushes what it has handed to its client: a send
            # blocked on metadata may take max_block_ms (60 s) and the flush up to
            # delivery_timeout_ms (120 s) when the broker was killed near the end.
            backfill.wait(BACKFILL_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            # What counts is what reached the topic (read below), not what the producer reports.
            say(f"[chaos] the second producer did not stop within {BACKFILL_STOP_TIMEOUT_S:.0f}s of SIGTERM; killed "
                f"(its log: {s.log_dir / 'chaos-backfill-producer.log'})")
            backfill.kill()
            backfill.wait(30)
        ranges = topic_ranges(s)
        self.report.records = sum(e - f for f, e in ranges.values())
        ends = {p: e for (_, p), (_, e) in ranges.items()}
        t_drain = time.monotonic()
        while time.monotonic() - t_drain < cfg.drain_timeout_s:
            try:
                if landed(s).num_rows >= self.report.records and queries_caught_up(s, ends):
                    self.report.drain_s = time.monotonic() - t_drain
                    break
            except Exception as exc:  # noqa: BLE001 -- a commit in progress, PostgreSQL restarting
                say(f"[chaos] drain check: {type(exc).__name__}: {exc}")
            time.sleep(5)
        say(f"[chaos] drained in {self.report._fmt(self.report.drain_s)}s; {self.report.records} records")

        events = read_delta(catalog.BRONZE_EVENTS.path(s), EVENT_COLUMNS)
        self.report.verdicts.append(checks.landing(ranges, landed(s)))
        self.report.verdicts.append(self._realtime(events, {p: f for (_, p), (f, _) in ranges.items()}))
        for v in self.report.verdicts:
            say(f"[chaos] {v.name}: {v.checked} checked, {v.lost} lost, {v.doubled} doubled; {'; '.join(v.notes[:3])}")

        if self.dag_run_during:
            self.report.dag_runs["during faults"] = wait_dag_run(s, self.dag_run_during, 1800)
            say(f"[chaos] DAG run during the faults: {self.report.dag_runs['during faults']}")
        all_dates = sorted({d for d in events.column("event_date").to_pylist() if d is not None}) if events.num_rows else []
        dates = [d for d in all_dates if complete(s, d)]
        if len(dates) < len(all_dates):
            self.report.dag_runs["not run (date not complete yet)"] = ", ".join(
                str(d) for d in all_dates if d not in dates)
        for d in dates:
            run_id = trigger_dag(s, d)
            state = wait_dag_run(s, run_id, 1800)
            self.report.dag_runs[f"final {d}"] = state
            self.report.verdicts.append(self._gold(d))
            say(f"[chaos] DAG run for {d}: {state}; {self.report.verdicts[-1].name}: lost {self.report.verdicts[-1].lost}")
        self.report.not_running.update({n: st for n, st in
                                        ((n, i["statename"]) for n, i in program_info(s).items())
                                        if st != "RUNNING" and n != "producer"})

    def _start_backfill(self, window: float) -> subprocess.Popen:
        """A second producer, outside the stack, for the whole fault window:
        events of `backfill_date` (a date the DAG's completeness sensor lets
        run now; today's is complete only after midnight + the allowed
        lateness), so the DAG run during the faults and the final one work
        on real data that came through the stream."""
        import sys

        s = self.settings
        start = datetime.combine(self.backfill_date, datetime.min.time(), tzinfo=timezone.utc).replace(hour=12)
        log = open(s.log_dir / "chaos-backfill-producer.log", "ab")
        return subprocess.Popen(
            [sys.executable, "-m", "producer", "--rate", str(BACKFILL_RATE), "--duration", str(window),
             "--start", start.isoformat(), "--seed", str(self.cfg.seed + 1), "--duplicate-fraction", "0.02",
             "--late-fraction", "0", "--malformed-fraction", "0.01", "--bootstrap-servers",
             s.kafka_bootstrap_servers, "--topic", s.kafka_topic],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "LAKEHOUSE_RUN_DIR": str(s.run_dir)})

    def _realtime(self, events: pa.Table, first: dict[int, int]) -> checks.Verdict:
        s = self.settings
        bounds, closed_before = checks.realtime_bounds(events, s.realtime_watermark_minutes * 60,
                                                       s.realtime_future_skew_minutes * 60)
        exact = checks.realtime_exact(events, offset_log(s), first, s.realtime_future_skew_minutes * 60)
        if exact is not None:
            bounds = exact
        actual: dict[str, dict[tuple, int]] = {}
        with psycopg2.connect(s.pg_dsn("reader")) as conn, conn.cursor() as cur:
            cur.execute("SELECT window_start, event_type, event_count FROM realtime.events_per_minute")
            actual["events_per_minute"] = {(w, t): n for w, t, n in cur.fetchall()}
            cur.execute("SELECT window_start, source, login_count FROM realtime.logins_per_source")
            actual["logins_per_source"] = {(w, src): n for w, src, n in cur.fetchall()}
            cur.execute("SELECT window_start, purchase_count FROM realtime.purchases_per_minute")
            actual["purchases_per_minute"] = {(w,): n for w, n in cur.fetchall()}
        return checks.realtime(bounds, closed_before, actual)

    def _gold(self, d: date) -> checks.Verdict:
        from deltalake import DeltaTable

        from lakehouse.batch.gold import MODELS

        s = self.settings
        silver = DeltaTable(catalog.SILVER_EVENTS.path(s)).to_pyarrow_table(
            columns=["event_id", "user_id", "event_type", "page", "source"], filters=[("event_date", "=", d)])
        gold_rows = {}
        with psycopg2.connect(s.pg_dsn("reader")) as conn, conn.cursor() as cur:
            for name, model in MODELS.items():
                cols = ", ".join(model.SCHEMA.names)
                cur.execute(f"SELECT {cols} FROM gold.{name} WHERE event_date = %s ORDER BY {cols}", (d,))
                gold_rows[name] = [tuple(r) for r in cur.fetchall()]
        return checks.gold(d, silver.to_pylist(), gold_rows)


DOC_BEGIN, DOC_END = "<!-- chaos-results:begin -->", "<!-- chaos-results:end -->"


def write_doc(doc: Path, section: str) -> None:
    """Replace the results section of docs/reliability.md (between the markers)."""
    text = doc.read_text()
    head, _, rest = text.partition(DOC_BEGIN)
    _, _, tail = rest.partition(DOC_END)
    doc.write_text(f"{head}{DOC_BEGIN}\n{section}{DOC_END}{tail}")
