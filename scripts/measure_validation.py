"""Which is faster for validating Kafka records in Spark: the contract's
Python rules in an Arrow UDF (lakehouse.stream.source.validated, what the
streams run), or the same rules written as Spark SQL expressions over
VARIANT (`sql_validated` below, kept here only for this measurement)?

    .venv/bin/python scripts/measure_validation.py --records 200000 --repeats 3

Both run on the same cached DataFrame of generated producer messages (value,
Kafka timestamp; 1% malformed, as the producer's default), in local[2] with
the streams' JVM options, into Spark's `noop` sink; the time of each pass is
reported (median of the repeats), and how many records the two paths give a
different reason. The machine's load average is printed with the figures.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pyspark.sql import DataFrame  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402

UUID = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
ISO = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})$"


def sql_validated(kafka: DataFrame) -> DataFrame:
    """lakehouse.validation's rules as Spark SQL expressions (VARIANT for JSON types)."""
    from lakehouse.contract import EVENT_FIELDS, EVENT_TYPES, MAX_MESSAGE_BYTES, SOURCES
    from lakehouse.validation import MAX_FUTURE_HOURS, MAX_PAGE_CHARS

    text = F.col("value").cast("string")
    df = kafka.withColumn("_v", F.expr("try_parse_json(CAST(value AS STRING))"))

    def typ(name):
        return F.expr(f"schema_of_variant(variant_get(_v, '$.{name}'))")

    def get(name, t="string"):
        return F.expr(f"try_variant_get(_v, '$.{name}', '{t}')")

    ts = F.to_timestamp(get("timestamp"))
    whens = [
        (F.col("value").isNull() | (F.length("value") == 0), F.lit("empty_message")),
        (F.length("value") > MAX_MESSAGE_BYTES, F.lit("oversize")),
        (~F.expr("is_valid_utf8(CAST(value AS STRING))"), F.lit("undecodable")),
        (F.col("_v").isNull(), F.lit("invalid_json")),
        (~F.expr("schema_of_variant(_v)").startswith("OBJECT"), F.lit("not_an_object")),
    ]
    whens += [(F.expr(f"variant_get(_v, '$.{f}') IS NULL"), F.lit(f"missing_field:{f}")) for f in EVENT_FIELDS]
    whens += [(typ(f) != ("BIGINT" if f == "user_id" else "STRING"), F.lit(f"wrong_type:{f}")) for f in EVENT_FIELDS]
    page = get("page")
    whens += [
        (~get("event_id").rlike(UUID), F.lit("invalid_event_id")),
        (get("user_id", "bigint") <= 0, F.lit("invalid_user_id")),
        (~get("event_type").isin(*EVENT_TYPES), F.lit("unknown_event_type")),
        (~get("source").isin(*SOURCES), F.lit("unknown_source")),
        (~page.startswith("/") | (F.length(page) > MAX_PAGE_CHARS) | page.rlike("[\\x00-\\x1f\\x7f-\\x9f]"),
         F.lit("invalid_page")),
        (~get("timestamp").rlike(ISO) | ts.isNull(), F.lit("invalid_timestamp")),
        ((ts < F.lit("2000-01-01").cast("timestamp"))
         | (ts > F.col("timestamp") + F.expr(f"INTERVAL {MAX_FUTURE_HOURS} HOURS")), F.lit("absurd_timestamp")),
    ]
    reason = F.when(*whens[0])
    for cond, value in whens[1:]:
        reason = reason.when(cond, value)
    valid = reason.isNull()
    parsed = F.struct(
        F.when(valid, F.lower(get("event_id"))).alias("event_id"),
        F.when(valid, get("user_id", "bigint")).alias("user_id"),
        F.when(valid, get("event_type")).alias("event_type"),
        F.when(valid, page).alias("page"),
        F.when(valid, get("source")).alias("source"),
        F.when(valid, ts).alias("event_ts"),
        reason.alias("reason"),
    )
    _ = text
    return df.withColumn("parsed", parsed).drop("_v")


def timed(df: DataFrame) -> float:
    t0 = time.perf_counter()
    df.write.format("noop").mode("overwrite").save()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    from datetime import datetime, timezone
    from itertools import islice

    from lakehouse.settings import get_settings
    from lakehouse.spark import spark_session
    from lakehouse.stream.source import validated
    from producer.generator import EventGenerator, GeneratorConfig

    start = datetime(2026, 1, 10, tzinfo=timezone.utc)
    msgs = list(islice(EventGenerator(GeneratorConfig(seed=5, start=start, events_per_second=20_000))
                       .iter_messages(), args.records))
    ts_ms = int(start.timestamp() * 1000)
    settings = get_settings()
    spark = spark_session(settings, "measure-validation")
    rows = [(m.value, ts_ms + i // 20) for i, m in enumerate(msgs)]
    source = (spark.createDataFrame(rows, "value binary, ts long", verifySchema=False)
              .select("value", (F.col("ts") / 1000).cast("timestamp").alias("timestamp"))
              .repartition(3).cache())
    source.count()
    paths = {"arrow_udf": validated(source), "spark_sql": sql_validated(source)}
    figures = {}
    for name, df in paths.items():
        timed(df.select("parsed.*"))  # warm-up: Python workers, code generation
        runs = [timed(df.select("parsed.*")) for _ in range(args.repeats)]
        figures[name] = statistics.median(runs)
        print(f"{name}: median {figures[name]:.2f}s over {args.repeats} runs "
              f"({args.records / figures[name]:,.0f} records/s; runs {[round(r, 2) for r in runs]})", flush=True)
    a = validated(source).select("value", F.col("parsed.reason").alias("a"))
    b = sql_validated(source).select("value", F.col("parsed.reason").alias("b"))
    differ = (a.withColumn("i", F.monotonically_increasing_id())
              .join(b.withColumn("i", F.monotonically_increasing_id()), "i")
              .where(~F.col("a").eqNullSafe(F.col("b"))))
    print(f"records with a different reason: {differ.count()} of {args.records}")
    for row in differ.select("a", "b").limit(5).collect():
        print(f"  udf {row['a']!r} vs sql {row['b']!r}")
    print(f"load average {os.getloadavg()}")
    spark.stop()


if __name__ == "__main__":
    main()
