"""`lakehouse_bronze_to_gold` end to end with the real Airflow CLI (`airflow
dags test`), a real Spark Connect server (the stack's program, started by the
module with spark.driver.maxResultSize lowered to 1 MB: no day may be
collected to the driver), real Great Expectations and the test stack's real
PostgreSQL, over bronze data made from the producer's generator.

The server runs on a cluster, not in one JVM: SPARK_MASTER
`local-cluster[2,1,1024]`, Spark's standalone master and two workers in
miniature, whose driver has no task slot; every task of the DAG's Spark jobs
runs in an executor JVM of its own (the same code on a real cluster;
`tests/test_batch_stack.py` runs the stack's `local[2]`). Measured: the
module took 357 s this way and 351 s on `local[2]` (2026-12-06).

Gold is compared with values computed independently, in plain Python, from
the generated events (`lakehouse.testdata.ExpectedDay`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import psycopg2
import pytest
from deltalake import DeltaTable

from lakehouse import catalog, testdata
from lakehouse.batch import maintenance
from lakehouse.platform import airflow
from tests.batch_helpers import (
    airflow_env,
    assert_gold_matches,
    create_topic,
    dags_test,
    gold_checksum,
    gold_duplicates,
    gold_rows,
    raw_landing_caught_up,
    run_state,
    spark_connect_server,
    task_errors,
)
from tests.conftest import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# Dates of their own (October), so other tests' data never meet these.
D0, D1, D2 = date(2026, 10, 5), date(2026, 10, 6), date(2026, 10, 7)
EMPTY = date(2026, 10, 1)
BIG = date(2026, 10, 9)
#: The server's master: two executor JVMs of one core each.
CLUSTER = "local-cluster[2,1,1024]"
N_EVENTS = 3000
#: The server's result limit in this module: far below one day's silver.
MAX_RESULT_SIZE = "1m"


@pytest.fixture(scope="module")
def batch(core_stack, tmp_path_factory):
    """Settings with a private Delta root and a private (empty) topic that
    raw landing has "caught up" with, Airflow's metadata DB migrated, and a
    Spark Connect server for `spark_default`. The DAG reaches the server as
    it would a cluster's endpoint, through AIRFLOW_CONN_SPARK_DEFAULT: where
    the stack's own would listen (SPARK_CONNECT_PORT) nothing does."""
    server = core_stack.model_copy(update={
        "lakehouse_data_dir": tmp_path_factory.mktemp("lake"),
        "spark_connect_port": free_port(),
        "kafka_topic": f"batch-dag-{uuid.uuid4().hex[:8]}",
        "spark_master": CLUSTER,
    })
    settings = server.model_copy(update={
        "spark_connect_port": free_port(),
        "airflow_conn_spark_default": json.dumps(
            {"conn_type": "spark_connect", "host": "127.0.0.1", "port": server.spark_connect_port}),
    })
    create_topic(settings)
    raw_landing_caught_up(settings)
    airflow.migrate(settings)
    with spark_connect_server(server, **{"spark.driver.maxResultSize": MAX_RESULT_SIZE}):
        yield settings


def server_url(batch) -> str:
    """The Spark Connect URL spark_default names (AIRFLOW_CONN_SPARK_DEFAULT)."""
    conn = json.loads(batch.airflow_conn_spark_default)
    return f"sc://{conn['host']}:{conn['port']}"


@pytest.fixture(scope="module")
def day1(batch):
    expected = testdata.write_bronze_day(batch, D1, N_EVENTS, seed=7)
    proc = dags_test(batch, D1)
    assert run_state(proc) == "success", task_errors(proc)
    return expected, proc


def test_dags_import_cleanly(batch):
    code = (
        "from airflow.dag_processing.dagbag import DagBag\n"
        "import json\n"
        "b = DagBag()\n"
        "timeouts = {d: {t.task_id: t.execution_timeout and t.execution_timeout.total_seconds()\n"
        "                for t in b.dags[d].tasks} for d in b.dag_ids}\n"
        "print(json.dumps({'errors': {k: str(v) for k, v in b.import_errors.items()}, 'dags': sorted(b.dag_ids),\n"
        "                  'timeouts': timeouts}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], env={**airflow_env(batch), "BATCH_TASK_TIMEOUT_MINUTES": "7"},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["errors"] == {}
    assert {"lakehouse_bronze_to_gold", "lakehouse_maintenance", "lakehouse_catch_up"} <= set(result["dags"])
    # BATCH_TASK_TIMEOUT_MINUTES bounds every task of the two DAGs (a hung Spark cannot hold a run);
    # catch-up's wait for the runs it triggers is bounded by theirs
    for dag_id in ("lakehouse_bronze_to_gold", "lakehouse_maintenance"):
        assert set(result["timeouts"][dag_id].values()) == {7 * 60.0}, result["timeouts"][dag_id]
    assert {p.name for p in airflow.DAGS_DIR.iterdir() if p.is_file()} == {
        "lakehouse_bronze_to_gold.py", "lakehouse_maintenance.py", "lakehouse_catch_up.py"}


def test_gold_equals_values_computed_from_the_events(batch, day1):
    expected, _ = day1
    assert expected.duplicates > 0  # resent duplicates were in bronze
    assert_gold_matches(batch, expected)
    silver = DeltaTable(batch.table_path("silver", "events")).to_pyarrow_table(filters=[("event_date", "=", D1)])
    assert silver.num_rows == expected.silver_rows
    assert set(silver.column("event_id").to_pylist()) == expected.event_ids
    with psycopg2.connect(batch.pg_dsn("reader")) as conn, conn.cursor() as cur:
        cur.execute("SELECT silver_rows, quarantined, bronze_rows, stream_end_offsets FROM ops.batch_runs "
                    "WHERE event_date = %s", (D1,))
        assert cur.fetchall() == [(expected.silver_rows, 0, expected.bronze_rows,
                                   {batch.kafka_topic: {"0": 0, "1": 0, "2": 0}})]
        cur.execute("SELECT count(*), bool_and(success) FROM ops.data_quality WHERE event_date = %s", (D1,))
        assert cur.fetchone() == (9, True)
    conn.close()
    assert list((batch.run_dir / "data_quality" / "results").rglob(f"*_{D1.isoformat()}.json"))
    assert (batch.run_dir / "data_quality" / "data_docs" / "index.html").exists()


def test_the_servers_tasks_run_in_executor_jvms_of_their_own(batch, day1):
    """Where the DAG's jobs ran: the server's master is the cluster, and a
    task's Python worker descends from an executor JVM (Spark's
    CoarseGrainedExecutorBackend), in two different ones."""
    from tests.batch_helpers import connect_session

    def executor_of(batches):
        import os

        import pandas as pd
        import psutil

        jvm = next(p for p in psutil.Process(os.getpid()).parents() if "java" in p.name())
        for _ in batches:
            yield pd.DataFrame({"pid": [jvm.pid], "executor": [any("CoarseGrainedExecutorBackend" in a
                                                                   for a in jvm.cmdline())]})

    with connect_session(server_url(batch)) as spark:
        assert spark.conf.get("spark.master") == CLUSTER
        rows = spark.range(0, 64, 1, 8).mapInPandas(executor_of, "pid long, executor boolean").distinct().collect()
    assert {r["executor"] for r in rows} == {True}
    assert len({r["pid"] for r in rows}) == 2, rows


def test_a_day_larger_than_the_drivers_result_limit_succeeds(batch, day1):
    """Silver of this day is many times spark.driver.maxResultSize: it would
    fail if collected to the driver (checked on the same server), and the
    DAG, which writes on the executors, succeeds."""
    from tests.batch_helpers import connect_session

    expected = testdata.write_bronze_day(batch, BIG, 60_000, seed=3)
    with connect_session(server_url(batch)) as spark:
        bronze = spark.read.format("delta").load(catalog.BRONZE_EVENTS.path(batch)).where(f"event_date = '{BIG}'")
        with pytest.raises(Exception, match="maxResultSize"):
            bronze.toArrow()  # what the old job did with the day: refused
    proc = dags_test(batch, BIG)
    assert run_state(proc) == "success", task_errors(proc)
    assert_gold_matches(batch, expected)


def test_the_maintenance_dag_vacuums_bronze_without_a_commit_and_compacts_silver(batch, day1):
    """The maintenance DAG on the Spark Connect server: bronze, which raw
    landing writes (and compacts), gets VACUUM only, with Delta's vacuum
    logging off on this server: not one commit; silver's closed dates are
    compacted and their rows kept (one writer per Delta table). Realtime
    windows older than REALTIME_RETENTION_DAYS (30) whole UTC days go, and
    Airflow's log files older than AIRFLOW_LOG_RETENTION_DAYS (30)."""
    bronze, silver = catalog.BRONZE_EVENTS.path(batch), catalog.SILVER_EVENTS.path(batch)
    bronze_version = DeltaTable(bronze).version()
    rows = DeltaTable(silver).to_pyarrow_table(filters=[("event_date", "=", D1)]).sort_by("event_id")
    small_files = len(DeltaTable(silver).file_uris(file_pruning_predicate=f"event_date = '{D1}'"))
    # the DAG's "today" is its run's run_after: now, for `airflow dags test`
    first_kept = maintenance.realtime_kept_from(datetime.now(timezone.utc).date(), 30)
    windows = [first_kept - timedelta(days=1), first_kept + timedelta(days=1)]  # a midnight between is fine
    with psycopg2.connect(batch.pg_dsn("writer")) as conn, conn.cursor() as cur:
        cur.executemany("INSERT INTO realtime.events_per_minute (window_start, event_type, event_count) "
                        "VALUES (%s, 'maintenance-test', 1)", [(w,) for w in windows])
    log_dir = Path(airflow_env(batch)["AIRFLOW__LOGGING__BASE_LOG_FOLDER"])
    old_log = log_dir / "dag_id=maintenance-test" / "run_id=old" / "task_id=t" / "attempt=1.log"
    old_log.parent.mkdir(parents=True)
    old_log.write_text("a task try of 31 days ago\n")
    os.utime(old_log, ((datetime.now(timezone.utc) - timedelta(days=31)).timestamp(),) * 2)
    recent_log = log_dir / "dag_id=maintenance-test-recent" / "run_id=r" / "task_id=t" / "attempt=1.log"
    recent_log.parent.mkdir(parents=True)
    recent_log.write_text("a task try of 29 days ago\n")
    os.utime(recent_log, ((datetime.now(timezone.utc) - timedelta(days=29)).timestamp(),) * 2)
    try:
        proc = dags_test(batch, dag_id="lakehouse_maintenance", logical_date=D1 + timedelta(days=10))
        with psycopg2.connect(batch.pg_dsn("reader")) as conn, conn.cursor() as cur:
            cur.execute("SELECT window_start FROM realtime.events_per_minute "
                        "WHERE event_type = 'maintenance-test' ORDER BY 1")
            kept = [r[0] for r in cur.fetchall()]
    finally:
        with psycopg2.connect(batch.pg_dsn("writer")) as conn, conn.cursor() as cur:
            cur.execute("DELETE FROM realtime.events_per_minute WHERE event_type = 'maintenance-test'")
    assert run_state(proc) == "success", task_errors(proc)
    assert kept == windows[1:]
    assert not (log_dir / "dag_id=maintenance-test").exists()
    assert recent_log.read_text() == "a task try of 29 days ago\n"
    assert DeltaTable(bronze).version() == bronze_version
    assert [h["operation"] for h in DeltaTable(bronze).history(1)] != ["VACUUM END"]
    after = DeltaTable(silver)
    assert len(after.file_uris(file_pruning_predicate=f"event_date = '{D1}'")) == 1 <= small_files
    assert after.to_pyarrow_table(filters=[("event_date", "=", D1)]).sort_by("event_id") == rows
    assert "VACUUM END" in [h["operation"] for h in after.history()]  # silver's own writer logs its vacuum


def test_a_run_before_raw_landing_created_bronze_gives_an_empty_day(batch, tmp_path):
    """The scheduled run of a fresh stack can reach bronze_to_silver before raw
    landing's first commit: no bronze table yet is an empty day, at the first
    try (Spark reports no observed metrics for a plan over an empty local
    relation; this once failed the task with KeyError 'rows')."""
    from lakehouse.batch import jobs
    from tests.batch_helpers import connect_session

    fresh = batch.model_copy(update={"lakehouse_data_dir": tmp_path / "lake"})
    with connect_session(server_url(batch)) as spark:
        stats = jobs.bronze_to_silver(spark, fresh, EMPTY)
    assert (stats["bronze_version"], stats["bronze_rows"], stats["silver_rows"], stats["quarantined"]) == (None, 0, 0, 0)
    silver = DeltaTable(fresh.table_path("silver", "events")).to_pyarrow_table(filters=[("event_date", "=", EMPTY)])
    assert silver.num_rows == 0


def test_three_consecutive_dates_backfill(batch, day1):
    expected = {D1: day1[0]}
    for d in (D0, D2):
        expected[d] = testdata.write_bronze_day(batch, d, N_EVENTS, seed=7)
    for d in (D0, D2):
        proc = dags_test(batch, d)
        assert run_state(proc) == "success", task_errors(proc)
    for d in (D0, D1, D2):
        assert_gold_matches(batch, expected[d])
    assert gold_duplicates(batch) == 0


def test_date_without_bronze_gives_empty_gold(batch, day1):
    with psycopg2.connect(batch.pg_dsn("writer")) as conn, conn.cursor() as cur:
        # a stale row from "an earlier load" must disappear, not linger
        cur.execute("INSERT INTO gold.daily_active_users (event_date, dau_count) VALUES (%s, 42) "
                    "ON CONFLICT (event_date) DO UPDATE SET dau_count = 42", (EMPTY,))
    conn.close()
    proc = dags_test(batch, EMPTY)
    assert run_state(proc) == "success", task_errors(proc)
    assert all(rows == [] for rows in gold_rows(batch, EMPTY).values())
    assert f"no bronze events for {EMPTY}" in proc.stdout + proc.stderr


def test_rule_breaking_rows_fail_the_gate_then_rerunning_the_fixed_date_gives_identical_gold(batch, day1):
    """A gate failure leaves gold as it was; once bronze is fixed, running the
    same date again gives gold identical to the first run (the re-run test of
    idempotency, sharing this run) and clears the date's quarantine."""
    before = gold_checksum(batch, [D1])
    delta_gold_version = DeltaTable(batch.table_path("gold", "daily_active_users")).version()
    t = datetime(2026, 10, 6, 12, tzinfo=timezone.utc)
    bad = [
        {"event_id": "bad-1", "user_id": 5, "event_type": "refund", "page": "/home", "timestamp": t.isoformat(),
         "source": "web"},
        {"event_id": "bad-2", "user_id": -1, "event_type": "click", "page": "/home", "timestamp": t.isoformat(),
         "source": "web"},
    ]
    testdata.write_bronze(batch, testdata.bronze_table(bad, [t, t], batch.kafka_topic, 3, first_offset=10**9))
    try:
        proc = dags_test(batch, D1)
        out = proc.stdout + proc.stderr
        assert run_state(proc) == "failed"
        assert "expect_column_values_to_be_in_set(event_type): 1 of" in out
        assert "expect_column_values_to_be_between(user_id): 1 of" in out
        assert "e.g. ['refund']" in out  # samples from the gate's second pass
        assert gold_checksum(batch, [D1]) == before
        assert DeltaTable(batch.table_path("gold", "daily_active_users")).version() == delta_gold_version
        quarantine = DeltaTable(batch.table_path("silver", "quarantine")).to_pyarrow_table(
            filters=[("event_date", "=", D1)])
        assert dict(zip(quarantine.column("event_id").to_pylist(), quarantine.column("reason").to_pylist())) == {
            "bad-1": "event_type_unknown", "bad-2": "user_id_not_positive"}
        with psycopg2.connect(batch.pg_dsn("reader")) as conn, conn.cursor() as cur:
            cur.execute("SELECT expectation, column_name, unexpected_count FROM ops.data_quality "
                        "WHERE event_date = %s AND NOT success AND severity = 'critical' "
                        "AND validated_at > now() - interval '10 minutes' ORDER BY column_name", (D1,))
            assert ("expect_column_values_to_be_in_set", "event_type", 1) in cur.fetchall()
        conn.close()
    finally:
        day = testdata.write_bronze_day(batch, D1, N_EVENTS, seed=7)  # restore the clean day
        assert day.bronze_rows == N_EVENTS
    proc = dags_test(batch, D1)
    assert run_state(proc) == "success", task_errors(proc)
    assert gold_checksum(batch, [D1]) == before
    assert gold_duplicates(batch) == 0
    quarantine = DeltaTable(batch.table_path("silver", "quarantine"))
    assert quarantine.to_pyarrow_table(filters=[("event_date", "=", D1)]).num_rows == 0


def test_malformed_event_date_fails_fast(batch):
    started = datetime.now()
    proc = dags_test(batch, conf={"event_date": "2026-13-45"})
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "Invalid input for param event_date: '2026-13-45' is not a 'date'" in out
    assert "Task started" not in out  # refused before any task ran
    assert (datetime.now() - started) < timedelta(seconds=120)


def test_a_date_that_cannot_be_complete_within_the_wait_fails_at_once(batch):
    """Today's date at this hour, or a future one: its cutoff (D+1 00:00 UTC +
    BATCH_ALLOWED_LATENESS_MINUTES) comes after the sensor would stop
    waiting, so the run fails on the first poke, saying when to trigger it,
    instead of waiting BATCH_COMPLETENESS_TIMEOUT_MINUTES for nothing."""
    future = date(2099, 1, 1)
    started = datetime.now()
    proc = dags_test(batch, conf={"event_date": future.isoformat()})
    assert run_state(proc) == "failed", task_errors(proc)
    errors = task_errors(proc)
    assert "event date 2099-01-01 cannot be complete before its cutoff 2099-01-02 01:00 UTC" in errors, errors
    assert "nothing was published for 2099-01-01" in errors
    assert (datetime.now() - started) < timedelta(seconds=180)
    assert all(rows == [] for rows in gold_rows(batch, future).values())
    with psycopg2.connect(batch.pg_dsn("reader")) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM ops.batch_runs WHERE event_date = %s", (future,))
        assert cur.fetchone() == (0,)
    conn.close()
