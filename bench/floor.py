"""The batch floor: a plain Spark job that reads one day of bronze (the
partition's Parquet files, listed by delta-rs as the DAG lists them) and
writes it back out as Parquet. No transform can make the DAG faster than a
fresh Spark process doing one pass over the data, so DAG wall time / this
job's wall time says how much the DAG spends beyond moving the bytes.

    python -m bench.floor --run-dir <run> --date 2026-01-15 --out <dir>

Prints one JSON line: session start, read+write seconds, rows."""

from __future__ import annotations

import json
import time
from datetime import date
from pathlib import Path

import typer

app = typer.Typer(add_completion=False)


@app.command()
def main(run_dir: Path = typer.Option(...), event_date: str = typer.Option(..., "--date"),
         out: Path = typer.Option(...)) -> None:
    t0 = time.perf_counter()
    from deltalake import DeltaTable

    from lakehouse.platform.stack import load_stack_settings
    from lakehouse.spark import spark_session

    settings = load_stack_settings(run_dir)
    d = date.fromisoformat(event_date)
    files = DeltaTable(settings.table_path("bronze", "events")).file_uris(
        file_pruning_predicate=f"event_date = '{d.isoformat()}'"
    )
    if not files:
        raise SystemExit(f"no bronze files for {d}")
    spark = spark_session(settings, "bench-floor")
    t1 = time.perf_counter()
    df = spark.read.parquet(*files)
    df.write.mode("overwrite").parquet(str(out))
    t2 = time.perf_counter()
    rows = spark.read.parquet(str(out)).count()
    spark.stop()
    print(json.dumps({"startup_s": t1 - t0, "read_write_s": t2 - t1, "rows": rows, "files": len(files)}), flush=True)


if __name__ == "__main__":
    app()
