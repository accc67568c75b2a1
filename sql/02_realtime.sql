-- Speed layer. One row per key, upserted per micro-batch (never appended
-- twice): a replayed micro-batch rewrites the same values.

-- Events per one-minute event-time window and event type.
CREATE TABLE IF NOT EXISTS realtime.events_per_minute (
    window_start timestamptz NOT NULL,
    event_type   text        NOT NULL,
    event_count  bigint      NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (window_start, event_type)
);

-- Login events per one-minute window and source (web, mobile).
CREATE TABLE IF NOT EXISTS realtime.logins_per_source (
    window_start timestamptz NOT NULL,
    source       text        NOT NULL,
    login_count  bigint      NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (window_start, source)
);

-- Purchase events per one-minute window.
CREATE TABLE IF NOT EXISTS realtime.purchases_per_minute (
    window_start   timestamptz NOT NULL PRIMARY KEY,
    purchase_count bigint      NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS events_per_minute_updated_at ON realtime.events_per_minute (updated_at);
