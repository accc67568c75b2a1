"""The events topic as both queries read it: Spark's own Kafka connector
(`spark.readStream.format("kafka")`, spark-sql-kafka-0-10) and the contract's
rules (lakehouse.validation) applied to every record by one Arrow UDF.

Options, as Spark's Kafka integration guide defines them:

    kafka.bootstrap.servers   KAFKA_BOOTSTRAP_SERVERS
    subscribe                 KAFKA_TOPIC
    startingOffsets           STREAM_STARTING_OFFSETS (a new checkpoint only)
    maxOffsetsPerTrigger      STREAM_MAX_RECORDS_PER_BATCH
    failOnDataLoss            STREAM_FAIL_ON_DATA_LOSS
    kafka.isolation.level     read_committed: records of aborted transactions
                              are never read, open ones wait for their commit
    minOffsetsPerTrigger      STREAM_MIN_RECORDS_PER_BATCH  } raw landing only
    maxTriggerDelay           STREAM_MAX_BATCH_DELAY_SECONDS } (batching_options)
    kafka.<key>               every entry of KAFKA_OPTIONS (security.protocol,
                              sasl.*, ssl.*, ...), which may also override the above

Spark's consumer decompresses every codec the Kafka client knows (gzip,
snappy, lz4, zstd) and handles transaction markers and compacted gaps.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.kafka_clients import java_options
from lakehouse.settings import Settings

#: What the validation UDF adds to each Kafka row: a struct of the parsed
#: fields (NULL unless valid) and `reason` (NULL when valid).
PARSED = "parsed"


def kafka_options(settings: Settings) -> dict[str, str]:
    """The Kafka source's options from the settings (see the module docstring)."""
    options = {
        "kafka.bootstrap.servers": settings.kafka_bootstrap_servers,
        "subscribe": settings.kafka_topic,
        "startingOffsets": settings.stream_starting_offsets,
        "maxOffsetsPerTrigger": str(settings.stream_max_records_per_batch),
        "failOnDataLoss": str(settings.stream_fail_on_data_loss).lower(),
        "kafka.isolation.level": "read_committed",
    }
    for key, value in java_options(settings).items():
        options[f"kafka.{key}"] = value
    return options


def batching_options(settings: Settings) -> dict[str, str]:
    """Raw landing's batching: a batch starts once STREAM_MIN_RECORDS_PER_BATCH
    records wait or STREAM_MAX_BATCH_DELAY_SECONDS have passed (none when the
    minimum is 0). A backlog is still read in back-to-back batches of up to
    maxOffsetsPerTrigger; only a slow topic waits."""
    if not settings.stream_min_records_per_batch:
        return {}
    return {"minOffsetsPerTrigger": str(settings.stream_min_records_per_batch),
            "maxTriggerDelay": f"{int(settings.stream_max_batch_delay_seconds * 1000)}ms"}


def kafka_stream(spark: SparkSession, settings: Settings, **extra: str) -> DataFrame:
    """The topic as Spark's Kafka source gives it: key, value, topic,
    partition, offset, timestamp, timestampType. `extra`: more source options
    (batching_options)."""
    return spark.readStream.format("kafka").options(**kafka_options(settings), **extra).load()


def _validate_udf():
    """lakehouse.validation.validate_arrow as an Arrow UDF. The worker unpickles
    the function by reference, so it imports lakehouse.validation only (not
    this module, with the settings and pydantic).

    Marked nondeterministic so that Spark evaluates it once per record: for a
    deterministic UDF the optimizer pushes a filter on its result (fast
    aggregation's `reason IS NULL`) below the projection that computes it,
    and the physical plan then ran the UDF twice, in two Python workers per
    task. The rules themselves are deterministic (a replay gets the same
    verdicts, see `validated`)."""
    from pyspark.sql.functions import arrow_udf
    from pyspark.sql.pandas.types import from_arrow_type

    from lakehouse.validation import VALIDATED_TYPE, validate_arrow

    return arrow_udf(validate_arrow, from_arrow_type(VALIDATED_TYPE)).asNondeterministic()


def validated(kafka: DataFrame) -> DataFrame:
    """Kafka rows plus `parsed` (lakehouse.validation.VALIDATED_TYPE). The rules
    see the value and the record's Kafka timestamp only, never the clock, so a
    replayed batch gets the same verdicts."""
    return kafka.withColumn(PARSED, _validate_udf()(F.col("value"), F.unix_micros(F.col("timestamp"))))


def field(name: str) -> Column:
    """A field of `parsed`, e.g. field("event_ts")."""
    return F.col(PARSED).getField(name)


def is_valid() -> Column:
    return field("reason").isNull()
