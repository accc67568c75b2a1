"""`python -m lakehouse.chaos` (what `make chaos` runs): a chaos run of the
whole stack, its table printed and written to docs/reliability.md.

    python -m lakehouse.chaos --duration 1200 --seed 7
    python -m lakehouse.chaos --duration 300 --no-doc     # the 5-minute variant of the slow tests

Exit status 0 only when nothing was lost or doubled, every fault was
recovered from, every program is RUNNING again and the final DAG runs succeeded.
"""

from __future__ import annotations

import shlex
import sys
import tempfile
from pathlib import Path

import typer

from lakehouse.chaos.runner import Chaos, Config, write_doc
from lakehouse.platform.interrupt import interrupt_on_sigterm
from lakehouse.settings import REPO_ROOT

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, help=__doc__)
DOC = REPO_ROOT / "docs" / "reliability.md"


@app.command()
def main(
    duration: float = typer.Option(1200.0, help="Seconds of load with faults (warm-up and cool-down included)."),
    seed: int = typer.Option(7, help="Seed of the fault schedule and of the producer."),
    run_dir: Path = typer.Option(None, help="A new, empty directory for the run (default: a temporary one)."),
    rate: float = typer.Option(1000.0, help="Producer events per second."),
    outage: float = typer.Option(30.0, help="Seconds PostgreSQL, the broker and the lake's disk are away."),
    kills: int = typer.Option(3, help="kill -9 of each program, at least this many times."),
    lake_fs_mb: int = typer.Option(4096, help="Size of the tmpfs the run mounts under the lake."),
    keep: bool = typer.Option(False, help="Keep the run directory (logs, data) afterwards."),
    doc: bool = typer.Option(True, help="Write the table into docs/reliability.md."),
) -> None:
    run_dir = run_dir or Path(tempfile.mkdtemp(prefix="lakehouse-chaos-")) / "run"
    cfg = Config(duration_s=duration, seed=seed, run_dir=run_dir.resolve(), rate=rate, outage_s=outage,
                 kills_per_program=kills, lake_fs_mb=lake_fs_mb, keep=keep)
    interrupt_on_sigterm()  # stop the stack and unmount before leaving
    report = Chaos(cfg, say=lambda m: print(m, flush=True)).run()
    command = f"make chaos CHAOS_ARGS={shlex.quote(f'--duration {duration:.0f} --seed {seed}')}"
    section = report.markdown(command)
    print("\n" + section, flush=True)
    if doc:
        write_doc(DOC, section)
        print(f"[chaos] wrote the table to {DOC.relative_to(REPO_ROOT)}")
    sys.exit(0 if report.ok else 1)


if __name__ == "__main__":
    app()
