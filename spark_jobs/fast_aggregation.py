"""Fast aggregation: Kafka (Spark's Kafka source) -> validation -> on-time
valid events (future-skew rule) -> one-minute event-time windows (watermark,
event_id de-duplication) -> PostgreSQL realtime tables.

Output mode update: every micro-batch upserts the windows it changed, with
their full counts, in one transaction (lakehouse.stream.realtime). While
PostgreSQL is away the batch retries with backoff and does not finish, so
nothing is lost; the query then catches up.

    python -m spark_jobs.fast_aggregation   # settings from the environment / .env
"""

from __future__ import annotations

import logging

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming import StreamingQuery

from lakehouse.settings import Settings
from lakehouse.stream import realtime
from lakehouse.stream.app import GracefulStop, require_topic, run_streaming_job
from lakehouse.stream.source import kafka_stream, validated

QUERY_NAME = "fast-aggregation"
log = logging.getLogger(__name__)


def transform(kafka: DataFrame, settings: Settings) -> DataFrame:
    """Kafka rows -> per-window counts of the valid, on-time events."""
    events = realtime.on_time_events(validated(kafka), settings.realtime_future_skew_minutes)
    return realtime.window_counts(events, settings.realtime_watermark_minutes)


def load(settings: Settings, windows: DataFrame) -> None:
    """Upsert the changed windows of one micro-batch (retries while PostgreSQL is away)."""
    rows = realtime.table_rows(realtime.collect_windows(windows))
    realtime.upsert_with_retry(settings.pg_dsn("writer"), rows)


def checkpoint(settings: Settings) -> str:
    return str(settings.checkpoint_dir / "fast_aggregation")


def start(spark: SparkSession, settings: Settings, stop: GracefulStop | None = None) -> StreamingQuery:
    require_topic(QUERY_NAME, checkpoint(settings), settings)

    def write(batch: DataFrame, batch_id: int) -> None:
        if stop is not None:
            stop.check()
        load(settings, batch)

    return (
        transform(kafka_stream(spark, settings), settings)
        .writeStream.queryName(QUERY_NAME)
        .outputMode("update")
        .foreachBatch(write)
        .option("checkpointLocation", checkpoint(settings))
        .trigger(processingTime=f"{settings.realtime_trigger_seconds} seconds")
        .start()
    )


def main() -> None:
    run_streaming_job(QUERY_NAME, {QUERY_NAME: start}, "realtime")


if __name__ == "__main__":
    main()
