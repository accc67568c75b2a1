"""Pure batch transforms on tiny frames: silver de-duplication and rules,
the four gold models, the event-date rule and the quality gate's messages."""

from __future__ import annotations

import contextlib
import io
from datetime import date, datetime, timedelta, timezone

import pyarrow as pa
import pytest
from pyspark.sql.pandas.types import from_arrow_schema

from lakehouse.batch import silver
from lakehouse.batch.dates import EventDateError, parse_event_date, resolve_event_date
from lakehouse.batch.gold import MODELS
from lakehouse.contract import BRONZE_EVENTS_SCHEMA

D = date(2026, 11, 20)
T0 = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)


def bronze_row(event_id="e1", user_id=1, event_type="click", page="/home", source="web", ts=T0,
               partition=0, offset=0, kafka_ts=None):
    kafka_ts = kafka_ts if kafka_ts is not None else ts
    return {
        "event_id": event_id, "user_id": user_id, "event_type": event_type, "page": page, "source": source,
        "event_ts": ts, "event_date": D, "raw_payload": "{}", "kafka_topic": "t", "kafka_partition": partition,
        "kafka_offset": offset, "kafka_timestamp": kafka_ts, "ingest_ts": ts + timedelta(seconds=1),
    }


def bronze_df(spark, rows):
    schema = pa.schema([f.with_nullable(True) for f in BRONZE_EVENTS_SCHEMA])
    return spark.createDataFrame(pa.Table.from_pylist(rows, schema=schema).to_pandas())


def run_silver(spark, rows, broadcast_suspects=False):
    """(silver, quarantine) as Arrow: the DataFrames the job writes, collected (tiny)."""
    flagged = silver.flagged_rows(bronze_df(spark, rows), D)
    events = silver.silver_events(flagged)
    refused = silver.silver_quarantine(flagged, broadcast_suspects=broadcast_suspects)
    return events.toArrow(), refused.toArrow()


def test_dedup_keeps_earliest_kafka_record(spark):
    rows = [
        bronze_row(offset=7, partition=1, kafka_ts=T0 + timedelta(seconds=5)),
        bronze_row(offset=9, partition=0, kafka_ts=T0 + timedelta(seconds=1)),  # earliest timestamp wins
        bronze_row(offset=3, partition=2, kafka_ts=T0 + timedelta(seconds=1)),
        bronze_row(event_id="e2", offset=5, partition=1, kafka_ts=T0),
        bronze_row(event_id="e2", offset=4, partition=1, kafka_ts=T0),  # same time+partition: lower offset
    ]
    events, quarantine = run_silver(spark, rows)
    got = sorted((r["event_id"], r["kafka_partition"], r["kafka_offset"]) for r in events.to_pylist())
    assert got == [("e1", 0, 9), ("e2", 1, 4)]
    assert quarantine.num_rows == 0
    assert events.schema.names == silver.SILVER_EVENTS_SCHEMA.names


def test_the_dedup_sorts_the_day_once_under_its_session_conf(spark, tmp_path):
    """With silver.SESSION_CONF (what the DAG's tasks set) the plan has no
    partial WindowGroupLimit, whose sort before the shuffle cost ~1 s per 1M
    events; without it Spark adds one (so this test sees the setting work).
    Read from a file: over an in-memory frame the optimizer folds the plan."""
    bronze_df(spark, [bronze_row()]).write.parquet(str(tmp_path / "bronze"))

    def plan() -> str:
        """A new DataFrame each time: a classic DataFrame keeps its first plan."""
        events = silver.silver_events(silver.flagged_rows(spark.read.parquet(str(tmp_path / "bronze")), D))
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            events.explain()
        return out.getvalue()

    (key, value), = silver.SESSION_CONF.items()
    before = spark.conf.get(key)
    try:
        spark.conf.unset(key)
        assert "WindowGroupLimit" in plan()
        spark.conf.set(key, value)
        assert "WindowGroupLimit" not in plan()
        assert "Window [row_number()" in plan()
    finally:
        spark.conf.set(key, before)


def test_missing_kafka_timestamp_sorts_last(spark):
    rows = [bronze_row(offset=1, kafka_ts=None), bronze_row(offset=2, kafka_ts=T0)]
    rows[0]["kafka_timestamp"] = None
    events, _ = run_silver(spark, rows)
    assert [r["kafka_offset"] for r in events.to_pylist()] == [2]


def test_rule_breaking_rows_are_quarantined_with_every_reason(spark):
    rows = [
        bronze_row("ok"),
        bronze_row("bad-type", event_type="refund"),
        bronze_row("bad-source", source="tv"),
        bronze_row("bad-user", user_id=0),
        bronze_row("bad-page", page=" "),
        bronze_row("bad-time", ts=datetime(2026, 11, 21, tzinfo=timezone.utc)),
        bronze_row("multi", user_id=-4, source="tv"),
        bronze_row(None, offset=1),
        bronze_row(None, offset=2),  # rows without an id are never merged
    ]
    events, quarantine = run_silver(spark, rows)
    assert [r["event_id"] for r in events.to_pylist()] == ["ok"]
    reasons = {(r["event_id"], r["reason"]) for r in quarantine.to_pylist()}
    assert reasons == {
        ("bad-type", "event_type_unknown"),
        ("bad-source", "source_unknown"),
        ("bad-user", "user_id_not_positive"),
        ("bad-page", "page_missing"),
        ("bad-time", "event_time_outside_date"),
        ("multi", "user_id_not_positive,source_unknown"),
        (None, "event_id_missing"),
    }
    assert quarantine.num_rows == 8
    assert quarantine.schema.names == silver.SILVER_QUARANTINE_SCHEMA.names


@pytest.mark.parametrize("broadcast_suspects", [False, True])
def test_the_earliest_copy_decides_where_an_event_lands(spark, broadcast_suspects):
    """Every event lands once: in silver when its earliest record is valid (a
    later, broken copy is a dropped duplicate), in quarantine when its earliest
    record is broken (a later, valid copy is dropped too). Both join plans of
    the quarantine give the same rows."""
    rows = [
        bronze_row("bad-first", user_id=0, offset=1, kafka_ts=T0),
        bronze_row("bad-first", offset=2, kafka_ts=T0 + timedelta(seconds=1)),
        bronze_row("good-first", offset=3, kafka_ts=T0),
        bronze_row("good-first", source="tv", offset=4, kafka_ts=T0 + timedelta(seconds=1)),
        bronze_row("twice-bad", page="", offset=5, kafka_ts=T0 + timedelta(seconds=2)),
        bronze_row("twice-bad", page="", offset=6, kafka_ts=T0),
        bronze_row("clean", offset=7),
    ]
    events, quarantine = run_silver(spark, rows, broadcast_suspects)
    assert sorted(r["event_id"] for r in events.to_pylist()) == ["clean", "good-first"]
    assert sorted((r["event_id"], r["kafka_offset"], r["reason"]) for r in quarantine.to_pylist()) == [
        ("bad-first", 1, "user_id_not_positive"), ("twice-bad", 6, "page_missing")]
    assert all(r["raw_payload"] == "{}" for r in quarantine.to_pylist())


def test_day_bounds_are_half_open(spark):
    last = datetime(2026, 11, 20, 23, 59, 59, 999999, tzinfo=timezone.utc)
    first = datetime(2026, 11, 20, tzinfo=timezone.utc)
    events, quarantine = run_silver(spark, [bronze_row("a", ts=first), bronze_row("b", ts=last)])
    assert events.num_rows == 2 and quarantine.num_rows == 0


def silver_df(spark, rows):
    events = [dict(bronze_row(**r), event_id=f"id{i}") for i, r in enumerate(rows)]
    schema = pa.schema([f.with_nullable(True) for f in silver.SILVER_EVENTS_SCHEMA])
    return spark.createDataFrame(pa.Table.from_pylist(events, schema=schema).to_pandas(), schema=from_arrow_schema(schema))


def gold(spark, name, rows):
    model = MODELS[name]
    table = model.transform(silver_df(spark, rows)).select(*model.SCHEMA.names).toArrow()
    return sorted(tuple(r.values()) for r in table.to_pylist())


DAY = [
    dict(user_id=1, event_type="login", source="web"),
    dict(user_id=1, event_type="purchase", page="/cart", source="web"),
    dict(user_id=1, event_type="purchase", page="/checkout", source="mobile"),
    dict(user_id=2, event_type="click", source="mobile"),
    dict(user_id=3, event_type="purchase", page="/cart", source="web"),
    dict(user_id=4, event_type="logout", source="web"),
]


def test_gold_models(spark):
    assert gold(spark, "daily_active_users", DAY) == [(D, 4)]
    assert gold(spark, "conversion_rate_daily", DAY) == [(D, 0.5, 3, 4)]  # users 1 and 3 bought
    assert gold(spark, "events_per_source_daily", DAY) == [(D, "mobile", 2), (D, "web", 4)]
    assert gold(spark, "purchases_per_page_daily", DAY) == [(D, "/cart", 2), (D, "/checkout", 1)]


def test_gold_of_an_empty_day_has_no_rows(spark):
    for name in MODELS:
        assert gold(spark, name, []) == [], name


def test_a_gold_date_written_by_delta_spark_reads_back_with_delta_rs(spark, tmp_path):
    """gold_to_postgres reads the gold rows with delta-rs (delta_io.read_small_date):
    the date's rows only, the catalogue's columns and types, whatever the
    writer's column order; a table not written yet is an empty date."""
    from lakehouse import catalog
    from lakehouse.batch import delta_io

    table = catalog.GOLD["events_per_source_daily"]
    path = str(tmp_path / "gold" / table.name)
    assert delta_io.read_small_date(table, path, D).equals(table.schema.empty_table())
    other = D + timedelta(days=1)
    for day, rows in ((D, [("web", 4), ("mobile", 2)]), (other, [("web", 9)])):
        # columns in another order than the catalogue's: the writer conforms them
        df = spark.createDataFrame([(n, s, day) for s, n in rows], "event_count long, source string, event_date date")
        delta_io.replace_date(df, table, path, day)
    got = delta_io.read_small_date(table, path, D)
    assert got.schema == table.schema
    assert sorted(zip(*[got.column(i).to_pylist() for i in range(got.num_columns)])) == \
        [(D, "mobile", 2), (D, "web", 4)]
    assert delta_io.read_small_date(table, path, other).num_rows == 1


def test_holds_nothing_of_a_date_reads_delta_sparks_log(spark, tmp_path):
    """bronze_to_silver skips replacing an empty quarantine date with nothing,
    and validate_silver leaves the quarantine out, only when the table exists
    and its latest version has no file of the date (delta-rs on the log)."""
    from lakehouse import catalog
    from lakehouse.batch import delta_io

    table = catalog.GOLD["events_per_source_daily"]
    path = str(tmp_path / table.name)
    other = D + timedelta(days=1)
    assert not delta_io.holds_nothing_of(path, D)  # no table: the writer must create it
    delta_io.replace_date(spark.createDataFrame([("web", 1, D)], "source string, event_count long, event_date date"),
                          table, path, D)
    assert not delta_io.holds_nothing_of(path, D)
    assert delta_io.holds_nothing_of(path, other)
    delta_io.replace_date(delta_io.empty_frame(spark, table), table, path, D)  # the date emptied
    assert delta_io.holds_nothing_of(path, D)


def test_event_date_resolution():
    start = datetime(2026, 11, 20, 1, 0, tzinfo=timezone.utc)
    assert resolve_event_date(None, start) == D
    assert resolve_event_date("", start) == D
    assert resolve_event_date("2026-11-18", start) == date(2026, 11, 18)
    assert resolve_event_date(None, None, datetime(2026, 11, 21, 9, tzinfo=timezone.utc)) == D
    for bad in ("2026-13-01", "20261120", "yesterday", "2026-11-20T00:00", "2026-2-1"):
        with pytest.raises(EventDateError, match="YYYY-MM-DD"):
            parse_event_date(bad)
