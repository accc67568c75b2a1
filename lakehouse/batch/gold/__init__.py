"""Gold models: one module per table, each with NAME, SCHEMA (Arrow; the
PostgreSQL table `gold.<NAME>` has the same columns plus updated_at), KEY and
a pure `transform(silver) -> DataFrame`. The metric definitions are in each
module's docstring and in docs/batch.md."""

from lakehouse.batch.gold import (
    conversion_rate_daily,
    daily_active_users,
    events_per_source_daily,
    purchases_per_page_daily,
)

#: Gold models by table name, in load order.
MODELS = {
    m.NAME: m
    for m in (daily_active_users, conversion_rate_daily, events_per_source_daily, purchases_per_page_daily)
}
