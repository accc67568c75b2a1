"""The events topic as validated events: the Kafka source
(lakehouse.kafka_source, same options, offsets and exactly-once behaviour)
with every record checked against the contract (lakehouse.validation) in the
Python worker that decoded it. Both streaming queries read this, so the JVM
never parses JSON and no second Python pass is needed.

    from lakehouse.event_source import register
    register(spark)
    df = spark.readStream.format("lakehouse_events").option("bootstrap.servers", ...)...

Columns: lakehouse.validation.PARSED_SCHEMA (reason NULL = a valid event).
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


class EventStreamReader(KafkaStreamReader):
    def read(self, partition: KafkaPartition) -> Iterator:
        yield from read_range(self.opts, partition, to_batch=validated_batch)


class EventDataSource(KafkaDataSource):
    @classmethod
    def name(cls) -> str:
        return SHORT_NAME

    def schema(self):
        from pyspark.sql.pandas.types import from_arrow_schema

        from lakehouse.validation import PARSED_SCHEMA

        return from_arrow_schema(PARSED_SCHEMA)

    def streamReader(self, schema) -> EventStreamReader:
        return EventStreamReader(KafkaOptions.parse(self.options))


def register(spark) -> None:
    """Make `spark.readStream.format("lakehouse_events")` available."""
    spark.dataSource.register(EventDataSource)
