"""Realtime minute aggregates: the streaming transform and the PostgreSQL upsert.

Metric definitions (one-minute event-time tumbling windows, UTC, counting each
event_id once):
    realtime.events_per_minute    events per window and event_type
    realtime.logins_per_source    login events per window and source
    realtime.purchases_per_minute purchase events per window
A row exists for each key with at least one event (no zero rows).

The stream keeps ONE aggregation: per window, a count for every event type
and every login source (the contract's value sets are fixed). Each updated
window therefore carries its full counts, so every micro-batch can upsert all
three tables by primary key, in one transaction: a replayed batch rewrites the
same values. Events older than the watermark are dropped here (they still
reach bronze, silver and gold); a resent event_id (compared in lower case) is
dropped while its event time is within the watermark, and after that it is
late anyway.

Future skew: an event stamped more than REALTIME_FUTURE_SKEW_MINUTES ahead of
its Kafka timestamp (a device with a wrong clock) is left out before the
watermark, so it can never move the watermark ahead of the on-time events;
it is kept in bronze and counted (`future_events` of the query's progress).

Window starts leave Spark as microseconds since the epoch and become
timezone-aware UTC datetimes, so the stored instants are right whatever the
host's or the database session's time zone.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from contextlib import closing
from datetime import datetime, timedelta, timezone

import psycopg2
from psycopg2.extras import execute_values
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from tenacity import before_sleep_log, retry, retry_if_exception_type, stop_after_delay, wait_exponential

from lakehouse.contract import EVENT_TYPES, SOURCES

log = logging.getLogger(__name__)

WINDOW = "1 minute"
#: The columns of a valid event that window_counts uses.
EVENT_COLUMNS = ("event_id", "event_type", "source", "event_ts")
#: Name of the observed metric (in each progress's observedMetrics) counting future events.
FUTURE_METRIC = "future_skew"


def on_time_events(validated: DataFrame, skew_minutes: float) -> DataFrame:
    """Validated Kafka rows (lakehouse.stream.source.validated) -> the valid
    events whose event time is at most `skew_minutes` ahead of their Kafka
    timestamp (EVENT_COLUMNS). The others are counted as the observed metric
    FUTURE_METRIC (`future_events`) of each micro-batch."""
    from lakehouse.stream.source import field, is_valid

    skew_us = int(skew_minutes * 60 * 1_000_000)
    future = F.unix_micros(field("event_ts")) > F.unix_micros(F.col("timestamp")) + F.lit(skew_us)
    valid = validated.where(is_valid())
    observed = valid.observe(FUTURE_METRIC, F.count_if(future).alias("future_events"))
    return observed.where(~future).select(*(field(c).alias(c) for c in EVENT_COLUMNS))


def _type_col(event_type: str) -> str:
    return f"n_{event_type}"


def _login_col(source: str) -> str:
    return f"logins_{source}"


def window_counts(events: DataFrame, watermark_minutes: float) -> DataFrame:
    """Valid events (event_id, event_type, source, event_ts) -> one row per
    one-minute window: window_start_us (UTC microseconds) and a count column per
    event type and per login source. Streaming: use output mode "update"."""
    deduped = (
        events.withWatermark("event_ts", f"{int(watermark_minutes * 60)} seconds")
        .dropDuplicatesWithinWatermark(["event_id"])
    )
    counts = [F.count_if(F.col("event_type") == t).alias(_type_col(t)) for t in EVENT_TYPES]
    counts += [
        F.count_if((F.col("event_type") == "login") & (F.col("source") == s)).alias(_login_col(s))
        for s in SOURCES
    ]
    return (
        deduped.groupBy(F.window("event_ts", WINDOW).alias("w"))
        .agg(*counts)
        .select(F.unix_micros(F.col("w.start")).alias("window_start_us"), *[F.col(c) for c in _count_columns()])
    )


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def utc_instant(micros: int) -> datetime:
    """Microseconds since the epoch -> an aware UTC datetime (no local time zone involved)."""
    return _EPOCH + timedelta(microseconds=micros)


def collect_windows(windows: DataFrame) -> list[dict]:
    """The (few) changed windows of a micro-batch, with window_start an aware UTC datetime."""
    out = []
    for row in windows.collect():
        w = row.asDict()
        w["window_start"] = utc_instant(w.pop("window_start_us"))
        out.append(w)
    return out


def _count_columns() -> list[str]:
    return [_type_col(t) for t in EVENT_TYPES] + [_login_col(s) for s in SOURCES]


def table_rows(windows: Iterable[Mapping]) -> dict[str, list[tuple]]:
    """Rows of `window_counts` -> the rows of each realtime table (zero counts left out)."""
    out: dict[str, list[tuple]] = {"events_per_minute": [], "logins_per_source": [], "purchases_per_minute": []}
    for w in windows:
        start: datetime = w["window_start"]
        for t in EVENT_TYPES:
            if w[_type_col(t)]:
                out["events_per_minute"].append((start, t, int(w[_type_col(t)])))
        for s in SOURCES:
            if w[_login_col(s)]:
                out["logins_per_source"].append((start, s, int(w[_login_col(s)])))
        if w[_type_col("purchase")]:
            out["purchases_per_minute"].append((start, int(w[_type_col("purchase")])))
    return out


UPSERTS = {
    "events_per_minute": (
        "INSERT INTO realtime.events_per_minute (window_start, event_type, event_count) VALUES %s "
        "ON CONFLICT (window_start, event_type) DO UPDATE "
        "SET event_count = EXCLUDED.event_count, updated_at = now()"
    ),
    "logins_per_source": (
        "INSERT INTO realtime.logins_per_source (window_start, source, login_count) VALUES %s "
        "ON CONFLICT (window_start, source) DO UPDATE "
        "SET login_count = EXCLUDED.login_count, updated_at = now()"
    ),
    "purchases_per_minute": (
        "INSERT INTO realtime.purchases_per_minute (window_start, purchase_count) VALUES %s "
        "ON CONFLICT (window_start) DO UPDATE "
        "SET purchase_count = EXCLUDED.purchase_count, updated_at = now()"
    ),
}


def upsert(conn, rows: Mapping[str, list[tuple]]) -> None:
    """Upsert every table's rows in ONE transaction (all or nothing)."""
    with conn:  # commits, or rolls back on error
        with conn.cursor() as cur:
            for table, sql in UPSERTS.items():
                if rows.get(table):
                    execute_values(cur, sql, rows[table], page_size=1000)


def upsert_with_retry(dsn: str, rows: Mapping[str, list[tuple]], give_up_after_s: float = 600.0) -> None:
    """Upsert, retrying with exponential backoff while PostgreSQL is away.
    The micro-batch does not finish until its rows are committed; after
    `give_up_after_s` the error propagates, the query fails, and the process
    manager restarts it from its checkpoint (the batch is replayed)."""

    @retry(
        retry=retry_if_exception_type((psycopg2.OperationalError, psycopg2.InterfaceError)),
        wait=wait_exponential(multiplier=0.5, max=10),
        stop=stop_after_delay(give_up_after_s),
        before_sleep=before_sleep_log(log, logging.WARNING),
        reraise=True,
    )
    def attempt() -> None:
        with closing(psycopg2.connect(dsn, connect_timeout=5)) as conn:
            upsert(conn, rows)

    attempt()
