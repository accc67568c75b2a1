"""Gold `purchases_per_page_daily`.

`purchase_count` = the number of silver events with event_type = purchase on
the event date per page; pages without purchases have no row.
"""

from __future__ import annotations

import pyarrow as pa

NAME = "purchases_per_page_daily"
SCHEMA = pa.schema(
    [
        pa.field("event_date", pa.date32(), nullable=False),
        pa.field("page", pa.string(), nullable=False),
        pa.field("purchase_count", pa.int64(), nullable=False),
    ]
)
KEY = ("event_date", "page")


def transform(silver):
    from pyspark.sql import functions as F

    purchases = silver.filter(F.col("event_type") == "purchase")
    return purchases.groupBy("event_date", "page").agg(F.count("*").cast("long").alias("purchase_count"))
