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
    PRIMARY KEY (query_name, batch_id)
);
CREATE INDEX IF NOT EXISTS stream_progress_recorded_at ON ops.stream_progress (query_name, recorded_at DESC);
-- From Spark's Kafka source metrics (avgOffsetsBehindLatest, maxOffsetsBehindLatest), and
-- fast aggregation's count of events left out of realtime for their future skew.
ALTER TABLE ops.stream_progress ADD COLUMN IF NOT EXISTS avg_offsets_behind double precision;
ALTER TABLE ops.stream_progress ADD COLUMN IF NOT EXISTS max_offsets_behind bigint;
ALTER TABLE ops.stream_progress ADD COLUMN IF NOT EXISTS future_events bigint;

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
