"""Delta access for the batch layer: every write, and every read of a day's
events, through Spark (delta-spark); a date of a small result table (gold: a
handful of rows) read with delta-rs, which needs no Spark session
(`read_small_date`).

Every Spark function takes a SparkSession, classic or Spark Connect: no
`sparkContext`, no RDD, no py4j, so the DAG's tasks run on the stack's Spark
Connect server (or any other endpoint `spark_default` names). Reads and writes
run on the executors; nothing of a day is collected to the driver.

Every write replaces exactly one event date: `mode("overwrite")` with
`replaceWhere = "event_date = 'D'"` is one atomic Delta commit per table and
date, leaves other dates untouched, and makes re-running a date idempotent.
The tables stay plain Delta (readable by delta-rs and DuckDB).
"""

from __future__ import annotations

import logging
from datetime import date

from lakehouse.catalog import Table

log = logging.getLogger(__name__)

PARTITION = "event_date"


def date_predicate(event_date: date) -> str:
    """The SQL predicate of one event date (replaceWhere, filters)."""
    return f"{PARTITION} = DATE'{event_date.isoformat()}'"


def _missing(exc: Exception) -> bool:
    text = str(exc)
    return any(k in text for k in ("PATH_NOT_FOUND", "DELTA_MISSING_DELTA_TABLE", "is not a Delta table",
                                   "DELTA_TABLE_NOT_FOUND", "doesn't exist", "does not exist"))


def current_version(spark, path: str) -> int | None:
    """The table's latest version; None when there is no Delta table at path."""
    try:
        row = spark.sql(f"DESCRIBE HISTORY delta.`{path}` LIMIT 1").select("version").first()
    except Exception as exc:  # AnalysisException (classic and Connect differ in class)
        if _missing(exc):
            return None
        raise
    return None if row is None else int(row["version"])


def read_date(spark, table: Table, path: str, event_date: date, version: int | None = None):
    """One event date of a Delta table as a DataFrame with the catalogue's
    columns (empty when the table does not exist). `version` pins a snapshot
    (time travel) so counts and data of one run agree while writers append."""
    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", version)
    try:
        df = reader.load(path).where(date_predicate(event_date))
        df.schema  # noqa: B018 - analysis now: a missing table is an empty date, not an error later
    except Exception as exc:
        if not _missing(exc):
            raise
        log.info("no Delta table at %s: %s is empty", path, event_date)
        return empty_frame(spark, table)
    return df.select(*table.schema.names)


def read_small_date(table: Table, path: str, event_date: date):
    """One event date of a small Delta table (a gold result: a few rows per
    date) as an Arrow table with the catalogue's columns and types, read with
    delta-rs in this process: no Spark session, no Spark job. Only the date's
    partition is read; a missing table is an empty date."""
    from deltalake import DeltaTable

    if not DeltaTable.is_deltatable(path):
        log.info("no Delta table at %s: %s is empty", path, event_date)
        return table.schema.empty_table()
    rows = DeltaTable(path).to_pyarrow_table(columns=list(table.schema.names),
                                             filters=[(PARTITION, "=", event_date)])
    return rows.cast(table.schema)


def holds_nothing_of(path: str, event_date: date) -> bool:
    """Whether a Delta table exists at `path` and its latest version has no
    data file of event_date; read from the log with delta-rs in this process
    (no Spark job)."""
    from deltalake import DeltaTable

    if not DeltaTable.is_deltatable(path):
        return False
    return not DeltaTable(path).file_uris(partition_filters=[(PARTITION, "=", event_date.isoformat())])


def empty_frame(spark, table: Table):
    """No rows, the catalogue's columns: a table that does not exist yet.
    Spark reports no observed metrics (`observe`) for a plan over it."""
    return spark.createDataFrame([], ddl(table))


def ddl(table: Table) -> str:
    """The table's columns as a DDL string ("`event_id` string, ...").

    Types go to Spark by name, not as type objects: a StringType object sent
    over Spark Connect arrives with an explicit collation, which Delta then
    stores as 'string collate UTF8_BINARY', a type delta-rs cannot read."""
    return ", ".join(f"`{f.name}` {f.dataType.simpleString()}" for f in table.spark_schema().fields)


def conform(df, table: Table):
    """`df`'s columns of the table, in its order, cast to its Spark types (by name, see `ddl`)."""
    from pyspark.sql import functions as F

    fields = table.spark_schema().fields
    return df.select(*[F.col(f.name).cast(f.dataType.simpleString()).alias(f.name) for f in fields])


def replace_date(df, table: Table, path: str, event_date: date) -> None:
    """Replace event_date's rows of the Delta table at `path` (created when
    absent, partitioned as catalogued) with `df`, in one commit, on the
    executors. A row of another date fails the write (Delta checks
    replaceWhere), so nothing outside the date can change."""
    (
        conform(df, table)
        .write.format("delta")
        .mode("overwrite")
        .option("replaceWhere", date_predicate(event_date))
        .partitionBy(*table.partition_by)
        .save(path)
    )
    log.info("replaced %s of %s", event_date, path)

