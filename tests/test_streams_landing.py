"""Both streaming queries end to end: real broker, Spark local[2], Delta, PostgreSQL.

Known duplicates, late and malformed messages go in; bronze must hold exactly
the well-formed Kafka records, quarantine exactly the malformed ones (with
their reasons), and realtime exactly the counts computed here from what was
produced, for every window the watermark has closed.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone

import psycopg2
import pytest

from lakehouse.stream.progress import ProgressRecorder
from lakehouse.stream.app import streams_session
from spark_jobs import fast_aggregation, raw_landing
from tests.streams_helpers import (
    assert_bronze_holds_the_well_formed_once,
    assert_quarantine_holds_the_malformed,
    assert_realtime_counts_the_closed_windows,
    consumed,
    messages,
    minute,
    parse_ts,
    query_watermark,
    realtime_rows,
    send,
    stream_settings,
    wait_for,
    warmup_split,
    well_formed,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N = 2700
START = datetime(2026, 11, 20, 8, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def run(core_stack, tmp_path_factory):
    """Produce N messages through both queries, running in one Spark session."""
    settings = stream_settings(core_stack, tmp_path_factory.mktemp("streams"))
    spark = streams_session(settings, "test-streams")
    spark.streams.addListener(
        ProgressRecorder(settings.pg_dsn("writer"), [raw_landing.QUERY_NAME, fast_aggregation.QUERY_NAME])
    )
    msgs = messages(N, START)
    k = warmup_split(msgs)
    queries = [raw_landing.start(spark, settings), fast_aggregation.start(spark, settings)]
    try:
        send(msgs[:k], settings)
        wait_for(lambda: all(consumed(q) >= k for q in queries), 600, "the warm-up batch")
        send(msgs[k:], settings)
        wait_for(lambda: all(consumed(q) >= N for q in queries), 900, "all records consumed")
        watermark = query_watermark(queries[1])
        yield settings, msgs, watermark
    finally:
        for q in queries:
            q.stop()
        spark.stop()


def test_bronze_holds_every_well_formed_record_once(run):
    settings, msgs, _ = run
    rows = assert_bronze_holds_the_well_formed_once(settings, msgs)
    assert Counter(r["event_id"] for r in rows) == Counter(m.event["event_id"] for m in well_formed(msgs))
    kinds = Counter(m.kind for m in msgs)
    assert kinds["duplicate"] > 0 and kinds["late"] > 0  # the test exercises both
    assert {r["kafka_topic"] for r in rows} == {settings.kafka_topic}
    assert all(r["event_date"] == r["event_ts"].date() for r in rows)


def test_quarantine_holds_exactly_the_malformed_with_reasons(run):
    settings, msgs, _ = run
    assert_quarantine_holds_the_malformed(settings, msgs)
    assert "oversize" in {m.reason_hint for m in msgs if m.kind == "malformed"}


def test_realtime_counts_equal_independent_counts_for_closed_windows(run):
    settings, msgs, watermark = run
    assert_realtime_counts_the_closed_windows(settings, msgs, watermark, START)
    # The late events (10-30 minutes behind, after the warm-up batch started the
    # watermark) lie before START, outside the windows compared above: counting
    # them went unseen there. No realtime table has a row in their windows.
    late = {minute(parse_ts(m.event["timestamp"])) for m in msgs if m.kind == "late"}
    assert late and max(late) < START
    rows = realtime_rows(settings)
    assert [(t, k) for t, c in rows.items() for k in c if k[0] in late] == []


def test_progress_rows_for_both_queries(run):
    settings, _, _ = run

    def recorded():
        with psycopg2.connect(settings.pg_dsn("writer")) as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT query_name, sum(input_rows), max(batch_id), min(lag) FROM ops.stream_progress "
                "WHERE end_offsets ? %s GROUP BY query_name", (settings.kafka_topic,)
            )
            got = {r[0]: r[1:] for r in cur.fetchall()}
        conn.close()
        return got

    # the listener runs asynchronously: the last batch's row may land a moment later
    wait_for(lambda: all(v[0] == N for v in recorded().values()) and len(recorded()) == 2, 60, "progress rows")
    got = recorded()
    assert set(got) == {"raw-landing", "fast-aggregation"}
    for name, (rows, max_batch, min_lag) in got.items():
        assert rows == N, name
        assert max_batch >= 3
        assert min_lag == 0
