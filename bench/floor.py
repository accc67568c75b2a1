"""The batch floor: a plain Spark job on the same Spark as the DAG (the
stack's Spark Connect server) that reads one day of bronze and writes it back
out as Delta. No transform can make the DAG faster than one pass over the
data on the same engine, so DAG trigger-to-success time / this job's time says
how much the DAG (Airflow's scheduling, the sensor, silver's rules and
de-duplication, Great Expectations, gold, PostgreSQL) adds beyond moving
the bytes.

    python -m bench.floor --remote sc://127.0.0.1:15002 --bronze <bronze/events path> --date 2026-01-15 --out <dir>

Prints one JSON line: session start, read+write seconds, rows. The wall time
the benchmark reports includes this process's start (like a task's)."""

from __future__ import annotations

import json
import time
from datetime import date
from pathlib import Path

import typer

app = typer.Typer(add_completion=False)


@app.command()
def main(remote: str = typer.Option(...), bronze: str = typer.Option(...),
         event_date: str = typer.Option(..., "--date"), out: Path = typer.Option(...)) -> None:
    t0 = time.perf_counter()
    from pyspark.sql import SparkSession

    d = date.fromisoformat(event_date)
    spark = SparkSession.builder.remote(remote).getOrCreate()
    t1 = time.perf_counter()
    df = spark.read.format("delta").load(bronze).where(f"event_date = DATE'{d}'")
    df.write.format("delta").mode("overwrite").save(str(out))
    t2 = time.perf_counter()
    rows = spark.read.format("delta").load(str(out)).count()
    spark.stop()
    if not rows:
        raise SystemExit(f"no bronze rows for {d}")
    print(json.dumps({"startup_s": t1 - t0, "read_write_s": t2 - t1, "rows": rows}), flush=True)


if __name__ == "__main__":
    app()
