"""`python -m bench`: measure ingest throughput, realtime freshness, DAG time
and memory on an isolated embedded stack, each against this machine's own
ceiling; write bench-results/<time>/results.{json,md} and print the table."""

from __future__ import annotations

from pathlib import Path

import typer

from lakehouse.platform.interrupt import interrupt_on_sigterm
from lakehouse.settings import REPO_ROOT

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, help=__doc__)

PHASES = ("ceiling", "ingest", "drain", "freshness", "batch")


@app.command()
def main(
    quick: bool = typer.Option(False, "--quick", help="Smaller runs: finishes in a few minutes."),
    events_per_day: int = typer.Option(None, min=1, help="Events in the batch day (default 1,000,000; quick 200,000)."),
    out: Path = typer.Option(REPO_ROOT / "bench-results", help="Where results are written."),
    runs: int = typer.Option(3, min=3, help="Runs per figure (the median is reported)."),
    only: str = typer.Option(",".join(PHASES), help="Comma-separated phases to run."),
    keep: bool = typer.Option(False, help="Leave the benchmark's stack running afterwards."),
    profile: bool = typer.Option(False, help="py-spy both streams during the first ingest run (bench-results/profiles/)."),
) -> None:
    from bench import machine, report
    from bench.config import BenchConfig
    from bench.run import Bench

    phases = {p.strip() for p in only.split(",") if p.strip()}
    unknown = phases - set(PHASES)
    if unknown:
        raise typer.BadParameter(f"unknown phases {sorted(unknown)}; choose from {PHASES}")
    config = BenchConfig.make(quick, events_per_day, runs)
    interrupt_on_sigterm()  # a kill stops the benchmark's stack (Bench.run's finally)
    result = Bench(config, out, keep=keep, phases=phases, profile=profile).run()
    result["machine"] = machine.machine_info()
    result["versions"] = machine.versions()
    json_path, md_path = report.write(result, out)
    print()
    print(report.markdown(result))
    print(f"written {json_path} and {md_path}")
