"""Fast aggregation's transform (lakehouse.stream.realtime.on_time_events and
window_counts, the code fast_aggregation.transform chains) on a few
Kafka-shaped rows streamed from a file in a local Spark session (the
de-duplication within the watermark is streaming-only): the future-skew guard, each
event_id once (compared in lower case), invalid records left out, and every
count computed here by hand. The stream end to end (watermark, replay) is
tests/test_streams_landing.py and tests/test_streams_bad_input.py; this file
catches a broken rule in seconds instead of a slow run's minutes."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from lakehouse.stream import realtime
from lakehouse.stream.source import validated

W = datetime(2026, 11, 20, 8, 0, tzinfo=timezone.utc)
SKEW_MINUTES = 5.0
KAFKA_SCHEMA = ("key binary, value binary, topic string, partition int, offset long, timestamp timestamp, "
                "timestampType int")


def event(event_type: str, source: str, ts: datetime, event_id: str | None = None) -> dict:
    return {"event_id": event_id or str(uuid.uuid4()), "user_id": 3, "event_type": event_type, "page": "/home",
            "timestamp": ts.isoformat().replace("+00:00", "Z"), "source": source}


def kafka_stream(spark, records, tmp_path):
    """records: (value bytes, Kafka timestamp) -> a streaming DataFrame shaped
    as Spark's Kafka source gives it (one file, so one micro-batch)."""
    rows = [(b"k", value, "events", 0, offset, kafka_ts, 0) for offset, (value, kafka_ts) in enumerate(records)]
    spark.createDataFrame(rows, KAFKA_SCHEMA).coalesce(1).write.parquet(str(tmp_path / "in"))
    return spark.readStream.schema(KAFKA_SCHEMA).parquet(str(tmp_path / "in"))


def counts(spark, records, tmp_path) -> dict[str, list[tuple]]:
    """The realtime tables' rows after the stream ran over `records` (each
    micro-batch's windows upserted by key, as fast aggregation's load does)."""
    on_time = realtime.on_time_events(validated(kafka_stream(spark, records, tmp_path)), SKEW_MINUTES)
    latest: dict = {}

    def write(batch, batch_id):
        for w in realtime.collect_windows(batch):
            latest[w["window_start"]] = w

    query = (realtime.window_counts(on_time, watermark_minutes=2.0).writeStream.outputMode("update")
             .foreachBatch(write).option("checkpointLocation", str(tmp_path / "checkpoint"))
             .trigger(availableNow=True).start())
    query.awaitTermination(300)
    assert not query.isActive and query.exception() is None
    return {table: sorted(rows) for table, rows in realtime.table_rows(latest.values()).items()}


def test_future_skew_duplicates_and_invalid_records_are_left_out(spark, tmp_path):
    kafka_ts = W + timedelta(seconds=30)
    at_skew = kafka_ts + timedelta(minutes=SKEW_MINUTES)  # exactly the allowed skew: on time
    resent = event("login", "mobile", W + timedelta(seconds=10))
    records = [
        (json.dumps(event("click", "web", W + timedelta(seconds=1))).encode(), kafka_ts),
        (json.dumps(event("click", "mobile", W + timedelta(seconds=2))).encode(), kafka_ts),
        (json.dumps(event("login", "web", W + timedelta(seconds=3))).encode(), kafka_ts),
        (json.dumps(resent).encode(), kafka_ts),
        # the same event resent with its id in upper case: one event
        (json.dumps(dict(resent, event_id=resent["event_id"].upper())).encode(), kafka_ts + timedelta(seconds=1)),
        (json.dumps(event("purchase", "web", W + timedelta(seconds=40))).encode(), kafka_ts),
        (json.dumps(event("logout", "web", at_skew)).encode(), kafka_ts),
        # a second past the allowed skew: left out (it would move the watermark)
        (json.dumps(event("purchase", "web", at_skew + timedelta(seconds=1))).encode(), kafka_ts),
        # 23 h ahead: valid for bronze, far beyond the skew for realtime
        (json.dumps(event("click", "web", kafka_ts + timedelta(hours=23))).encode(), kafka_ts),
        # invalid records never count
        (json.dumps(event("refund", "web", W + timedelta(seconds=5))).encode(), kafka_ts),
        (b"not json", kafka_ts),
    ]
    skew_window = at_skew.replace(second=0, microsecond=0)
    assert counts(spark, records, tmp_path) == {
        "events_per_minute": sorted([(W, "click", 2), (W, "login", 2), (W, "purchase", 1),
                                     (skew_window, "logout", 1)]),
        "logins_per_source": sorted([(W, "mobile", 1), (W, "web", 1)]),
        "purchases_per_minute": [(W, 1)],
    }


def test_skew_is_measured_from_each_records_own_kafka_timestamp(spark, tmp_path):
    """The same event time is on time for a record stamped late enough and
    future for one stamped earlier: the guard never reads the clock."""
    ts = W + timedelta(minutes=10)
    late_stamp, early_stamp = ts - timedelta(minutes=4), ts - timedelta(minutes=6)
    records = [(json.dumps(event("purchase", "web", ts)).encode(), late_stamp),
               (json.dumps(event("purchase", "web", ts)).encode(), early_stamp)]
    assert counts(spark, records, tmp_path)["purchases_per_minute"] == [(ts, 1)]


@pytest.mark.integration
def test_a_micro_batchs_upsert_is_one_transaction_over_the_three_tables(core_stack):
    """realtime.upsert on the real PostgreSQL: a batch whose last table's row
    is refused leaves the first two tables as they were (a replay then
    rewrites all three); a good batch updates counts in place. Windows of
    1991: no other test's."""
    import psycopg2

    w = datetime(1991, 3, 1, 12, 0, tzinfo=timezone.utc)
    dsn = core_stack.pg_dsn("writer")

    def rows_of_w():
        with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
            out = {}
            for table, col in (("events_per_minute", "event_count"), ("logins_per_source", "login_count"),
                               ("purchases_per_minute", "purchase_count")):
                cur.execute(f"SELECT {col} FROM realtime.{table} WHERE window_start = %s", (w,))
                out[table] = [r[0] for r in cur.fetchall()]
        conn.close()
        return out

    good = {"events_per_minute": [(w, "login", 2)], "logins_per_source": [(w, "web", 2)],
            "purchases_per_minute": [(w, 1)]}
    try:
        realtime.upsert_with_retry(dsn, good, give_up_after_s=10)
        assert rows_of_w() == {"events_per_minute": [2], "logins_per_source": [2], "purchases_per_minute": [1]}
        bad = {"events_per_minute": [(w, "login", 7)], "logins_per_source": [(w, "web", 7)],
               "purchases_per_minute": [(w, None)]}  # NOT NULL: refused
        with pytest.raises(psycopg2.IntegrityError):
            realtime.upsert_with_retry(dsn, bad, give_up_after_s=10)
        assert rows_of_w() == {"events_per_minute": [2], "logins_per_source": [2], "purchases_per_minute": [1]}
        realtime.upsert_with_retry(dsn, {**bad, "purchases_per_minute": [(w, 3)]}, give_up_after_s=10)
        assert rows_of_w() == {"events_per_minute": [7], "logins_per_source": [7], "purchases_per_minute": [3]}
    finally:
        with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
            for table in ("events_per_minute", "logins_per_source", "purchases_per_minute"):
                cur.execute(f"DELETE FROM realtime.{table} WHERE window_start = %s", (w,))
        conn.close()
