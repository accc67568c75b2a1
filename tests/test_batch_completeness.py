"""The completeness criterion of the DAG's sensor and the catch-up planner:
pure rules on small inputs, and the per-partition targets against the real
broker (records with chosen timestamps, one partition idle)."""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta, timezone

import pytest

from lakehouse.batch import catch_up, completeness

D = date(2026, 11, 20)
HOUR = timedelta(hours=1)
CUT = datetime(2026, 11, 21, 1, 0, tzinfo=timezone.utc)


def test_cutoff_is_next_midnight_plus_lateness():
    assert completeness.cutoff(D, HOUR) == CUT
    assert completeness.cutoff(D, timedelta(0)) == datetime(2026, 11, 21, tzinfo=timezone.utc)


def test_not_complete_before_the_cutoff_whatever_the_offsets():
    v = completeness.judge(CUT - timedelta(seconds=1), CUT, {0: 10**9}, {0: 1})
    assert not v.complete and "has not passed" in v.reason


def test_a_date_whose_cutoff_comes_after_the_wait_ends_is_refused_at_once():
    # triggered at 18:00 on D with a 6-hour wait: the cutoff (D+1 01:00) is later
    wait_ends = datetime(2026, 11, 21, 0, 0, tzinfo=timezone.utc)
    why = completeness.beyond_the_wait(D, CUT, wait_ends)
    assert why == ("event date 2026-11-20 cannot be complete before its cutoff 2026-11-21 01:00 UTC "
                   "(2026-11-21 00:00 UTC plus the allowed lateness), after this run stops waiting at "
                   "2026-11-21 00:00 UTC; trigger it after the cutoff")
    # triggered at 20:00: the cutoff falls within the wait, which goes on as before
    assert completeness.beyond_the_wait(D, CUT, CUT) is None
    assert completeness.beyond_the_wait(D, CUT, CUT + 2 * HOUR) is None


def test_complete_when_every_partition_reached_its_target():
    v = completeness.judge(CUT + HOUR, CUT, {0: 120, 1: 40, 2: 7}, {0: 120, 1: 35, 2: 7})
    assert v.complete


def test_a_partition_short_of_its_target_blocks_and_is_named():
    v = completeness.judge(CUT + HOUR, CUT, {0: 120, 1: 30}, {0: 100, 1: 35, 2: 0})
    assert not v.complete
    assert v.behind == {1: (30, 35)}
    assert "partition 1 at 30 < 35" in v.reason


def test_no_progress_is_not_complete_while_records_wait_before_the_cutoff():
    v = completeness.judge(CUT + HOUR, CUT, None, {0: 5, 1: 0})
    assert not v.complete and "no progress" in v.reason
    assert not completeness.judge(CUT + HOUR, CUT, {0: 0}, {}).complete  # no partitions


def test_nothing_before_the_target_means_nothing_to_wait_for():
    # an empty topic (or only records after the cutoff, or records deleted by retention)
    assert completeness.judge(CUT + HOUR, CUT, None, {0: 0, 1: 0}).complete
    assert completeness.judge(CUT + HOUR, CUT, None, {0: 7, 1: 3}, {0: 7, 1: 3}).complete
    assert completeness.judge(CUT + HOUR, CUT, {0: 2}, {0: 9}, {0: 9}).complete
    assert not completeness.judge(CUT + HOUR, CUT, {0: 2}, {0: 9}, {0: 8}).complete


def test_catch_up_runs_missed_and_stale_dates_in_order_and_waits_for_the_cutoff():
    now = datetime(2026, 11, 23, 0, 30, tzinfo=timezone.utc)  # 2026-11-22's cutoff (01:00) not yet passed
    bronze = {date(2026, 11, 22): 50, date(2026, 11, 18): 10, date(2026, 11, 20): 30, date(2026, 11, 21): 40,
              date(2026, 11, 19): 0}
    done = {date(2026, 11, 20): 30, date(2026, 11, 21): 39, date(2026, 11, 17): 5}
    assert catch_up.dates_to_run(bronze, done, now, HOUR) == [
        (date(2026, 11, 18), "missed"),  # never run (the stack was down)
        (date(2026, 11, 21), "stale"),  # a late event landed after its run
    ]
    assert catch_up.dates_to_run(bronze, done, now + HOUR, HOUR)[-1] == (date(2026, 11, 22), "missed")


def test_the_cutoff_instant_itself_has_passed_for_the_sensor_and_the_planner():
    """At the cutoff the date is complete and the planner runs it; a
    microsecond earlier neither (the edges the tests above step over)."""
    just_before = CUT - timedelta(microseconds=1)
    assert completeness.judge(CUT, CUT, {0: 7}, {0: 7}).complete
    assert not completeness.judge(just_before, CUT, {0: 7}, {0: 7}).complete
    assert catch_up.dates_to_run({D: 5}, {}, CUT, HOUR) == [(D, "missed")]
    assert catch_up.dates_to_run({D: 5}, {}, just_before, HOUR) == []


def test_catch_up_run_id_names_date_and_bronze_state():
    assert catch_up.run_id(D, 1234) == "catch_up__2026-11-20__1234"


def test_a_catch_up_run_is_not_needed_once_a_run_saw_the_same_bronze():
    planned = catch_up.run_id(D, 1234)
    assert catch_up.already_processed(planned, {D: 1234}) == D  # a user's run of D got there first
    assert catch_up.already_processed(planned, {D: 1000}) is None  # stale: more rows landed since
    assert catch_up.already_processed(planned, {}) is None  # missed
    assert catch_up.already_processed("manual__2026-11-21T10:00:00+00:00", {D: 1234}) is None  # users' runs always run


@pytest.mark.integration
def test_targets_from_the_broker_with_an_idle_partition(core_stack):
    from kafka import KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic

    topic = f"completeness-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=core_stack.kafka_bootstrap_list)
    admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
    admin.close()
    # a cutoff two days ago: the broker refuses records stamped before its retention
    cut = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0) - timedelta(days=2)
    cut_ms = int(cut.timestamp() * 1000)
    producer = KafkaProducer(bootstrap_servers=core_stack.kafka_bootstrap_list)
    # partition 0: 3 records before the cutoff, 2 after; partition 1: 2 before only
    # (idle since); partition 2: nothing at all.
    for i, ts in enumerate([-3000, -2000, -1000, 0, 5000]):
        producer.send(topic, value=b"x", partition=0, timestamp_ms=cut_ms + ts)
    for ts in (-9000, -8000):
        producer.send(topic, value=b"y", partition=1, timestamp_ms=cut_ms + ts)
    producer.flush()
    producer.close()
    targets, beginnings = completeness.targets({"bootstrap_servers": core_stack.kafka_bootstrap_list}, topic, cut)
    assert targets == {0: 3, 1: 2, 2: 0}
    assert beginnings == {0: 0, 1: 0, 2: 0}
    now = cut + HOUR
    assert completeness.judge(now, cut, {0: 3, 1: 2, 2: 0}, targets).complete  # caught up: idle ones do not block
    assert not completeness.judge(now, cut, {0: 3, 1: 1, 2: 0}, targets).complete
    assert not completeness.judge(now, cut, {0: 2, 1: 2}, targets).complete


@pytest.mark.integration
def test_the_sensors_check_reads_raw_landings_latest_progress_and_the_broker(core_stack):
    """jobs.check_complete, what the DAG's sensor calls, on the real PostgreSQL
    and broker: no progress row, then raw landing's latest committed row
    short of a target, then one at every target. Batch ids of their
    own (large negative numbers), deleted afterwards: the stream tests write
    raw-landing's rows to the same table."""
    import json
    import random

    import psycopg2
    from kafka import KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic

    from lakehouse.batch import jobs

    topic = f"check-complete-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=core_stack.kafka_bootstrap_list)
    admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
    admin.close()
    event_date = datetime.now(timezone.utc).date() - timedelta(days=3)
    settings = core_stack.model_copy(update={"kafka_topic": topic, "batch_allowed_lateness_minutes": 60})
    cut = completeness.cutoff(event_date, HOUR)
    cut_ms = int(cut.timestamp() * 1000)
    producer = KafkaProducer(bootstrap_servers=core_stack.kafka_bootstrap_list)
    for ts in (-3000, -2000, -1000, 5000):  # partition 0: three records before the cutoff, one after
        producer.send(topic, value=b"x", partition=0, timestamp_ms=cut_ms + ts)
    for ts in (-9000, -8000):  # partition 1: two before; partition 2: none
        producer.send(topic, value=b"y", partition=1, timestamp_ms=cut_ms + ts)
    producer.flush()
    producer.close()
    dsn = core_stack.pg_dsn("writer")
    base = -(10**12) - random.randrange(10**9)

    def progress(batch_id: int, offsets: dict[int, int]) -> None:
        with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
            cur.execute("INSERT INTO ops.stream_progress (query_name, batch_id, input_rows, end_offsets, recorded_at) "
                        "VALUES ('raw-landing', %s, 0, %s, now())",
                        (batch_id, json.dumps({topic: {str(p): o for p, o in offsets.items()}})))
        conn.close()

    now = cut + HOUR
    try:
        verdict, position = jobs.check_complete(settings, event_date, lambda: psycopg2.connect(dsn), now=now)
        assert not verdict.complete and "no progress" in verdict.reason and position is None
        progress(base + 1, {0: 1, 1: 0, 2: 0})
        progress(base + 2, {0: 2, 1: 2, 2: 0})  # the latest batch: partition 0 one record short
        verdict, position = jobs.check_complete(settings, event_date, lambda: psycopg2.connect(dsn), now=now)
        assert not verdict.complete and verdict.behind == {0: (2, 3)}, verdict
        assert position["end_offsets"] == {topic: {"0": 2, "1": 2, "2": 0}}
        progress(base + 3, {0: 3, 1: 2, 2: 0})
        verdict, position = jobs.check_complete(settings, event_date, lambda: psycopg2.connect(dsn), now=now)
        assert verdict.complete, verdict
        assert position["end_offsets"] == {topic: {"0": 3, "1": 2, "2": 0}}
        # the checkpoints moved away (troubleshooting.md, data loss): the new
        # query's batch 0 is below the old ids, and it is where raw landing is
        progress(base - 10**6, {0: 1, 1: 2, 2: 0})
        verdict, position = jobs.check_complete(settings, event_date, lambda: psycopg2.connect(dsn), now=now)
        assert not verdict.complete and verdict.behind == {0: (1, 3)}, verdict
        assert position["end_offsets"] == {topic: {"0": 1, "1": 2, "2": 0}}
        # before the cutoff nothing is asked and the date is not complete
        early, _ = jobs.check_complete(settings, event_date, lambda: psycopg2.connect(dsn),
                                       now=cut - timedelta(seconds=1))
        assert not early.complete and "has not passed" in early.reason
    finally:
        with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
            cur.execute("DELETE FROM ops.stream_progress WHERE end_offsets ? %s", (topic,))
        conn.close()


def test_bronze_rows_per_date_sums_every_file_of_each_date(tmp_path):
    """The planner's bronze counts (catch_up.bronze_rows_per_date, from the
    Delta log's statistics) equal the rows written, over several files per
    date; no table yet is no dates."""
    from lakehouse import testdata
    from tests.conftest import make_settings

    settings = make_settings(tmp_path / "run")
    path = settings.table_path("bronze", "events")
    assert catch_up.bronze_rows_per_date(path) == {}
    written: dict = {}
    for batch, (d, n) in enumerate([(D, 5), (D + timedelta(days=1), 3), (D, 4), (D, 2)]):
        t = datetime.combine(d, datetime.min.time(), tzinfo=timezone.utc) + HOUR
        events = [{"event_id": str(uuid.uuid4()), "user_id": 1 + i, "event_type": "click", "page": "/home",
                   "timestamp": (t + timedelta(seconds=i)).isoformat(), "source": "web"} for i in range(n)]
        testdata.write_bronze(settings, testdata.bronze_table(events, [t] * n, "t", 1, first_offset=100 * batch))
        written[d] = written.get(d, 0) + n
    assert written == {D: 11, D + timedelta(days=1): 3}
    assert catch_up.bronze_rows_per_date(path) == written


@pytest.mark.integration
def test_last_successful_runs_gives_each_dates_latest_run(core_stack):
    """What the planner compares bronze with: per date, the bronze rows the
    latest recorded run saw (ops.batch_runs). Dates of 1995: no other test's."""
    import psycopg2

    from lakehouse.batch import load

    dsn = core_stack.pg_dsn("writer")
    d1, d2 = date(1995, 5, 1), date(1995, 5, 2)
    suffix = uuid.uuid4().hex[:8]
    connect = lambda: psycopg2.connect(dsn)  # noqa: E731
    try:
        load.record_batch_run(connect, f"first-{suffix}", d1, 10, 0, bronze_rows=10)
        load.record_batch_run(connect, f"second-{suffix}", d1, 12, 0, bronze_rows=13)  # late events landed since
        load.record_batch_run(connect, f"only-{suffix}", d2, 7, 0, bronze_rows=7)
        with psycopg2.connect(dsn) as conn:
            done = catch_up.last_successful_runs(conn)
        conn.close()
        assert {d: n for d, n in done.items() if d in (d1, d2)} == {d1: 13, d2: 7}
    finally:
        with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
            cur.execute("DELETE FROM ops.batch_runs WHERE event_date IN (%s, %s)", (d1, d2))
        conn.close()
