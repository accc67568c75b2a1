"""Resident memory of the whole embedded stack: the sum over supervisord and
every process below it (PostgreSQL and its backends, the broker, Airflow,
the Spark drivers, JVMs and Python workers).

RSS counts shared pages once per process, which overstates forked workers
(PostgreSQL backends, Airflow's gunicorn/uvicorn children); PSS from
/proc/<pid>/smaps_rollup splits each shared page among its users, so the PSS
sum is the fairer "how much memory does the stack take" figure. Both are kept.
Named processes (the broker) are also summed on their own, so the broker's
share of the stack's figures is reported apart.

Sampling runs in its own process so reading smaps of large JVMs never holds
the benchmark's GIL while it is producing."""

from __future__ import annotations

import multiprocessing as mp
import time
from dataclasses import dataclass

import psutil


@dataclass(frozen=True)
class Sample:
    t: float  # time.time()
    rss: int  # bytes, summed
    pss: int | None  # bytes, summed; None when smaps_rollup is unreadable
    processes: int
    #: name -> (rss, pss) of a named process and its children (pss None: unreadable)
    named: dict | None = None


def pss_bytes(pid: int) -> int | None:
    """A process's proportional set size from /proc (None when unreadable)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _tree(pid: int) -> list:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def _summed(procs: list) -> tuple[int, int | None, int]:
    """(rss, pss, processes) summed over `procs`. A process that exited
    between listing and reading, or a zombie (exited, not yet reaped: no
    smaps, no memory), is left out; pss is None when a live process's PSS is
    unreadable, since the sum would be partial."""
    rss, pss, n = 0, 0, 0
    for p in procs:
        v = pss_bytes(p.pid)
        try:
            rss += p.memory_info().rss
        except psutil.Error:
            continue  # exited between listing and reading
        n += 1
        if v is not None:
            pss = None if pss is None else pss + v
        elif _alive(p):
            pss = None
    return rss, pss, n


def sample_named(named: dict[str, int]) -> dict:
    """name -> (rss, pss) summed over each named process and its children."""
    out = {}
    for name, pid in named.items():
        try:
            procs = _tree(pid)
        except psutil.Error:
            continue
        rss, pss, _ = _summed(procs)
        out[name] = (rss, pss)
    return out


def sample_tree(root_pid: int, named: dict[str, int] | None = None) -> Sample:
    """One sample of the process tree under root_pid (inclusive), and of the
    `named` processes (name -> pid) on their own."""
    try:
        procs = _tree(root_pid)
    except psutil.Error:
        return Sample(time.time(), 0, None, 0)
    rss, pss, n = _summed(procs)
    return Sample(time.time(), rss, pss, n, sample_named(named) if named else None)


def _loop(root_pid: int, interval: float, conn, named: dict[str, int] | None = None) -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the benchmark stops us; Ctrl-C is for it
    samples = []
    while not conn.poll(0):
        t0 = time.monotonic()
        samples.append(sample_tree(root_pid, named))
        conn.poll(max(0.0, interval - (time.monotonic() - t0)))
    conn.recv()
    conn.send(samples)
    conn.close()


class MemorySampler:
    """Samples the tree every ``interval`` seconds between start() and stop()."""

    def __init__(self, root_pid: int, interval: float = 0.5, named: dict[str, int] | None = None) -> None:
        self.root_pid = root_pid
        self.interval = interval
        self.named = named
        self._conn = None
        self._proc = None

    def start(self) -> "MemorySampler":
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        self._proc = ctx.Process(target=_loop, args=(self.root_pid, self.interval, child, self.named), daemon=True)
        self._proc.start()
        self._conn = parent
        return self

    def stop(self) -> list[Sample]:
        if self._proc is None:
            return []
        self._conn.send("stop")
        samples = self._conn.recv()
        self._proc.join(10)
        self._proc = None
        return samples

    def __enter__(self) -> "MemorySampler":
        return self.start()

    def __exit__(self, *exc) -> None:
        if self._proc is not None:
            self.stop()


def peak_by_program(samples: list[Sample]) -> dict[str, float]:
    """Each named program's PSS (GB) in the sample where the stack's PSS sum
    peaked: what made up the peak. Programs without a readable PSS in that
    sample are left out; {} when no sample names programs."""
    named = _named(samples)
    return _by_program(max(named, key=lambda s: s.pss)) if named else {}


def median_by_program(samples: list[Sample]) -> dict[str, float]:
    """The same for the median sample (by the stack's PSS sum): what the
    stack usually held over the samples."""
    named = sorted(_named(samples), key=lambda s: s.pss)
    return _by_program(named[len(named) // 2]) if named else {}


def _named(samples: list[Sample]) -> list[Sample]:
    return [s for s in samples if s.named and s.pss is not None]


def _by_program(sample: Sample) -> dict[str, float]:
    return {name: pss / 1e9 for name, (_rss, pss) in sorted(sample.named.items(), key=lambda kv: -(kv[1][1] or 0))
            if pss is not None}


def program_rows(name: str, samples: list[Sample], idle_window: tuple[float, float], runs: list[dict]) -> list:
    """Rows for one named program (the broker): PSS idle (median sample of the
    idle window), PSS under ingest (median sample while producing, median over
    runs) and the peak RSS from start to drained."""
    from bench.stats import Row, summarize

    gb = 1e9

    def values(ss, i):
        return [s.named[name][i] / gb for s in ss if s.named and name in s.named and s.named[name][i] is not None]

    t0, t1 = idle_window
    idle = values([s for s in samples if t0 <= s.t <= t1], 1)
    steady, peak = [], []
    for r in runs:
        during = [s for s in samples if r["t_start"] <= s.t <= r["t_drained"]]
        producing = [s for s in during if s.t <= r["t_sent"]] or during
        if values(producing, 1):
            steady.append(summarize(values(producing, 1)).median)
        if values(during, 0):
            peak.append(max(values(during, 0)))
    label = name.capitalize()

    def row(what, vals, note):
        if not vals:
            return Row("Memory", f"{label} {what}", "GB", None, None, f"not run: no samples of {name}")
        return Row("Memory", f"{label} {what}", "GB", summarize(vals), None, note)

    return [
        row("idle (PSS)", [summarize(idle).median] if idle else [], "median sample of the idle window; part of the stack figures"),
        row("under ingest (PSS)", steady, "median sample while producing"),
        row("peak under ingest (RSS)", peak, "max sample, start to drained"),
    ]
