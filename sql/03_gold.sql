-- Batch layer, loaded by the DAG's gold_to_postgres task: each run replaces
-- the rows of the event_date it processed, in one transaction per table.
-- Metric definitions: docs/batch.md (and the gold model docstrings).

-- Distinct users with at least one valid event that day.
CREATE TABLE IF NOT EXISTS gold.daily_active_users (
    event_date date        NOT NULL PRIMARY KEY,
    dau_count  bigint      NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Distinct purchasing users / DAU, with the day's purchase events and DAU.
CREATE TABLE IF NOT EXISTS gold.conversion_rate_daily (
    event_date      date             NOT NULL PRIMARY KEY,
    conversion_rate double precision NOT NULL,
    total_purchases bigint           NOT NULL,
    dau_count       bigint           NOT NULL,
    updated_at      timestamptz      NOT NULL DEFAULT now()
);

-- Valid events per day and source.
CREATE TABLE IF NOT EXISTS gold.events_per_source_daily (
    event_date  date        NOT NULL,
    source      text        NOT NULL,
    event_count bigint      NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (event_date, source)
);

-- Purchase events per day and page.
CREATE TABLE IF NOT EXISTS gold.purchases_per_page_daily (
    event_date     date        NOT NULL,
    page           text        NOT NULL,
    purchase_count bigint      NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (event_date, page)
);
