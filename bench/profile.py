"""Where the time goes: py-spy samples a stream's whole process tree (the
Spark driver, and the Python workers its JVM starts: the Kafka source reader,
the data-source planner, UDF workers) while the benchmark loads it, and the
raw samples are summarised as the busiest Python functions per process kind.

Sampling is non-blocking (the processes are not paused) at a low rate, so the
profiled run stays close to an unprofiled one; it is still only the first
ingest run that is profiled."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path


def py_spy() -> str | None:
    return shutil.which("py-spy") or (str(Path(sys.executable).parent / "py-spy")
                                      if (Path(sys.executable).parent / "py-spy").exists() else None)


def start(pid: int, seconds: float, out: Path) -> subprocess.Popen | None:
    exe = py_spy()
    if exe is None:
        return None
    out.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [exe, "record", "--pid", str(pid), "--subprocesses", "--nonblocking", "--rate", "25",
         "--duration", str(int(seconds)), "--format", "raw", "--output", str(out)],
        stdout=subprocess.DEVNULL, stderr=open(out.with_suffix(".log"), "w"),
    )


def start_tree(root_pid: int, seconds: float, out_dir: Path, name: str) -> list[tuple[subprocess.Popen, Path]]:
    """py-spy every Python process of a program's tree: the driver, and the
    workers its JVM started (py-spy's own --subprocesses does not look past
    the java process in between). Each Python process gets its own sampler."""
    import psutil

    try:
        root = psutil.Process(root_pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return []
    spies = []
    for p in procs:
        try:
            cmd = " ".join(p.cmdline())
            parent_cmd = " ".join(p.parent().cmdline()) if p.parent() else ""
        except psutil.Error:
            continue
        if "python" not in cmd or ("pyspark.daemon" in parent_cmd):
            continue  # forked daemon workers are followed through their daemon
        spy = start(p.pid, seconds, out_dir / f"{name}.{p.pid}.pyspy.txt")
        if spy is not None:
            spies.append((spy, out_dir / f"{name}.{p.pid}.pyspy.txt"))
    return spies


def summarize_many(paths, top: int = 12) -> dict:
    merged: dict[str, dict] = {}
    for path in paths:
        for kind, v in summarize(path, top=1000).items():
            m = merged.setdefault(kind, {"samples": 0, "top": Counter()})
            m["samples"] += v["samples"]
            m["top"].update(dict(v["top"]))
    return {k: {"samples": v["samples"], "top": v["top"].most_common(top)}
            for k, v in sorted(merged.items(), key=lambda kv: -kv[1]["samples"])}


_PROC = re.compile(r'^process \d+:"(?P<cmd>[^"]*)"')


def kind_of(cmd: str) -> str:
    """A short name for a process from its command line."""
    for marker in ("python_streaming_source_runner", "plan_data_source_read", "create_data_source",
                   "pyspark.daemon", "pyspark.worker", "spark_jobs."):
        if marker in cmd:
            return marker
    return cmd.split(" ")[-1][:60] if cmd else "?"


def summarize(raw: Path, top: int = 12) -> dict:
    """{process kind: {"samples": n, "top": [(leaf function, samples), ...]}} from py-spy raw output."""
    leaf: dict[str, Counter] = defaultdict(Counter)
    total: Counter = Counter()
    if not raw.exists():
        return {}
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        m = _PROC.match(frames[0])
        kind = kind_of(m.group("cmd")) if m else "?"
        n = int(count)
        total[kind] += n
        leaf[kind][frames[-1]] += n
    return {k: {"samples": total[k], "top": leaf[k].most_common(top)} for k, _ in total.most_common()}
