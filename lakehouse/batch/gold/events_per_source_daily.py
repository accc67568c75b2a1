"""Gold `events_per_source_daily`.

`event_count` = the number of silver events (valid, de-duplicated) of the
event date per source (web, mobile); a source with no events has no row.
"""

from __future__ import annotations

import pyarrow as pa

NAME = "events_per_source_daily"
SCHEMA = pa.schema(
    [
        pa.field("event_date", pa.date32(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("event_count", pa.int64(), nullable=False),
    ]
)
KEY = ("event_date", "source")


def transform(silver):
    from pyspark.sql import functions as F

    return silver.groupBy("event_date", "source").agg(F.count("*").cast("long").alias("event_count"))
