"""A big bronze day for the batch benchmark, made on the stack's Spark.

Generating 20 M events in Python (`lakehouse.testdata`) would hold them all in
the benchmark's memory and take many minutes, so a big day is made from a
generated one: the date's bronze rows (written by `testdata.write_bronze_day`)
are copied `copies - 1` more times into the same date by one Spark job on the
Spark Connect server. Copy k gets new event_ids (a UUID made from the md5 of
the original id and k, so the day's resent duplicates stay duplicates of one
another), Kafka offsets shifted past every earlier copy, and a raw payload
with the new id; everything else (users, pages, types, sources, times) is the
generated day's, so silver and gold see the same mix at `copies` times the size.

    python -m bench.big_day --remote sc://127.0.0.1:15002 --bronze <bronze/events path> --date 2026-01-16 --copies 20

Prints one JSON line: seconds and the date's bronze rows afterwards."""

from __future__ import annotations

import json
import time
from datetime import date

import typer

app = typer.Typer(add_completion=False)


def copies_of(day, copies: int, offset_step: int):
    """Rows of copies 1 .. copies-1 of `day` (bronze/events rows of one date). Pure."""
    from pyspark.sql import functions as F

    k = F.col("_copy")
    h = F.md5(F.concat_ws("/", F.col("event_id"), k.cast("string")))
    new_id = F.concat_ws("-", h.substr(1, 8), h.substr(9, 4), F.concat(F.lit("4"), h.substr(14, 3)),
                         F.concat(F.lit("a"), h.substr(18, 3)), h.substr(21, 12))
    return (
        day.crossJoin(day.sparkSession.range(1, copies).withColumnRenamed("id", "_copy"))
        .withColumn("_new_id", new_id)
        .withColumn("raw_payload", F.replace(F.col("raw_payload"), F.col("event_id"), F.col("_new_id")))
        .withColumn("event_id", F.col("_new_id"))
        .withColumn("kafka_offset", F.col("kafka_offset") + k * F.lit(offset_step))
        .drop("_new_id", "_copy")
    )


@app.command()
def main(remote: str = typer.Option(...), bronze: str = typer.Option(...),
         event_date: str = typer.Option(..., "--date"), copies: int = typer.Option(...)) -> None:
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    t0 = time.perf_counter()
    d = date.fromisoformat(event_date)
    spark = SparkSession.builder.remote(remote).getOrCreate()
    day = spark.read.format("delta").load(bronze).where(f"event_date = DATE'{d}'")
    base = day.agg(F.count(F.lit(1)).alias("n"), F.max("kafka_offset").alias("top")).first()
    if not base["n"]:
        raise SystemExit(f"no bronze rows for {d} to copy")
    if copies > 1:
        copies_of(day, copies, int(base["top"]) + 1).write.format("delta").mode("append").save(bronze)
    rows = spark.read.format("delta").load(bronze).where(f"event_date = DATE'{d}'").count()
    spark.stop()
    print(json.dumps({"seconds": time.perf_counter() - t0, "base_rows": base["n"], "rows": rows}), flush=True)


if __name__ == "__main__":
    app()
