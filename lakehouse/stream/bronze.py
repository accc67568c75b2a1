"""Raw landing's sink: every Kafka record of a micro-batch into exactly one of
bronze/events (valid) or bronze/quarantine (with its reason), through
delta-spark, on the executors.

Exactly once rests on Delta's idempotent writes: each table's append carries
`txnAppId` = "<query>:<checkpoint query id>:<table>" and `txnVersion` = the
batch id, committed atomically with the data files. Delta skips an append whose
version is not above the last one it committed for that app id, so a batch
replayed after a crash (committed to Delta, not yet to Spark's checkpoint) is
written once; a crash between the two tables' commits is repaired by the
replay writing only the table that lacks the batch. A replay reads the same
offsets (Spark's offset log) and the verdicts depend on the records only, so
it splits them exactly as before.

The batch is cached on the executors while its tables are written (one Kafka
read, one validation pass), and nothing but a few counts reaches the driver.

Raw landing is bronze's only writer: it creates the tables, sets their
properties, appends, and compacts their closed partitions (`compact`, between
two appends). Delta's optimistic concurrency needs a store where creating a
commit file fails if it exists; a local disk's rename replaces it, and
delta-spark's LocalLogStore makes the check and the rename atomic only within
one JVM. A second Spark application committing to bronze (the maintenance
DAG's OPTIMIZE did, from the Spark Connect server) could overwrite one of raw
landing's commits and lose its batch (docs/decisions.md, "One writer per
Delta table"). The maintenance DAG only VACUUMs bronze, which commits nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse import catalog
from lakehouse.batch.maintenance import compact as optimize_closed
from lakehouse.catalog import Table
from lakehouse.settings import Settings
from lakehouse.stream.source import PARSED, field, is_valid

log = logging.getLogger(__name__)


def table_ddl(table: Table, path: str) -> str:
    """CREATE TABLE IF NOT EXISTS for a catalogue table at `path` (plain
    protocol: NOT NULL columns are writer version 2 invariants)."""
    cols = ", ".join(
        f"`{f.name}` {f.dataType.simpleString()}{'' if f.nullable else ' NOT NULL'}" for f in table.spark_schema()
    )
    parts = ", ".join(f"`{c}`" for c in table.partition_by)
    return f"CREATE TABLE IF NOT EXISTS delta.`{path}` ({cols}) USING DELTA PARTITIONED BY ({parts})"


def ensure_tables(spark: SparkSession, settings: Settings) -> None:
    """Create bronze/events and bronze/quarantine, empty, if absent, so
    readers (DAG, delta-rs, DuckDB) find them before the first record lands;
    and give them the retention properties (catalog.retention_properties)
    now, before raw landing appends, so that a change of
    DELTA_VACUUM_RETENTION_HOURS is not a metadata commit racing its appends."""
    properties = catalog.retention_properties(settings.delta_vacuum_retention_hours)
    for table in (catalog.BRONZE_EVENTS, catalog.BRONZE_QUARANTINE):
        spark.sql(table_ddl(table, table.path(settings)))
        catalog.apply_properties(spark, table.path(settings), properties)


def events_rows(batch: DataFrame) -> DataFrame:
    """Valid records -> bronze/events columns (catalog.BRONZE_EVENTS)."""
    return batch.where(is_valid()).select(
        *(field(c).alias(c) for c in ("event_id", "user_id", "event_type", "page", "source", "event_ts")),
        F.to_date(field("event_ts")).alias("event_date"),  # session time zone is UTC
        F.col("value").cast("string").alias("raw_payload"),
        F.col("topic").alias("kafka_topic"),
        F.col("partition").alias("kafka_partition"),
        F.col("offset").alias("kafka_offset"),
        F.col("timestamp").alias("kafka_timestamp"),
        F.col("ingest_ts"),
    )


def quarantine_rows(batch: DataFrame) -> DataFrame:
    """Invalid records -> bronze/quarantine columns, raw bytes as they came."""
    return batch.where(~is_valid()).select(
        F.col("value").alias("raw_value"),
        F.col("key").alias("raw_key"),
        field("reason").alias("reason"),
        F.col("topic").alias("kafka_topic"),
        F.col("partition").alias("kafka_partition"),
        F.col("offset").alias("kafka_offset"),
        F.col("timestamp").alias("kafka_timestamp"),
        F.col("ingest_ts"),
        F.to_date("ingest_ts").alias("ingest_date"),
    )


@dataclass(frozen=True)
class Landed:
    records: int
    events: int
    quarantined: int


def append(rows: DataFrame, table: Table, settings: Settings, app_id: str, batch_id: int) -> None:
    """Append `rows` to `table` as micro-batch `batch_id` of `app_id`: Delta
    skips it if that app id has committed this batch (or a later one)."""
    (
        rows.select(*table.schema.names)
        .write.format("delta")
        .mode("append")
        .option("txnAppId", app_id)
        .option("txnVersion", batch_id)
        .save(table.path(settings))
    )


def land_batch(batch: DataFrame, batch_id: int, settings: Settings, app_prefix: str) -> Landed:
    """One micro-batch of validated Kafka rows (lakehouse.stream.source.validated)
    into bronze/events and bronze/quarantine. An empty side is not written."""
    cached = batch.select("key", "value", "topic", "partition", "offset", "timestamp", PARSED) \
        .withColumn("ingest_ts", F.current_timestamp()).persist()
    try:
        counts = cached.agg(F.count(F.lit(1)).alias("n"), F.count_if(is_valid()).alias("valid")).first()
        landed = Landed(counts["n"], counts["valid"], counts["n"] - counts["valid"])
        if landed.events:
            append(events_rows(cached), catalog.BRONZE_EVENTS, settings, f"{app_prefix}:bronze/events", batch_id)
        if landed.quarantined:
            append(quarantine_rows(cached), catalog.BRONZE_QUARANTINE, settings,
                   f"{app_prefix}:bronze/quarantine", batch_id)
        return landed
    finally:
        cached.unpersist()


def compact(spark: SparkSession, settings: Settings, before: date) -> dict[str, dict]:
    """OPTIMIZE the partitions of bronze/events and bronze/quarantine older
    than `before` (closed: DELTA_COMPACT_AFTER_DAYS). Raw landing runs it in
    the first micro-batch of each UTC day, after that batch's appends: the
    streams' many small files of a closed date become a few large ones.
    A failure is logged and does not stop raw landing (the next day's run
    compacts what this one left)."""
    out = {}
    for table in (catalog.BRONZE_EVENTS, catalog.BRONZE_QUARANTINE):
        try:
            out[table.name] = optimize_closed(spark, table, settings, before)
        except Exception:  # noqa: BLE001 - upkeep must not crash-loop the stream
            log.exception("compacting %s failed; raw landing goes on", table.key)
    return out
