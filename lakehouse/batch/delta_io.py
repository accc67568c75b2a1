"""Delta access for the batch layer: Spark reads a date partition's Parquet
files (delta-rs lists them: no delta-spark jars here), delta-rs commits.

Every write replaces exactly one event date (`overwrite` with a predicate), so
re-running a date is idempotent and other dates are never touched.
"""

from __future__ import annotations

import logging
from datetime import date

import pyarrow as pa
from deltalake import DeltaTable, write_deltalake

log = logging.getLogger(__name__)

PARTITION = "event_date"


def partition_files(path: str, event_date: date) -> list[str]:
    """Parquet files of one event_date partition; [] when the table is absent."""
    if not DeltaTable.is_deltatable(path):
        return []
    table = DeltaTable(path)
    return table.file_uris(file_pruning_predicate=f"{PARTITION} = '{event_date.isoformat()}'")


def read_partition_spark(spark, path: str, event_date: date, schema: pa.Schema):
    """One event_date partition as a Spark DataFrame with `schema`'s columns
    (empty, not an error, when there is no data for the date)."""
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import from_arrow_schema

    files = partition_files(path, event_date)
    if not files:
        log.info("no data in %s for %s", path, event_date)
        return spark.createDataFrame([], from_arrow_schema(schema))
    file_cols = [f.name for f in schema if f.name != PARTITION]
    df = spark.read.parquet(*files).select(*file_cols)
    df = df.withColumn(PARTITION, F.lit(event_date))
    return df.select(*schema.names)


def read_partition_arrow(path: str, event_date: date, columns: list[str] | None = None) -> pa.Table | None:
    """One event_date partition as Arrow; None when the table does not exist."""
    if not DeltaTable.is_deltatable(path):
        return None
    return DeltaTable(path).to_pyarrow_table(
        columns=columns, filters=[(PARTITION, "=", event_date)]
    )


def to_arrow(df, schema: pa.Schema) -> pa.Table:
    """A (small, per-date) Spark result as Arrow with exactly `schema`."""
    return conform(df.select(*schema.names).toArrow(), schema)


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table`'s columns of `schema`, cast to it (types and nullability)."""
    return pa.Table.from_arrays([table.column(f.name).cast(f.type) for f in schema], schema=schema)


def replace_partition(path: str, table: pa.Table, event_date: date) -> int:
    """Replace the rows of `event_date` in the Delta table at `path` (created
    when absent) with `table`, in one commit. Returns the rows written."""
    bad = set(table.column(PARTITION).unique().to_pylist()) - {event_date}
    if bad:
        raise ValueError(f"rows for other dates {sorted(map(str, bad))} in a write of {event_date}")
    write_deltalake(
        path,
        table,
        mode="overwrite",
        predicate=f"{PARTITION} = '{event_date.isoformat()}'",
        partition_by=[PARTITION],
    )
    log.info("replaced %s in %s with %d rows", event_date, path, table.num_rows)
    return table.num_rows
