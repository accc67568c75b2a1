"""Raw landing: Kafka (validated in the source) -> Delta bronze/events + bronze/quarantine.

Exactly once per Kafka record: each micro-batch is appended to each table
under a Delta application transaction (app id = query name, table and the
checkpoint's query id; version = batch id), so a batch replayed after a crash
is skipped by the table that already has it (lakehouse.delta_io).

    python -m spark_jobs.raw_landing        # settings from the environment / .env
"""

from __future__ import annotations

import logging
import time

import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming import StreamingQuery

from lakehouse import delta_io
from lakehouse.contract import (
    BRONZE_EVENTS_PARTITION,
    BRONZE_EVENTS_SCHEMA,
    BRONZE_QUARANTINE_PARTITION,
    BRONZE_QUARANTINE_SCHEMA,
)
from lakehouse.settings import Settings
from lakehouse.streaming import GracefulStop, checkpoint_query_id, events_stream, run_streaming_job
from lakehouse.validation import split_bronze

QUERY_NAME = "raw-landing"
log = logging.getLogger(__name__)


def extract(spark: SparkSession, settings: Settings) -> DataFrame:
    return events_stream(spark, settings)


def transform(batch: DataFrame) -> tuple[pa.Table, pa.Table]:
    """One micro-batch of validated messages -> (bronze events, quarantine rows) in Arrow."""
    return split_bronze(batch.toArrow())


def load(settings: Settings, events: pa.Table, quarantine: pa.Table, app_prefix: str, batch_id: int) -> tuple[bool, bool]:
    """Append both tables, each idempotently under its own app id; says which committed."""
    events_done = delta_io.append_batch(
        settings.table_path("bronze", "events"), events,
        schema=BRONZE_EVENTS_SCHEMA, partition_by=BRONZE_EVENTS_PARTITION,
        app_id=f"{app_prefix}:bronze/events", batch_id=batch_id,
    )
    quarantine_done = delta_io.append_batch(
        settings.table_path("bronze", "quarantine"), quarantine,
        schema=BRONZE_QUARANTINE_SCHEMA, partition_by=BRONZE_QUARANTINE_PARTITION,
        app_id=f"{app_prefix}:bronze/quarantine", batch_id=batch_id,
    )
    return events_done, quarantine_done


def checkpoint(settings: Settings) -> str:
    return str(settings.checkpoint_dir / "raw_landing")


def start(spark: SparkSession, settings: Settings, stop: GracefulStop | None = None) -> StreamingQuery:
    """Start the query (tables created first, so readers find them at once)."""
    delta_io.ensure_table(settings.table_path("bronze", "events"), BRONZE_EVENTS_SCHEMA, BRONZE_EVENTS_PARTITION)
    delta_io.ensure_table(
        settings.table_path("bronze", "quarantine"), BRONZE_QUARANTINE_SCHEMA, BRONZE_QUARANTINE_PARTITION
    )
    ckpt = checkpoint(settings)
    prefix: dict[str, str] = {}

    def land(batch: DataFrame, batch_id: int) -> None:
        if stop is not None:
            stop.check()
        if "app" not in prefix:  # Spark has written the checkpoint metadata by now
            prefix["app"] = f"{QUERY_NAME}:{checkpoint_query_id(ckpt)}"
        t0 = time.monotonic()
        events, quarantine = transform(batch)
        t1 = time.monotonic()
        wrote = load(settings, events, quarantine, prefix["app"], batch_id)
        log.info("batch %s: %s events, %s quarantined (committed: %s, %s); read+validate %.2fs, Delta %.2fs",
                 batch_id, events.num_rows, quarantine.num_rows, *wrote, t1 - t0, time.monotonic() - t1)

    return (
        extract(spark, settings)
        .writeStream.queryName(QUERY_NAME)
        .foreachBatch(land)
        .option("checkpointLocation", ckpt)
        .trigger(processingTime=f"{settings.stream_trigger_seconds} seconds")
        .start()
    )


def main() -> None:
    run_streaming_job(QUERY_NAME, {QUERY_NAME: start}, "bronze/events, bronze/quarantine")


if __name__ == "__main__":
    main()
