"""The fault schedule of a chaos run, drawn from a seed (pure: no clock, no I/O).

Faults:
- ``kill``: SIGKILL to a program's whole process group (the program and
  every child it started, e.g. a Spark driver's JVM and Python workers),
  at least ``kills_per_program`` times for each program;
- ``stop``: a program stopped for ``outage_s`` then started again
  (PostgreSQL, the broker);
- ``disk_full``: the filesystem under the lake filled for ``outage_s``;
- ``dag_run``: a run of the batch DAG triggered while the faults go on.

Times are offsets in seconds from the start of the fault phase and mean
"not before": the runner waits for a killed program to be running before
killing it again. The three outages never overlap one another, and a
program is never killed during its own outage; everything else may
coincide, as it would in production.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

#: Programs that are stopped for an outage rather than (only) killed.
OUTAGE_TARGETS = ("postgres", "broker")


@dataclass(frozen=True, order=True)
class Fault:
    at: float
    kind: str  # kill | stop | disk_full | dag_run
    target: str  # a program name, "lake" or the DAG id
    hold: float = 0.0

    @property
    def label(self) -> str:
        if self.kind == "kill":
            return f"kill -9 {self.target}"
        if self.kind == "stop":
            return f"{self.target} stopped {self.hold:.0f}s"
        if self.kind == "disk_full":
            return f"lake disk full {self.hold:.0f}s"
        return "DAG run during faults"


def build_schedule(seed: int, fault_window_s: float, programs: list[str], *, kills_per_program: int = 3,
                   outage_s: float = 30.0, min_kill_gap_s: float = 20.0, dag_id: str = "lakehouse_bronze_to_gold",
                   disk_fault: bool = True) -> list[Fault]:
    """Every fault of a run, sorted by time, the same for the same arguments."""
    if fault_window_s < 3 * (outage_s + 10):
        raise ValueError(f"a fault window of {fault_window_s:.0f}s cannot hold three {outage_s:.0f}s outages")
    rng = random.Random(seed)
    faults: list[Fault] = []
    # outages: one slot each in its own third of the window, in a seeded order
    outages = [("stop", t) for t in OUTAGE_TARGETS if t in programs] + ([("disk_full", "lake")] if disk_fault else [])
    rng.shuffle(outages)
    slot = fault_window_s / max(len(outages), 1)
    busy: dict[str, tuple[float, float]] = {}
    for i, (kind, target) in enumerate(outages):
        start = i * slot + rng.uniform(0, max(slot - outage_s - 5, 0))
        faults.append(Fault(round(start, 1), kind, target, outage_s))
        busy[target] = (start - 5, start + outage_s + 30)
    # kills: kills_per_program for each program, spaced, outside its own outage
    for program in programs:
        times: list[float] = []
        attempts = 0
        while len(times) < kills_per_program:
            attempts += 1
            if attempts > 10_000:
                raise ValueError(f"cannot place {kills_per_program} kills of {program} in {fault_window_s:.0f}s")
            t = rng.uniform(0, fault_window_s)
            lo, hi = busy.get(program, (-1.0, -1.0))
            if lo <= t <= hi or any(abs(t - u) < min_kill_gap_s for u in times):
                continue
            times.append(t)
        faults += [Fault(round(t, 1), "kill", program) for t in times]
    faults.append(Fault(round(rng.uniform(0.2, 0.5) * fault_window_s, 1), "dag_run", dag_id))
    return sorted(faults)
