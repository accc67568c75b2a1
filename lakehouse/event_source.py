"""The events topic as validated events: the Kafka source
(lakehouse.kafka_source, same options, offsets and exactly-once behaviour)
with every record checked against the contract (lakehouse.validation) in the
Python worker that decoded it. Both streaming queries read this, so the JVM
never parses JSON and no second Python pass is needed.

    from lakehouse.event_source import register
    register(spark)
    df = spark.readStream.format("lakehouse_events").option("bootstrap.servers", ...)...

Columns: lakehouse.validation.PARSED_SCHEMA (reason NULL = a valid event),
or the subset named in option ``columns`` (comma-separated): Python data
sources get no column pruning from Spark, so a query that needs five columns
says so and the other twelve never cross into the JVM.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from lakehouse.kafka_source import KafkaDataSource, KafkaOptions, KafkaPartition, KafkaStreamReader, read_range
from lakehouse.kafka_wire import Records

SHORT_NAME = "lakehouse_events"


def validated_batch(part: KafkaPartition, rec: Records):
    """Decoded records -> one PARSED_SCHEMA batch; ingest time is now."""
    from lakehouse.validation import parse_records

    return parse_records(part.topic, part.partition, rec.keys, rec.values, rec.offsets, rec.timestamps,
                         time.time_ns() // 1000)


def selected_schema(columns: str | None):
    """PARSED_SCHEMA, or its fields named in `columns` (in the order given)."""
    from lakehouse.validation import PARSED_SCHEMA

    if not columns:
        return PARSED_SCHEMA
    names = [c.strip() for c in columns.split(",") if c.strip()]
    unknown = [n for n in names if n not in PARSED_SCHEMA.names]
    if unknown or not names:
        raise ValueError(f"{SHORT_NAME}: option columns names unknown columns {unknown}; "
                         f"choose from {PARSED_SCHEMA.names}")
    import pyarrow as pa

    return pa.schema([PARSED_SCHEMA.field(n) for n in names])


class EventStreamReader(KafkaStreamReader):
    def __init__(self, opts: KafkaOptions, columns: list[str]) -> None:
        super().__init__(opts)
        self.columns = columns

    def __getstate__(self):
        return {**super().__getstate__(), "columns": self.columns}

    def read(self, partition: KafkaPartition) -> Iterator:
        columns = self.columns
        for batch in read_range(self.opts, partition, to_batch=validated_batch):
            yield batch.select(columns) if columns != batch.schema.names else batch


class EventDataSource(KafkaDataSource):
    @classmethod
    def name(cls) -> str:
        return SHORT_NAME

    def schema(self):
        from pyspark.sql.pandas.types import from_arrow_schema

        return from_arrow_schema(selected_schema(self._columns()))

    def streamReader(self, schema) -> EventStreamReader:
        return EventStreamReader(KafkaOptions.parse(self.options), selected_schema(self._columns()).names)

    def _columns(self) -> str | None:
        return {str(k).lower(): v for k, v in self.options.items()}.get("columns")


def register(spark) -> None:
    """Make `spark.readStream.format("lakehouse_events")` available."""
    spark.dataSource.register(EventDataSource)
