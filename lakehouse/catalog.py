"""The catalogue of Delta tables: for each table, where it is stored, its
schema and its partitioning, declared once. Streams, DAG, maintenance, tests
and the benchmark find a table here (`catalog.BRONZE_EVENTS.path(settings)`),
never by spelling its path.

    bronze/events       every valid Kafka record exactly once (raw landing)
    bronze/quarantine   Kafka records that are not valid events, with the reason
    silver/events       bronze typed and de-duplicated by event_id (DAG)
    silver/quarantine   bronze rows refused by silver's rules, with the reasons
    gold/<name>         one table per gold model (lakehouse/batch/gold/<name>.py)

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
