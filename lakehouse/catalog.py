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
of `retention_properties`, set by each table's one writer (`apply_properties`):
raw landing on bronze when it starts, lakehouse_maintenance on silver before
each VACUUM.

The schemas are Arrow schemas; Spark writers take `spark_schema()`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pyarrow as pa

from lakehouse.settings import Settings

log = logging.getLogger(__name__)


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


#: Delta's own default of VACUUM's file retention, in hours (7 days).
DELTA_DEFAULT_FILE_RETENTION_HOURS = 168
FILE_RETENTION = "delta.deletedFileRetentionDuration"
LOG_RETENTION = "delta.logRetentionDuration"


def retention_properties(hours: int) -> dict[str, str]:
    """The Delta table properties of a table we vacuum, for `hours` of
    history (DELTA_VACUUM_RETENTION_HOURS).

    * `delta.deletedFileRetentionDuration`: delta-spark 4.4 ignores VACUUM's
      `RETAIN n HOURS` (unless 0); this property decides which files VACUUM
      deletes.
    * `delta.logRetentionDuration`, the same (Delta's default is 30 days): a
      version whose files are kept stays readable, and the log holds no more.
      Raw landing commits to bronze every minute or so; every commit leaves
      four entries in `_delta_log` (the commit, its checksum, and Hadoop's
      `.crc` file of each), and delta-spark lists the whole directory on every
      commit (Hadoop's local file system has no listing from a name): at
      250,000 entries an append took 12-15 s instead of 0.5 s, at 1,000,000
      46 s, or ran out of a 512 MB heap (docs/performance.md)."""
    interval = f"interval {int(hours)} hours"
    return {FILE_RETENTION: interval, LOG_RETENTION: interval}


def properties_differ(spark, path: str, wanted: dict[str, str]) -> dict[str, str | None]:
    """The properties of `wanted` that the Delta table at `path` does not
    carry, with the value it has (None: unset). Any Spark session."""
    current = {row["key"]: row["value"] for row in spark.sql(f"SHOW TBLPROPERTIES delta.`{path}`").collect()}
    return {k: current.get(k) for k, v in wanted.items() if current.get(k) != v}


def apply_properties(spark, path: str, wanted: dict[str, str]) -> dict[str, str]:
    """Make the Delta table at `path` carry `wanted`: one metadata commit,
    only when a property differs. Returns what was changed. Any Spark session
    (classic or Spark Connect); only the table's writer calls it (one writer
    per table: lakehouse.stream.bronze)."""
    changed = {k: wanted[k] for k in properties_differ(spark, path, wanted)}
    if changed:
        pairs = ", ".join(f"'{k}' = '{v}'" for k, v in changed.items())
        spark.sql(f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES ({pairs})")
        log.info("%s: table properties %s", path, changed)
    return changed
