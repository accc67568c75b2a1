"""The streaming floor: a plain Spark batch job that copies one offset range
of the events topic to Parquet with Spark's Kafka source (no parsing, no
validation, no Delta, one pass), in a fresh process with the streams' own
Spark settings. The drain rate of both streaming queries over the same
records, divided by this job's rate, says what validation, two queries, Delta
and the aggregation cost beyond moving the bytes.

    python -m bench.stream_floor --run-dir <run> --start '{"t":{"0":0}}' --end '{"t":{"0":1000}}' --out <dir>

Prints one JSON line: session start-up, read+write seconds, rows, rows/s."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer

app = typer.Typer(add_completion=False)


@app.command()
def main(run_dir: Path = typer.Option(...), start: str = typer.Option(...), end: str = typer.Option(...),
         out: Path = typer.Option(...)) -> None:
    t0 = time.perf_counter()
    from lakehouse.platform.stack import load_stack_settings
    from lakehouse.spark import spark_session
    from lakehouse.stream.source import kafka_options

    settings = load_stack_settings(run_dir)
    spark = spark_session(settings, "bench-stream-floor")
    options = {k: v for k, v in kafka_options(settings).items() if k not in ("maxOffsetsPerTrigger", "startingOffsets")}
    t1 = time.perf_counter()
    df = spark.read.format("kafka").options(**options).option("startingOffsets", start) \
        .option("endingOffsets", end).load()
    df.write.mode("overwrite").parquet(str(out))
    t2 = time.perf_counter()
    rows = spark.read.parquet(str(out)).count()
    spark.stop()
    print(json.dumps({"startup_s": t1 - t0, "read_write_s": t2 - t1, "rows": rows,
                      "rows_per_s": rows / max(t2 - t1, 1e-9)}), flush=True)


if __name__ == "__main__":
    app()
