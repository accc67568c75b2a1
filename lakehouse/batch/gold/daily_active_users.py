"""Gold `daily_active_users`.

DAU (`dau_count`) = the number of distinct user_id with at least one silver
event (valid, de-duplicated) on the event date.
"""

from __future__ import annotations

import pyarrow as pa

NAME = "daily_active_users"
SCHEMA = pa.schema(
    [pa.field("event_date", pa.date32(), nullable=False), pa.field("dau_count", pa.int64(), nullable=False)]
)
KEY = ("event_date",)


def active_users():
    """The DAU aggregate, for reuse wherever DAU appears (one definition)."""
    from pyspark.sql import functions as F

    return F.countDistinct("user_id")


def transform(silver):
    return silver.groupBy("event_date").agg(active_users().cast("long").alias("dau_count"))
