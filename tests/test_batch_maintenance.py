"""Maintenance of the Delta tables with Delta's own OPTIMIZE and VACUUM (Spark
SQL, delta-spark): closed partitions are compacted, open ones left alone,
vacuum keeps the retention, data unchanged, the table still readable by
delta-rs."""

from __future__ import annotations

import os
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from deltalake import DeltaTable

from lakehouse import testdata
from lakehouse.batch import maintenance
from lakehouse.spark import spark_session
from tests.conftest import make_settings

TODAY = date(2026, 11, 22)
OLD, OPEN = date(2026, 11, 18), date(2026, 11, 21)


def events(d: date, n: int, first: int) -> list[dict]:
    t = datetime.combine(d, datetime.min.time(), tzinfo=timezone.utc)
    return [{"event_id": f"{d}-{first + i}", "user_id": 1 + i, "event_type": "click", "page": "/home",
             "timestamp": (t + timedelta(minutes=i)).isoformat(), "source": "web"} for i in range(n)]


def files(table: DeltaTable, d: date) -> int:
    return len(table.file_uris(file_pruning_predicate=f"event_date = '{d}'"))


@pytest.fixture(scope="module")
def session_settings(tmp_path_factory):
    return make_settings(tmp_path_factory.mktemp("s") / "run")


@pytest.fixture(scope="module")
def spark(session_settings):
    session = spark_session(session_settings, "test_batch_maintenance")
    yield session
    session.stop()


def test_compacts_closed_partitions_only_and_keeps_the_data(tmp_path, spark):
    """Bronze is compacted by its writer, raw landing (bronze.compact), silver
    by the maintenance DAG: closed partitions only, data unchanged. The
    maintenance DAG then commits nothing to bronze (one writer per table: a
    second application's commit could overwrite one of raw landing's)."""
    from lakehouse import catalog
    from lakehouse.stream import bronze

    settings = make_settings(tmp_path / "run")
    for batch in range(4):  # four micro-batches per date: four small files each
        for d in (OLD, OPEN):
            rows = events(d, 5, batch * 5)
            sent = [datetime.fromisoformat(r["timestamp"]) for r in rows]
            testdata.write_bronze(settings, testdata.bronze_table(rows, sent, "t", 3, first_offset=batch * 100))
    bronze.ensure_tables(spark, settings)  # raw landing's start
    path = settings.table_path("bronze", "events")
    before = DeltaTable(path).to_pyarrow_table().sort_by("event_id").to_pylist()
    assert files(DeltaTable(path), OLD) == 4 and files(DeltaTable(path), OPEN) == 4

    assert maintenance.closed_before(TODAY, settings.delta_compact_after_days) == OPEN
    v0 = DeltaTable(path).version()
    out = bronze.compact(spark, settings, maintenance.closed_before(TODAY, settings.delta_compact_after_days))

    table = DeltaTable(path)
    assert files(table, OLD) == 1  # closed: compacted
    assert files(table, OPEN) == 4  # may still receive late events: untouched
    assert table.to_pyarrow_table().sort_by("event_id").to_pylist() == before
    assert out["events"]["numFilesRemoved"] == 4
    assert out["quarantine"]["numFilesRemoved"] == 0  # empty: nothing to do
    # < 7 days old: vacuum kept the compacted-away files (time travel to before OPTIMIZE works)
    assert DeltaTable(path, version=v0).to_pyarrow_table().num_rows == len(before)

    compacted = table.version()
    assert maintenance.maintain(spark, settings, "bronze", TODAY) == {
        "events": {"vacuumed": True}, "quarantine": {"vacuumed": True}}
    assert DeltaTable(path).version() == compacted  # VACUUM only, and without its log commits

    silver = catalog.SILVER_EVENTS.path(settings)
    for batch in range(3):
        spark.createDataFrame([(batch, OLD), (batch, OPEN)], "n int, event_date date") \
            .write.format("delta").mode("append").partitionBy("event_date").save(silver)
    out = maintenance.maintain(spark, settings, "silver", TODAY)
    assert files(DeltaTable(silver), OLD) == 1 and files(DeltaTable(silver), OPEN) == 3
    assert out["events"] == {"files_added": 1, "files_removed": 3, "vacuumed": True}
    assert sorted(DeltaTable(silver).to_pyarrow_table().column("n").to_pylist()) == [0, 0, 1, 1, 2, 2]
    assert "quarantine" not in out  # absent tables are skipped


def test_retention_below_seven_days_is_refused(spark):
    with pytest.raises(ValueError):
        make_settings("/tmp/unused", delta_vacuum_retention_hours=24)
    with pytest.raises(ValueError, match="7 days"):
        maintenance.vacuum(spark, "/tmp/unused", 24)


def stray_file(path: str, days_old: float) -> Path:
    """A data file no version references (a failed write's leftover), last
    modified `days_old` days ago: VACUUM deletes it once it is older than the retention."""
    stray = Path(path) / f"event_date={OLD}" / f"part-stray-{days_old}.parquet"
    stray.write_bytes(b"PAR1")
    then = time.time() - days_old * 86400
    os.utime(stray, (then, then))
    return stray


def test_vacuum_keeps_the_configured_retention_not_only_deltas_default_week(tmp_path, spark):
    """DELTA_VACUUM_RETENTION_HOURS=1000 (~42 days): a file 10 days old stays,
    one 50 days old goes; the tables carry the retention for their files and
    their log, readable by delta-rs. Back to 168 h: bronze's properties follow
    when its writer, raw landing, restarts (not at the maintenance DAG's
    VACUUM, which commits nothing to bronze), silver's at its VACUUM, and the
    10-day-old file goes. delta-spark 4.4 ignores VACUUM's RETAIN
    argument, so without the table property the 10-day-old file went at
    1000 h as well."""
    from lakehouse import catalog
    from lakehouse.stream import bronze

    def retention(path):
        conf = DeltaTable(path).metadata().configuration
        return conf.get("delta.deletedFileRetentionDuration"), conf.get("delta.logRetentionDuration")

    long = make_settings(tmp_path / "run", delta_vacuum_retention_hours=1000)
    bronze.ensure_tables(spark, long)  # raw landing's start: tables created with the retention
    path = catalog.BRONZE_EVENTS.path(long)
    assert retention(path) == ("interval 1000 hours", "interval 1000 hours")
    rows = events(OLD, 3, 0)
    testdata.write_bronze(long, testdata.bronze_table(rows, [datetime.fromisoformat(r["timestamp"]) for r in rows],
                                                      "t", 1))
    ten, fifty = stray_file(path, 10), stray_file(path, 50)

    maintenance.maintain(spark, long, "bronze", TODAY)
    assert ten.exists() and not fifty.exists()
    assert DeltaTable(path).to_pyarrow_table().num_rows == 3

    silver = catalog.SILVER_EVENTS.path(long)  # a table created without the properties (the DAG's writes)
    spark.createDataFrame([(1, OLD)], "n int, event_date date").write.format("delta") \
        .partitionBy("event_date").save(silver)
    silver_ten = stray_file(silver, 10)
    maintenance.maintain(spark, long, "silver", TODAY)
    assert silver_ten.exists()
    assert retention(silver) == ("interval 1000 hours", "interval 1000 hours")

    assert catalog.apply_properties(spark, path, catalog.retention_properties(1000)) == {}  # nothing to commit

    default = make_settings(tmp_path / "run")
    maintenance.maintain(spark, default, "bronze", TODAY)  # not bronze's writer: the table keeps its retention
    assert ten.exists() and retention(path) == ("interval 1000 hours", "interval 1000 hours")
    bronze.ensure_tables(spark, default)  # raw landing restarted with the new setting
    maintenance.maintain(spark, default, "bronze", TODAY)
    assert not ten.exists()
    assert retention(path) == ("interval 168 hours", "interval 168 hours")  # a week of log, not Delta's 30 days


def test_file_listing_jobs_are_sized_for_the_machine(spark):
    """VACUUM lists a table with spark.sql.sources.parallelPartitionDiscovery.parallelism
    tasks; Spark's default (10,000) made it ~30 s for a one-file table on 2 cores.
    Every Spark we start (local sessions, the Spark Connect server) sets it."""
    from lakehouse.platform import spark_connect

    settings = make_settings("/tmp/unused")
    key = "spark.sql.sources.parallelPartitionDiscovery.parallelism"
    assert spark.conf.get(key) == str(settings.spark_listing_parallelism) == "8"
    argv, _ = spark_connect.server_command(settings)
    assert f"{key}={settings.spark_listing_parallelism}" in argv


def test_spark_keeps_its_warehouse_in_the_run_directory(spark, session_settings, tmp_path):
    """Spark makes its warehouse directory at the first SQL statement, by
    default in the directory the JVM started from (the checkout, under `make
    up`); every Spark we start keeps it in the run directory instead."""
    from lakehouse.platform import spark_connect

    warehouse = session_settings.run_dir / "spark-warehouse"
    spark.sql(f"CREATE TABLE IF NOT EXISTS delta.`{tmp_path / 't'}` (a INT) USING DELTA")
    assert spark.conf.get("spark.sql.warehouse.dir") == f"file:{warehouse}"
    assert warehouse.is_dir()
    argv, _ = spark_connect.server_command(session_settings)
    assert f"spark.sql.warehouse.dir={warehouse}" in argv


@pytest.mark.integration
def test_prune_keeps_the_retention_and_each_streams_latest_row(core_stack):
    """ops.stream_progress: rows older than the retention go, except a
    stream's latest (here a stream stopped 10 days ago); recent rows stay."""
    import psycopg2

    dsn = core_stack.pg_dsn("writer")
    rows = [("prune-live", b, f"{age} days") for b, age in enumerate((12, 11, 10, 2, 0))]
    rows += [("prune-stopped", b, f"{age} days") for b, age in enumerate((12, 11, 10))]
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.executemany("INSERT INTO ops.stream_progress (query_name, batch_id, input_rows, recorded_at) "
                        "VALUES (%s, %s, 1, now() - %s::interval)", rows)
    try:
        deleted = maintenance.prune_stream_progress(lambda: psycopg2.connect(dsn), retention_days=7)
        with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
            cur.execute("SELECT query_name, batch_id FROM ops.stream_progress "
                        "WHERE query_name LIKE 'prune-%' ORDER BY 1, 2")
            kept = cur.fetchall()
            cur.execute("SELECT query_name, batch_id FROM ops.stream_latest WHERE query_name LIKE 'prune-%' ORDER BY 1")
            latest = cur.fetchall()
    finally:
        with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
            cur.execute("DELETE FROM ops.stream_progress WHERE query_name LIKE 'prune-%'")
    assert kept == [("prune-live", 3), ("prune-live", 4), ("prune-stopped", 2)]
    assert latest == [("prune-live", 4), ("prune-stopped", 2)]
    assert deleted >= 5


@pytest.mark.integration
def test_prune_realtime_deletes_windows_before_the_cutoff_in_all_three_tables(core_stack):
    """Windows that start before the cutoff go from every realtime table; the
    cutoff's own window and later ones stay (dates of 1990: no other test's)."""
    import psycopg2

    cutoff = datetime(1990, 6, 1, tzinfo=timezone.utc)
    windows = [cutoff - timedelta(days=1), cutoff - timedelta(minutes=1), cutoff, cutoff + timedelta(days=3)]
    dsn = core_stack.pg_dsn("writer")
    tables = ("events_per_minute", "logins_per_source", "purchases_per_minute")
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        for w in windows:
            cur.execute("INSERT INTO realtime.events_per_minute VALUES (%s, 'click', 1)", (w,))
            cur.execute("INSERT INTO realtime.logins_per_source VALUES (%s, 'web', 1)", (w,))
            cur.execute("INSERT INTO realtime.purchases_per_minute VALUES (%s, 1)", (w,))
    try:
        deleted = maintenance.prune_realtime(lambda: psycopg2.connect(dsn), cutoff)
        kept = {}
        with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
            for table in tables:
                cur.execute(f"SELECT window_start FROM realtime.{table} WHERE window_start < '1991-01-01' ORDER BY 1")
                kept[table] = [r[0] for r in cur.fetchall()]
    finally:
        with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
            for table in tables:
                cur.execute(f"DELETE FROM realtime.{table} WHERE window_start < '1991-01-01'")
    assert kept == {t: windows[2:] for t in tables}
    assert deleted == {t: 2 for t in tables}


def test_realtime_keeps_whole_utc_days():
    assert maintenance.realtime_kept_from(date(2026, 12, 5), 30) == datetime(2026, 11, 5, tzinfo=timezone.utc)


def test_prune_logs_deletes_old_log_files_and_the_directories_they_leave(tmp_path):
    """Airflow's log layout: a file per task try in its own directories, the
    DAG processor's files per day and its `latest` link. Old files and the
    directories they leave go; new ones, other files, links and a fresh
    empty directory (a task try about to write its file) stay."""
    now = datetime.now(timezone.utc)
    before = now - timedelta(days=30)
    logs = tmp_path / "logs"

    def file(rel: str, age: timedelta) -> Path:
        path = logs / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
        os.utime(path, ((now - age).timestamp(),) * 2)
        return path

    old_try = file("dag_id=d/run_id=old/task_id=t/attempt=1.log", timedelta(days=31))
    old_parse = file("dag_processor/2026-11-01/dags-folder/d.py.log", timedelta(days=34))
    new_try = file("dag_id=d/run_id=new/task_id=t/attempt=1.log", timedelta(days=29))
    new_parse = file("dag_processor/2026-12-05/dags-folder/d.py.log", timedelta(hours=1))
    other = file("dag_id=d/run_id=old/notes.txt", timedelta(days=40))
    (logs / "dag_processor" / "latest").symlink_to(logs / "dag_processor" / "2026-12-05")
    fresh_dir = logs / "dag_id=d" / "run_id=now" / "task_id=t"
    fresh_dir.mkdir(parents=True)  # created just now, its file not yet written

    assert maintenance.prune_logs(logs, before, now=now) == 2
    assert not old_try.exists() and not old_parse.exists()
    assert not (logs / "dag_id=d" / "run_id=old" / "task_id=t").exists()
    assert not (logs / "dag_processor" / "2026-11-01").exists()  # emptied by this pruning: gone at once
    assert new_try.exists() and new_parse.exists() and other.exists() and fresh_dir.is_dir()
    assert (logs / "dag_processor" / "latest").is_symlink() and logs.is_dir()
    assert maintenance.prune_logs(logs, before, now=now) == 0
