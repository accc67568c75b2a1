"""Parse and validate Kafka messages into bronze events or quarantine rows.

The rules are written once, as Spark SQL expressions (they run in the JVM,
vectorised, with no per-row Python): `parse_messages` turns the Kafka source's
columns into the bronze columns plus a `reason` that is NULL for a valid event
and names the first rule the message breaks otherwise. Raw landing splits the
result with `split_bronze`; fast aggregation keeps the valid rows with
`valid_events`. JSON is parsed with `try_parse_json` (VARIANT), so a field's
JSON type is checked exactly: "5" is not a user_id, 5.0 is not either. An
absent field is `missing_field`; a JSON null is `wrong_type` (null is a type).

Reasons are `<code>` or `<code>:<field>`, the codes being the REASON_* names.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from lakehouse.contract import (
    BRONZE_EVENTS_SCHEMA,
    BRONZE_QUARANTINE_SCHEMA,
    EVENT_FIELDS,
    EVENT_TYPES,
    MAX_MESSAGE_BYTES,
    SOURCES,
)

REASON_EMPTY = "empty_message"
REASON_OVERSIZE = "oversize"
REASON_UNDECODABLE = "undecodable"
REASON_INVALID_JSON = "invalid_json"
REASON_NOT_OBJECT = "not_an_object"
REASON_MISSING_FIELD = "missing_field"
REASON_WRONG_TYPE = "wrong_type"
REASON_INVALID_EVENT_ID = "invalid_event_id"
REASON_INVALID_USER_ID = "invalid_user_id"
REASON_UNKNOWN_EVENT_TYPE = "unknown_event_type"
REASON_UNKNOWN_SOURCE = "unknown_source"
REASON_INVALID_PAGE = "invalid_page"
REASON_INVALID_TIMESTAMP = "invalid_timestamp"
REASON_ABSURD_TIMESTAMP = "absurd_timestamp"

#: Event times before this are absurd (clock reset, epoch zero).
MIN_EVENT_TIME = datetime(2000, 1, 1, tzinfo=timezone.utc)
#: Event times later than ingest time plus this many hours are absurd.
MAX_FUTURE_HOURS = 24
#: JSON type each field must have, as `schema_of_variant` names it.
FIELD_TYPES = {f: ("BIGINT" if f == "user_id" else "STRING") for f in EVENT_FIELDS}

UUID_RE = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
#: ISO-8601 date-time with an explicit zone (Z or +hh:mm): UTC must be stated.
ISO_TS_RE = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})$"

def _rules(value: Column, ts: Column, ingest_ts: Column) -> list[tuple[Column, Column]]:
    """(condition, reason) pairs in order; the first that holds is the reason.
    Uses the staged columns of `parse_messages` (__text, __doc, __t_<field>)."""
    rules: list[tuple[Column, Column]] = [
        (value.isNull() | (F.octet_length(value) == 0), F.lit(REASON_EMPTY)),
        (F.octet_length(value) > MAX_MESSAGE_BYTES, F.lit(REASON_OVERSIZE)),
        (~F.expr("is_valid_utf8(__text)"), F.lit(REASON_UNDECODABLE)),
        (F.col("__doc").isNull(), F.lit(REASON_INVALID_JSON)),
        # valid JSON that starts with "{" is an object
        (~F.col("__text").rlike(r"^\s*\{"), F.lit(REASON_NOT_OBJECT)),
    ]
    rules += [(F.col(f"__t_{name}").isNull(), F.lit(f"{REASON_MISSING_FIELD}:{name}")) for name in EVENT_FIELDS]
    rules += [
        (F.col(f"__t_{name}") != expected, F.lit(f"{REASON_WRONG_TYPE}:{name}"))
        for name, expected in FIELD_TYPES.items()
    ]
    rules += [
        (~F.col("event_id").rlike(UUID_RE), F.lit(REASON_INVALID_EVENT_ID)),
        (F.col("user_id") <= 0, F.lit(REASON_INVALID_USER_ID)),
        (~F.col("event_type").isin(*EVENT_TYPES), F.lit(REASON_UNKNOWN_EVENT_TYPE)),
        (~F.col("source").isin(*SOURCES), F.lit(REASON_UNKNOWN_SOURCE)),
        (~F.col("page").startswith("/"), F.lit(REASON_INVALID_PAGE)),
        (~F.col("__ts_text").rlike(ISO_TS_RE) | ts.isNull(), F.lit(REASON_INVALID_TIMESTAMP)),
        (
            (ts < F.lit(MIN_EVENT_TIME)) | (ts > ingest_ts + F.expr(f"INTERVAL {MAX_FUTURE_HOURS} HOURS")),
            F.lit(REASON_ABSURD_TIMESTAMP),
        ),
    ]
    return rules


def parse_messages(df: DataFrame, ingest_ts: Column | None = None) -> DataFrame:
    """Kafka rows (key, value, topic, partition, offset, timestamp) -> bronze
    columns + reason (NULL when valid) + raw_value/raw_key (kept only for
    invalid rows) + ingest_date. Needs spark.sql.session.timeZone=UTC."""
    ingest_ts = F.current_timestamp() if ingest_ts is None else ingest_ts
    staged = (
        df.withColumn("__text", F.col("value").cast("string"))
        .withColumn("__doc", F.expr("try_parse_json(__text)"))
        .withColumn("event_id", F.expr("try_variant_get(__doc, '$.event_id', 'string')"))
        .withColumn("user_id", F.expr("try_variant_get(__doc, '$.user_id', 'bigint')"))
        .withColumn("event_type", F.expr("try_variant_get(__doc, '$.event_type', 'string')"))
        .withColumn("page", F.expr("try_variant_get(__doc, '$.page', 'string')"))
        .withColumn("source", F.expr("try_variant_get(__doc, '$.source', 'string')"))
        .withColumn("__ts_text", F.expr("try_variant_get(__doc, '$.timestamp', 'string')"))
        .withColumn("event_ts", F.expr("try_to_timestamp(__ts_text)"))
        .withColumn("ingest_ts", ingest_ts)
    )
    for name in EVENT_FIELDS:  # JSON type of each field (NULL when absent), computed once
        staged = staged.withColumn(f"__t_{name}", F.expr(f"schema_of_variant(try_variant_get(__doc, '$.{name}'))"))
    reason = F.lit(None).cast("string")
    for cond, why in reversed(_rules(F.col("value"), F.col("event_ts"), F.col("ingest_ts"))):
        reason = F.when(cond, why).otherwise(reason)
    staged = staged.withColumn("reason", reason)
    ok = F.col("reason").isNull()
    return staged.select(
        *[F.when(ok, F.col(c)).alias(c) for c in ("event_id", "user_id", "event_type", "page", "source", "event_ts")],
        F.when(ok, F.to_date("event_ts")).alias("event_date"),
        F.when(ok, F.col("__text")).alias("raw_payload"),
        F.col("topic").alias("kafka_topic"),
        F.col("partition").cast("int").alias("kafka_partition"),
        F.col("offset").cast("long").alias("kafka_offset"),
        F.col("timestamp").alias("kafka_timestamp"),
        F.col("ingest_ts"),
        F.col("reason"),
        F.when(~ok, F.col("value")).alias("raw_value"),
        F.when(~ok, F.col("key")).alias("raw_key"),
        F.to_date("ingest_ts").alias("ingest_date"),
    )


def valid_events(df: DataFrame) -> DataFrame:
    """The well-formed events of a Kafka DataFrame (batch or streaming)."""
    return parse_messages(df).where(F.col("reason").isNull()).select(
        "event_id", "user_id", "event_type", "page", "source", "event_ts"
    )


def split_bronze(parsed: pa.Table) -> tuple[pa.Table, pa.Table]:
    """Arrow result of `parse_messages` -> (bronze events, quarantine rows),
    each cast to its contract schema."""
    valid = pc.is_null(parsed["reason"])
    events = parsed.filter(valid).select(BRONZE_EVENTS_SCHEMA.names).cast(BRONZE_EVENTS_SCHEMA)
    quarantine = parsed.filter(pc.invert(valid)).select(BRONZE_QUARANTINE_SCHEMA.names)
    return events, quarantine.cast(BRONZE_QUARANTINE_SCHEMA)


def reason_code(reason: str) -> str:
    """The rule code of a reason, e.g. "missing_field:user_id" -> "missing_field"."""
    return reason.split(":", 1)[0]
