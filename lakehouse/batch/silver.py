"""Silver events: bronze typed, de-duplicated and rule-checked, per event date.

* De-duplication: one row per event_id, the **earliest Kafka record** wins:
  smallest kafka_timestamp (records without one last), then smallest
  kafka_partition, then smallest kafka_offset. Resends of the producer are
  byte-identical, so which copy wins only matters for lineage; the order makes
  the choice deterministic, hence re-runs identical.
* Rules: a row that breaks one is not silver; it goes to `silver/quarantine`
  with `reason` = the comma-separated names of every rule it breaks (RULES).
  Rows without an event_id cannot be de-duplicated and are quarantined as is.

The Great Expectations gate (`quality`) then checks the same rules on what the
date offered, so a rule-breaking bronze row also stops the run before gold.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone

import pyarrow as pa

from lakehouse.contract import BRONZE_EVENTS_SCHEMA, EVENT_TYPES, RECORD_FIELDS, SOURCES, TYPED_EVENT_FIELDS

#: Delta `silver/events`: one typed row per event_id, partitioned by event_date.
SILVER_EVENTS_SCHEMA = pa.schema(
    [
        *TYPED_EVENT_FIELDS,
        *(f.with_nullable(True) for f in RECORD_FIELDS),
    ]
)

#: Delta `silver/quarantine`: the bronze row as it was, plus why it was refused.
SILVER_QUARANTINE_SCHEMA = pa.schema(
    [f.with_nullable(True) if f.name != "event_date" else f for f in BRONZE_EVENTS_SCHEMA]
    + [pa.field("reason", pa.string(), nullable=False)]
)

#: Rule names, in the order they are reported. Each is checked by `rule_checks`.
RULES = (
    "event_id_missing",
    "user_id_not_positive",
    "event_type_unknown",
    "source_unknown",
    "page_missing",
    "event_time_outside_date",
)


def day_bounds(event_date: date) -> tuple[datetime, datetime]:
    """[start, end) of an event date in UTC."""
    start = datetime.combine(event_date, time(0), tzinfo=timezone.utc)
    return start, start + timedelta(days=1)


def _blank(column: str):
    from pyspark.sql import functions as F

    return F.col(column).isNull() | (F.trim(F.col(column)) == "")


def rule_checks(event_date: date) -> dict:
    """rule name -> Spark Column that is true when the row breaks the rule."""
    from pyspark.sql import functions as F

    start, end = day_bounds(event_date)
    return {
        "event_id_missing": _blank("event_id"),
        "user_id_not_positive": F.col("user_id").isNull() | (F.col("user_id") <= 0),
        "event_type_unknown": F.col("event_type").isNull() | ~F.col("event_type").isin(*EVENT_TYPES),
        "source_unknown": F.col("source").isNull() | ~F.col("source").isin(*SOURCES),
        "page_missing": _blank("page"),
        "event_time_outside_date": F.col("event_ts").isNull()
        | (F.col("event_ts") < F.lit(start))
        | (F.col("event_ts") >= F.lit(end)),
    }


#: Session settings the de-duplication is meant to run with (the DAG's Spark
#: tasks set them, `_spark_config`). For `row_number() = 1` per event_id Spark
#: (3.5+) adds a partial WindowGroupLimit: a sort of the whole day *before*
#: the shuffle, to drop duplicates early. A day's duplicates are ~1% of its
#: rows, so that sort bought nothing; without it silver's write of a
#: 1M-event day took 8.1-8.5 s instead of 9.2-9.5 s (docs/performance.md,
#: session 18). Results are the same either way.
SESSION_CONF = {"spark.sql.optimizer.windowGroupLimitThreshold": "-1"}


def earliest_record_order():
    """The order that defines "the earliest Kafka record" of an event_id."""
    from pyspark.sql import functions as F

    return [F.col("kafka_timestamp").asc_nulls_last(), F.col("kafka_partition").asc_nulls_last(),
            F.col("kafka_offset").asc_nulls_last()]


def flagged_rows(bronze, event_date: date):
    """One date of bronze (BRONZE_EVENTS_SCHEMA columns) with a `reason`
    column: "" when the row breaks no rule, else the rules it breaks; the raw
    payload is kept on refused rows only. Pure, no shuffle."""
    from pyspark.sql import functions as F

    checks = rule_checks(event_date)
    reason = F.concat_ws(",", *[F.when(checks[name], F.lit(name)) for name in RULES])
    flagged = bronze.select(*BRONZE_EVENTS_SCHEMA.names).withColumn("reason", reason)
    # Silver does not carry the raw payload, so it is neither shuffled by the
    # de-duplication nor written for valid rows.
    return flagged.withColumn("raw_payload", F.when(refused(), F.col("raw_payload")).cast("string"))


def has_event_id():
    """True for rows that can be de-duplicated (rule event_id_missing not broken)."""
    return ~_blank("event_id")


def refused():
    """True for a row of `flagged_rows` that breaks a rule."""
    from pyspark.sql import functions as F

    return F.col("reason") != ""


def suspect():
    """True for a refused row with an event_id: only the events that have
    such a row can have a refused earliest record (`silver_quarantine`)."""
    return refused() & has_event_id()


def _earliest_per_event_id(flagged):
    """The earliest Kafka record of each event_id among `flagged` (rows with an id)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    window = Window.partitionBy("event_id").orderBy(*earliest_record_order())
    return flagged.withColumn("_rank", F.row_number().over(window)).filter(F.col("_rank") == 1).drop("_rank")


def silver_events(flagged):
    """`silver/events` from `flagged_rows`: the earliest record of each
    event_id, when that record breaks no rule (an event whose earliest record
    breaks a rule is quarantined, its later copies dropped). Pure, lazy."""
    first = _earliest_per_event_id(flagged.filter(has_event_id()))
    return first.filter(~refused()).select(*SILVER_EVENTS_SCHEMA.names)


def silver_quarantine(flagged, broadcast_suspects: bool = False):
    """`silver/quarantine` from `flagged_rows`: the earliest record of each
    event_id when it breaks a rule, plus every row without an id. Pure, lazy.

    Only the event_ids with at least one refused row ("suspects") can have a
    refused earliest record, so only their rows are de-duplicated: a
    semi-join instead of a second de-duplication of the whole day. With
    `broadcast_suspects` (for a suspect set known to be small) the day is not
    shuffled at all. Either way the result is the same; together with
    `silver_events` every de-duplicated event lands in exactly one table."""
    from pyspark.sql import functions as F

    suspects = flagged.filter(suspect()).select("event_id").distinct()
    if broadcast_suspects:
        suspects = F.broadcast(suspects)
    first = _earliest_per_event_id(flagged.filter(has_event_id()).join(suspects, "event_id", "left_semi"))
    return first.filter(refused()).unionByName(flagged.filter(~has_event_id())).select(
        *SILVER_QUARANTINE_SCHEMA.names)
