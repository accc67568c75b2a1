"""Resident memory of the whole embedded stack: the sum over supervisord and
every process below it (PostgreSQL and its backends, the broker, Airflow,
the Spark drivers, JVMs and Python workers).

RSS counts shared pages once per process, which overstates forked workers
(PostgreSQL backends, Airflow's gunicorn/uvicorn children); PSS from
/proc/<pid>/smaps_rollup splits each shared page among its users, so the PSS
sum is the fairer "how much memory does the stack take" figure. Both are kept.

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


def sample_tree(root_pid: int) -> Sample:
    """One sample of the process tree under root_pid (inclusive)."""
    try:
        root = psutil.Process(root_pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return Sample(time.time(), 0, None, 0)
    rss, pss, pss_ok, n = 0, 0, True, 0
    for p in procs:
        v = pss_bytes(p.pid)
        try:
            rss += p.memory_info().rss
        except psutil.Error:
            continue  # exited between listing and reading
        n += 1
        if v is not None:
            pss += v
        elif _alive(p):
            pss_ok = False  # alive but unreadable: the PSS sum would be partial
    return Sample(time.time(), rss, pss if pss_ok else None, n)


def _loop(root_pid: int, interval: float, conn) -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the benchmark stops us; Ctrl-C is for it
    samples = []
    while not conn.poll(0):
        t0 = time.monotonic()
        samples.append(sample_tree(root_pid))
        conn.poll(max(0.0, interval - (time.monotonic() - t0)))
    conn.recv()
    conn.send(samples)
    conn.close()


class MemorySampler:
    """Samples the tree every ``interval`` seconds between start() and stop()."""

    def __init__(self, root_pid: int, interval: float = 0.5) -> None:
        self.root_pid = root_pid
        self.interval = interval
        self._conn = None
        self._proc = None

    def start(self) -> "MemorySampler":
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        self._proc = ctx.Process(target=_loop, args=(self.root_pid, self.interval, child), daemon=True)
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
