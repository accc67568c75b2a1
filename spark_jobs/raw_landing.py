"""Raw landing: Kafka (Spark's Kafka source) -> validation -> Delta
bronze/events + bronze/quarantine, every record exactly once (delta-spark
idempotent writes keyed by batch id: lakehouse.stream.bronze). Bronze's only
writer: its first micro-batch of each UTC day also compacts bronze's closed
partitions (bronze.compact).

    python -m spark_jobs.raw_landing        # settings from the environment / .env
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming import StreamingQuery

from lakehouse.batch.maintenance import closed_before
from lakehouse.settings import Settings
from lakehouse.stream import bronze
from lakehouse.stream.app import GracefulStop, checkpoint_query_id, require_topic, run_streaming_job
from lakehouse.stream.source import batching_options, kafka_stream, validated

QUERY_NAME = "raw-landing"
log = logging.getLogger(__name__)


def checkpoint(settings: Settings) -> str:
    return str(settings.checkpoint_dir / "raw_landing")


def start(spark: SparkSession, settings: Settings, stop: GracefulStop | None = None) -> StreamingQuery:
    """Start the query (tables created first, so readers find them at once)."""
    ckpt = checkpoint(settings)
    require_topic(QUERY_NAME, ckpt, settings)
    bronze.ensure_tables(spark, settings)
    prefix: dict[str, str] = {}
    compacted: dict[str, object] = {"before": None}  # partitions < this are compacted (this run)

    def land(batch: DataFrame, batch_id: int) -> None:
        if stop is not None:
            stop.check()
        if "app" not in prefix:  # Spark has written the checkpoint metadata by now
            prefix["app"] = f"{QUERY_NAME}:{checkpoint_query_id(ckpt)}"
        t0 = time.monotonic()
        landed = bronze.land_batch(batch, batch_id, settings, prefix["app"])
        log.info("batch %s: %s records, %s events, %s quarantined in %.2fs",
                 batch_id, landed.records, landed.events, landed.quarantined, time.monotonic() - t0)
        before = closed_before(datetime.now(timezone.utc).date(), settings.delta_compact_after_days)
        if compacted["before"] != before and not (stop is not None and stop.requested.is_set()):
            bronze.compact(spark, settings, before)
            compacted["before"] = before

    return (
        validated(kafka_stream(spark, settings, **batching_options(settings)))
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
