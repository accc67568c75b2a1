"""The catalogue of Delta tables: for each table, where it is stored, its
schema and its partitioning, declared once. Streams, DAG, maintenance, tests
and the benchmark find a table here (`catalog.BRONZE_EVENTS.path(settings)`),
never by spelling its path.

    bronze/events       every valid Kafka record exactly once (raw landing)
    bronze/quarantine   Kafka records that are not valid events, with the reason
    silver/events       bronze typed and de-duplicated by event_id (DAG)
    silver/quarantine   bronze rows refused by silver's rules, with the reasons
    gold/<name>         one table per gold model (lakehouse/batch/gold/<name>.py)

Bronze and silver, the tables VACUUM runs on, carry the retention properties
of `retention_properties` (set by raw landing when it starts and by
lakehouse_maintenance before each VACUUM: `apply_properties`).

The schemas are Arrow schemas; Spark writers take `spark_schema()`.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from lakehouse.settings import Settings


@dataclass(frozen=True)
class Table:
    layer: str
    name: str
    schema: pa.Schema
    partition_by: tuple[str, ...]

    @property
    def key(self) -> str:
        """layer/name, e.g. "bronze/events"."""
        return f"{self.layer}/{self.name}"

    def path(self, settings: Settings) -> str:
        return str(settings.data_dir / self.layer / self.name)

    def spark_schema(self):
        from pyspark.sql.pandas.types import from_arrow_schema

        return from_arrow_schema(self.schema)


def _tables() -> dict[str, Table]:
    from lakehouse.batch.gold import MODELS
    from lakehouse.batch.silver import SILVER_EVENTS_SCHEMA, SILVER_QUARANTINE_SCHEMA
    from lakehouse.contract import (
        BRONZE_EVENTS_PARTITION,
        BRONZE_EVENTS_SCHEMA,
        BRONZE_QUARANTINE_PARTITION,
        BRONZE_QUARANTINE_SCHEMA,
    )

    tables = [
        Table("bronze", "events", BRONZE_EVENTS_SCHEMA, tuple(BRONZE_EVENTS_PARTITION)),
        Table("bronze", "quarantine", BRONZE_QUARANTINE_SCHEMA, tuple(BRONZE_QUARANTINE_PARTITION)),
        Table("silver", "events", SILVER_EVENTS_SCHEMA, ("event_date",)),
        Table("silver", "quarantine", SILVER_QUARANTINE_SCHEMA, ("event_date",)),
        *(Table("gold", name, model.SCHEMA, ("event_date",)) for name, model in MODELS.items()),
    ]
    return {t.key: t for t in tables}


#: Every table by "layer/name".
TABLES = _tables()
BRONZE_EVENTS = TABLES["bronze/events"]
BRONZE_QUARANTINE = TABLES["bronze/quarantine"]
SILVER_EVENTS = TABLES["silver/events"]
SILVER_QUARANTINE = TABLES["silver/quarantine"]
GOLD = {t.name: t for t in TABLES.values() if t.layer == "gold"}


#: Delta's own defaults of the two retention properties, in hours (what an
#: unset property means): VACUUM's file retention 7 days, the log's 30 days.
DELTA_DEFAULT_FILE_RETENTION_HOURS = 168
DELTA_DEFAULT_LOG_RETENTION_HOURS = 720
FILE_RETENTION = "delta.deletedFileRetentionDuration"
LOG_RETENTION = "delta.logRetentionDuration"


def retention_properties(hours: int) -> dict[str, str | None]:
    """The Delta table properties that keep `hours` of history
    (DELTA_VACUUM_RETENTION_HOURS) in a table we vacuum (None: unset, Delta's
    default).

    delta-spark 4.4 ignores VACUUM's `RETAIN n HOURS` (unless 0): the table
    property `delta.deletedFileRetentionDuration` decides which files VACUUM
    deletes. The log is kept at least as long (Delta's 30 days otherwise), so a
    version whose files are kept can still be read (time travel, RESTORE)."""
    return {
        FILE_RETENTION: None if hours == DELTA_DEFAULT_FILE_RETENTION_HOURS else f"interval {hours} hours",
        LOG_RETENTION: None if hours <= DELTA_DEFAULT_LOG_RETENTION_HOURS else f"interval {hours} hours",
    }


def apply_properties(spark, path: str, wanted: dict[str, str | None]) -> dict[str, str | None]:
    """Make the Delta table at `path` carry `wanted` (None: unset); only what
    differs is changed, one metadata commit at most for each of set and unset.
    Returns what was changed. Any Spark session (classic or Spark Connect)."""
    current = {row["key"]: row["value"] for row in spark.sql(f"SHOW TBLPROPERTIES delta.`{path}`").collect()}
    to_set = {k: v for k, v in wanted.items() if v is not None and current.get(k) != v}
    to_unset = [k for k, v in wanted.items() if v is None and k in current]
    if to_set:
        pairs = ", ".join(f"'{k}' = '{v}'" for k, v in to_set.items())
        spark.sql(f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES ({pairs})")
    if to_unset:
        keys = ", ".join(f"'{k}'" for k in to_unset)
        spark.sql(f"ALTER TABLE delta.`{path}` UNSET TBLPROPERTIES IF EXISTS ({keys})")
    return {**to_set, **{k: None for k in to_unset}}
