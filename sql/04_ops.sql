-- Pipeline health, for the dashboard and the benchmark.

-- One row per streaming micro-batch (written by each query's progress listener).
CREATE TABLE IF NOT EXISTS ops.stream_progress (
    query_name      text             NOT NULL,
    batch_id        bigint           NOT NULL,
    input_rows      bigint           NOT NULL,
    rows_per_second double precision,
    duration_ms     bigint,
    end_offsets     jsonb,
    lag             bigint,
    recorded_at     timestamptz      NOT NULL DEFAULT now(),
    -- the checkpoint's query id (Spark's progress `id`): a query started on new
    -- checkpoints numbers its batches from 0 again under a new id
    query_id        text             NOT NULL DEFAULT '',
    PRIMARY KEY (query_name, query_id, batch_id)
);
-- Databases made before the query id was recorded: their rows get '' and the key
-- takes the query id, so a new checkpoint's batch N no longer overwrites the old one's.
ALTER TABLE ops.stream_progress ADD COLUMN IF NOT EXISTS query_id text NOT NULL DEFAULT '';
DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_constraint c
        JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey)
        WHERE c.conrelid = 'ops.stream_progress'::regclass AND c.contype = 'p' AND a.attname = 'query_id'
    ) THEN
        ALTER TABLE ops.stream_progress DROP CONSTRAINT stream_progress_pkey,
            ADD CONSTRAINT stream_progress_pkey PRIMARY KEY (query_name, query_id, batch_id);
    END IF;
END
$$;
CREATE INDEX IF NOT EXISTS stream_progress_recorded_at ON ops.stream_progress (query_name, recorded_at DESC);
-- From Spark's Kafka source metrics (avgOffsetsBehindLatest, maxOffsetsBehindLatest), and
-- fast aggregation's count of events left out of realtime for their future skew.
ALTER TABLE ops.stream_progress ADD COLUMN IF NOT EXISTS avg_offsets_behind double precision;
ALTER TABLE ops.stream_progress ADD COLUMN IF NOT EXISTS max_offsets_behind bigint;
ALTER TABLE ops.stream_progress ADD COLUMN IF NOT EXISTS future_events bigint;
-- The dashboard's time-range panels and the retention (lakehouse_maintenance) select on
-- recorded_at alone: without an index each read every row (the streams add ~200,000 rows a
-- day). BRIN: rows arrive in recorded_at order, so a few block ranges (32 pages, ~1,000 rows
-- each) hold the last hour; and unlike a B-tree it cannot serve "latest first", which would
-- tempt the planner away from the (query_name, recorded_at DESC) index above for a stream
-- that stopped long ago.
-- autosummarize: a filled block range is summarised by autovacuum soon after, not only
-- at the table's next vacuum (until then a range is read whatever the time filter).
CREATE INDEX IF NOT EXISTS stream_progress_recorded ON ops.stream_progress USING brin (recorded_at)
    WITH (pages_per_range = 32, autosummarize = on);
-- The few micro-batches that left future-skewed events out of realtime, for the dashboard's
-- per-day comparison (30 days) without reading every micro-batch of those days.
CREATE INDEX IF NOT EXISTS stream_progress_future ON ops.stream_progress (recorded_at) WHERE future_events > 0;

-- Each stream's latest micro-batch, found with one index lookup per stream (PostgreSQL's
-- "loose index scan": the next query_name after the previous one), not by reading every row.
CREATE OR REPLACE VIEW ops.stream_latest AS
WITH RECURSIVE streams AS (
    SELECT min(query_name) AS query_name FROM ops.stream_progress
    UNION ALL
    SELECT (SELECT min(p.query_name) FROM ops.stream_progress p WHERE p.query_name > s.query_name)
    FROM streams s WHERE s.query_name IS NOT NULL
)
SELECT latest.*
FROM streams
CROSS JOIN LATERAL (
    SELECT p.query_name, p.batch_id, p.input_rows, p.rows_per_second, p.duration_ms, p.end_offsets, p.lag,
           p.recorded_at, p.avg_offsets_behind, p.max_offsets_behind, p.future_events, p.query_id
    FROM ops.stream_progress p
    WHERE p.query_name = streams.query_name
    ORDER BY p.recorded_at DESC
    LIMIT 1
) latest
WHERE streams.query_name IS NOT NULL;

-- One row per expectation per validation of silver (Great Expectations).
CREATE TABLE IF NOT EXISTS ops.data_quality (
    run_id           text        NOT NULL,
    event_date       date        NOT NULL,
    expectation      text        NOT NULL,
    column_name      text        NOT NULL DEFAULT '',
    severity         text        NOT NULL CHECK (severity IN ('critical', 'warning')),
    success          boolean     NOT NULL,
    element_count    bigint,
    unexpected_count bigint,
    validated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, expectation, column_name)
);
CREATE INDEX IF NOT EXISTS data_quality_event_date ON ops.data_quality (event_date, validated_at DESC);

-- One row per successful DAG run of lakehouse_bronze_to_gold, written in the same
-- transaction as its gold rows. bronze_rows/bronze_version: the bronze snapshot the run
-- read; stream_end_offsets/stream_recorded_at: raw landing's committed position when the
-- completeness sensor let the run go ({topic: {partition: offset}}; NULL = not checked).
-- lakehouse_catch_up re-runs a date whose bronze row count differs from its last run's.
CREATE TABLE IF NOT EXISTS ops.batch_runs (
    run_id        text        NOT NULL PRIMARY KEY,
    event_date    date        NOT NULL,
    silver_rows   bigint,
    quarantined   bigint,
    finished_at   timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE ops.batch_runs ADD COLUMN IF NOT EXISTS bronze_rows bigint;
ALTER TABLE ops.batch_runs ADD COLUMN IF NOT EXISTS bronze_version bigint;
ALTER TABLE ops.batch_runs ADD COLUMN IF NOT EXISTS stream_end_offsets jsonb;
ALTER TABLE ops.batch_runs ADD COLUMN IF NOT EXISTS stream_recorded_at timestamptz;
CREATE INDEX IF NOT EXISTS batch_runs_event_date ON ops.batch_runs (event_date, finished_at DESC);
