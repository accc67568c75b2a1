"""Gold `conversion_rate_daily`.

* `dau_count`: DAU, as defined in `daily_active_users`.
* `total_purchases`: the number of silver events with event_type = purchase.
* `conversion_rate`: distinct users with at least one purchase that day / DAU
  (a fraction in [0, 1]; a day with no silver events has no row).
"""

from __future__ import annotations

import pyarrow as pa

from lakehouse.batch.gold.daily_active_users import active_users

NAME = "conversion_rate_daily"
SCHEMA = pa.schema(
    [
        pa.field("event_date", pa.date32(), nullable=False),
        pa.field("conversion_rate", pa.float64(), nullable=False),
        pa.field("total_purchases", pa.int64(), nullable=False),
        pa.field("dau_count", pa.int64(), nullable=False),
    ]
)
KEY = ("event_date",)


def transform(silver):
    from pyspark.sql import functions as F

    is_purchase = F.col("event_type") == "purchase"
    daily = silver.groupBy("event_date").agg(
        active_users().cast("long").alias("dau_count"),
        F.countDistinct(F.when(is_purchase, F.col("user_id"))).cast("long").alias("purchasing_users"),
        F.sum(F.when(is_purchase, 1).otherwise(0)).cast("long").alias("total_purchases"),
    )
    return daily.withColumn(
        "conversion_rate", (F.col("purchasing_users") / F.col("dau_count")).cast("double")
    ).select(*SCHEMA.names)
