"""The Grafana overview dashboard: macro expansion (units), and every panel's
SQL run as the read-only role against the real PostgreSQL once the realtime,
gold and ops tables hold data (integration). The tables are filled through the
pipeline's own writers: lakehouse.realtime (fast aggregation's upsert),
lakehouse.progress (the streams' progress listener) and lakehouse.batch.load
(the DAG's gold_to_postgres and quality recording)."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone

import psycopg2
import pytest
import yaml

from lakehouse import progress, realtime
from lakehouse.batch import load
from lakehouse.batch.gold import MODELS
from lakehouse.contract import EVENT_TYPES, PAGES, SOURCES
from lakehouse.platform import postgres
from lakehouse.dashboard import (
    DATASOURCE_PATH,
    datasource_uid,
    expand_macros,
    format_duration,
    interval_for,
    iter_panels,
    load_dashboard,
    panel_queries,
    parse_duration,
)

START = datetime(2026, 1, 2, 3, 0, tzinfo=timezone.utc)
END = datetime(2026, 1, 2, 4, 0, tzinfo=timezone.utc)


# --- macro expansion (pure) ----------------------------------------------------------
def test_parse_and_format_durations():
    assert parse_duration("10s") == timedelta(seconds=10)
    assert parse_duration("'5m'") == timedelta(minutes=5)
    assert parse_duration("30d") == timedelta(days=30)
    assert format_duration(timedelta(minutes=2)) == "2m"
    assert format_duration(timedelta(seconds=90)) == "90s"
    with pytest.raises(ValueError):
        parse_duration("soon")


def test_time_macros_expand_to_the_range():
    sql = "SELECT $__time(window_start), v FROM t WHERE $__timeFilter(window_start) AND x < $__timeTo() AND x > $__timeFrom()"
    assert expand_macros(sql, START, END) == (
        'SELECT window_start AS "time", v FROM t WHERE window_start BETWEEN '
        "'2026-01-02T03:00:00Z' AND '2026-01-02T04:00:00Z' AND x < '2026-01-02T04:00:00Z' "
        "AND x > '2026-01-02T03:00:00Z'"
    )


def test_time_group_uses_interval_and_nested_parentheses():
    sql = "SELECT $__timeGroupAlias(date_trunc('minute', ts), $__interval), $__interval_ms FROM t"
    out = expand_macros(sql, START, END, timedelta(minutes=5))
    assert out == "SELECT floor(extract(epoch from date_trunc('minute', ts))/300)*300 AS \"time\", 300000 FROM t"
    assert expand_macros("$__timeGroup(ts, '1h')", START, END) == "floor(extract(epoch from ts)/3600)*3600"
    assert expand_macros("$__timeEpoch(ts)", START, END) == 'extract(epoch from ts) AS "time"'
    assert expand_macros("$__unixEpochFilter(e)", START, END) == f"e >= {int(START.timestamp())} AND e <= {int(END.timestamp())}"


def test_unknown_macros_and_unbalanced_calls_are_errors():
    with pytest.raises(ValueError, match="unsupported"):
        expand_macros("SELECT $__timeShift(ts)", START, END)
    with pytest.raises(ValueError, match="unsupported"):
        expand_macros("SELECT $__from", START, END)
    with pytest.raises(ValueError, match="unbalanced"):
        expand_macros("SELECT $__timeFilter(ts", START, END)


def test_interval_is_a_round_step_above_the_panel_minimum():
    assert interval_for(START, END, max_points=1000) == timedelta(seconds=5)  # 3.6 s -> 5 s
    assert interval_for(START, END, max_points=1000, min_interval="1m") == timedelta(minutes=1)
    assert interval_for(START, START + timedelta(days=30), max_points=100) == timedelta(hours=12)


# --- the dashboard file (pure) ------------------------------------------------------------
DASHBOARD = load_dashboard()


def test_dashboard_identity():
    assert DASHBOARD["title"] == "Lakehouse Platform Overview"
    assert DASHBOARD["refresh"] == "10s"
    assert DASHBOARD.get("id") is None  # provisioned dashboards must not carry a database id


def test_every_panel_uses_the_provisioned_datasource():
    provisioned = yaml.safe_load(DATASOURCE_PATH.read_text())["datasources"][0]
    uid = datasource_uid()
    assert uid == provisioned["uid"]
    panels = list(iter_panels(DASHBOARD))
    assert len(panels) >= 15
    for p in panels:
        assert p["datasource"] == {"type": provisioned["type"], "uid": uid}, p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == uid, p["title"]


def test_provisioning_reads_as_the_reader_role_from_the_environment():
    ds = yaml.safe_load(DATASOURCE_PATH.read_text())["datasources"][0]
    assert ds["user"] == "${PG_READER_USER}"
    assert ds["secureJsonData"]["password"] == "${PG_READER_PASSWORD}"
    assert ds["jsonData"]["database"] == "${PG_DATABASE}"


def test_the_sections_the_issue_asks_for_are_there():
    sql = {p["title"]: " ".join(t["rawSql"] for t in p["targets"]) for p in iter_panels(DASHBOARD)}
    everything = " ".join(sql.values())
    for table in (
        "realtime.events_per_minute", "realtime.logins_per_source", "realtime.purchases_per_minute",
        "gold.daily_active_users", "gold.conversion_rate_daily", "gold.events_per_source_daily",
        "gold.purchases_per_page_daily", "ops.stream_progress", "ops.batch_runs", "ops.data_quality",
    ):
        assert table in everything, table
    for p in iter_panels(DASHBOARD):  # realtime panels follow the time picker (or their own timeFrom)
        if "realtime." in sql[p["title"]] and not p.get("timeFrom"):
            assert "$__timeFilter(window_start)" in sql[p["title"]], p["title"]


# --- every panel against the real database (integration) ----------------------------------
def current_minute() -> datetime:
    return datetime.now(timezone.utc).replace(second=0, microsecond=0)


TODAY = current_minute().date()
GOLD_DAYS = [TODAY - timedelta(days=n) for n in (3, 2, 1)]  # latest gold date = yesterday
DAU = {GOLD_DAYS[0]: 90, GOLD_DAYS[1]: 100, GOLD_DAYS[2]: 120}
PURCHASERS = {GOLD_DAYS[0]: 9, GOLD_DAYS[1]: 12, GOLD_DAYS[2]: 18}
PURCHASES = {d: n * 2 for d, n in PURCHASERS.items()}
EVENTS_PER_SOURCE = {d: {s: 300 * (i + 1) + 10 * k for k, s in enumerate(SOURCES)} for i, d in enumerate(GOLD_DAYS)}
STREAMS = ("raw-landing", "fast-aggregation")  # the streams' Spark query names


def fill_realtime(dsn: str, now: datetime | None = None) -> datetime:
    """Speed-layer rows of the 30 minutes before `now` (default: the current
    minute, taken when called, not when the module was imported) through the
    fast aggregation's own writer (lakehouse.realtime: window counts -> table
    rows -> one upsert transaction). Returns `now`."""
    now = now or current_minute()
    windows = []
    for i, w in enumerate(now - timedelta(minutes=m) for m in range(30, 0, -1)):
        logins = {src: 5 + k + i % 3 for k, src in enumerate(SOURCES)}
        counts = {et: 50 + i + 7 * k for k, et in enumerate(EVENT_TYPES)}
        counts["login"], counts["purchase"] = sum(logins.values()), 3 + i % 4
        row = {"window_start": w}
        row.update({realtime._type_col(et): n for et, n in counts.items()})
        row.update({realtime._login_col(src): n for src, n in logins.items()})
        windows.append(row)
    realtime.upsert_with_retry(dsn, realtime.table_rows(windows), give_up_after_s=10)
    return now


def fill_stream_progress(dsn: str) -> None:
    """ops.stream_progress through the streams' progress listener, fed Spark's
    progress reports (the JSON shape StreamingQueryProgress.json has)."""
    recorder = progress.ProgressRecorder(dsn, STREAMS)
    try:
        for q, name in enumerate(STREAMS):
            for b in range(12):
                end = {"user-events": {"0": 1000 * b, "1": 1000 * b, "2": 1000 * b}}
                latest = {"user-events": {"0": 1000 * b + 20, "1": 1000 * b + 20 + q, "2": 1000 * b + 10 - b}}
                report = {
                    "name": name, "batchId": b, "numInputRows": 400 + b,
                    "processedRowsPerSecond": 200.0 + b + q, "durationMs": {"triggerExecution": 1800 + 10 * b},
                    "sources": [{"endOffset": json.dumps(end), "latestOffset": json.dumps(latest)}],
                }
                recorder.onQueryProgress(json.dumps(report))
    finally:
        recorder._close()


def gold_rows(d) -> dict[str, list[tuple]]:
    """The gold tables' rows of one date, in each model's column order."""
    rows = {
        "daily_active_users": [{"event_date": d, "dau_count": DAU[d]}],
        "conversion_rate_daily": [{"event_date": d, "conversion_rate": PURCHASERS[d] / DAU[d],
                                   "total_purchases": PURCHASES[d], "dau_count": DAU[d]}],
        "events_per_source_daily": [{"event_date": d, "source": s, "event_count": n}
                                    for s, n in EVENTS_PER_SOURCE[d].items()],
        "purchases_per_page_daily": [{"event_date": d, "page": page, "purchase_count": PURCHASES[d] // (k + 2)}
                                     for k, page in enumerate(PAGES[:4])],
    }
    return {name: [tuple(r[c] for c in MODELS[name].SCHEMA.names) for r in table] for name, table in rows.items()}


def fill_gold_and_ops(connect) -> None:
    """Gold and the DAG's ops rows through the DAG's own loader
    (lakehouse.batch.load, as gold_to_postgres and validate_silver call it):
    two runs, the later one with a failed warning expectation."""
    for run, d in (("scheduled__a", GOLD_DAYS[1]), ("manual__b", GOLD_DAYS[2])):
        outcomes = [
            ("expect_column_values_to_not_be_null", "event_id", "critical", True),
            ("expect_column_values_to_be_unique", "event_id", "critical", True),
            ("expect_column_values_to_be_in_set", "event_type", "critical", True),
            ("expect_column_values_to_be_between", "event_ts", "warning", run == "scheduled__a"),
        ]
        load.record_data_quality(connect, [
            (run, d, exp, col, sev, ok, 5000, 0 if ok else 3) for exp, col, sev, ok in outcomes
        ])
        for day in GOLD_DAYS if run == "scheduled__a" else [d]:
            for name, rows in gold_rows(day).items():
                load.load_table(connect, name, list(MODELS[name].SCHEMA.names), rows, day)
        load.record_batch_run(connect, run, d, 5000, 7)


@pytest.fixture(scope="module")
def serving(core_stack):
    """The serving schema in a database of its own on the session's cluster,
    so the rows below neither disturb nor depend on other tests' rows. Dropped
    afterwards: apply_schema grants the roles CONNECT on it, and
    tests/test_privileges.py checks they can open no database but the
    session's serving one."""
    settings = core_stack.model_copy(update={"pg_database": "lakehouse_dashboard_test"})
    postgres.apply_schema(settings)  # same roles, grants and sql/ files as `make up`
    yield settings
    conn = psycopg2.connect(core_stack.pg_dsn("superuser", "postgres"))
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE "{settings.pg_database}" WITH (FORCE)')
    finally:
        conn.close()


@pytest.fixture(scope="module")
def realtime_now(serving) -> datetime:
    """The minute the speed-layer rows end at."""
    return fill_realtime(serving.pg_dsn("writer"))


@pytest.fixture(scope="module")
def reader(serving, realtime_now):
    fill_stream_progress(serving.pg_dsn("writer"))
    fill_gold_and_ops(lambda: psycopg2.connect(serving.pg_dsn("writer")))
    conn = psycopg2.connect(serving.pg_dsn("reader"))
    conn.set_session(readonly=True, autocommit=True)
    yield conn
    conn.close()


def run_panel(conn, query, now: datetime | None = None) -> tuple[list[str], list[tuple]]:
    with conn.cursor() as cur:
        # As Grafana: the range ends now, at second precision; +1 s so rows
        # written within the last second are inside it.
        cur.execute(query.sql((now or datetime.now(timezone.utc)) + timedelta(seconds=1), DASHBOARD))
        return [d.name for d in cur.description], cur.fetchall()


def plotted_names(panel: dict) -> set[str]:
    """Columns a panel names: field overrides (`byName` matchers) and
    `${__data.fields.<column>}` in display names."""
    config = panel.get("fieldConfig", {})
    names = {o["matcher"]["options"] for o in config.get("overrides", []) if o["matcher"]["id"] == "byName"}
    return names | set(re.findall(r"\$\{__data\.fields\.(\w+)\}", json.dumps(config)))


def field_regex(panel: dict) -> str:
    text = panel.get("options", {}).get("reduceOptions", {}).get("fields", "")
    return text.strip("/") if text else ""


@pytest.mark.integration
@pytest.mark.parametrize("query", panel_queries(DASHBOARD), ids=lambda q: q.title)
def test_panel_returns_rows_with_the_columns_it_plots(reader, query):
    cols, rows = run_panel(reader, query)
    assert rows, f"{query.title}: no rows"
    assert len(cols) == len(set(cols)), f"{query.title}: duplicate column names {cols}"
    series = set(cols)
    if query.target["format"] == "time_series" and "metric" in cols:  # one series per metric value
        series |= {str(r[cols.index("metric")]) for r in rows}
    assert plotted_names(query.panel) <= series, f"{query.title}: overrides name missing columns or series"
    if field_regex(query.panel):
        assert [c for c in cols if re.fullmatch(field_regex(query.panel), c)], f"{query.title}: fields regex matches nothing"
    values = {c: [r[i] for r in rows] for i, c in enumerate(cols)}
    if query.target["format"] == "time_series":
        assert "time" in cols, f"{query.title}: time series needs a time column"
        assert all(isinstance(v, datetime) or isinstance(v, (int, float)) or hasattr(v, "as_integer_ratio")
                   for v in values["time"])
        numeric = [c for c in cols if c not in ("time", "metric")]
        assert numeric, f"{query.title}: no value column"
        for c in numeric:
            assert any(v is not None for v in values[c]), f"{query.title}: {c} is all NULL"
            assert all(v is None or isinstance(v, (int, float)) or hasattr(v, "as_integer_ratio") for v in values[c])
        if "metric" in cols:
            assert all(isinstance(v, str) for v in values["metric"])


def _panel(title: str):
    (q,) = [q for q in panel_queries(DASHBOARD) if q.panel["title"] == title]
    return q


@pytest.mark.integration
def test_top_row_shows_the_latest_gold_date_and_the_change_from_the_day_before(reader):
    latest, before = GOLD_DAYS[2], GOLD_DAYS[1]
    assert run_panel(reader, _panel("Latest gold date"))[1] == [(latest.isoformat(),)]
    assert run_panel(reader, _panel("Daily active users"))[1] == [(DAU[latest], DAU[latest] - DAU[before])]
    (rate, change), = run_panel(reader, _panel("Conversion rate"))[1]
    assert rate == pytest.approx(PURCHASERS[latest] / DAU[latest])
    assert change == pytest.approx(PURCHASERS[latest] / DAU[latest] - PURCHASERS[before] / DAU[before])
    assert run_panel(reader, _panel("Total purchases"))[1] == [(PURCHASES[latest], PURCHASES[latest] - PURCHASES[before])]
    total = {d: sum(v.values()) for d, v in EVENTS_PER_SOURCE.items()}
    assert run_panel(reader, _panel("Total events"))[1] == [(total[latest], total[latest] - total[before])]


@pytest.mark.integration
def test_realtime_panels_follow_the_time_range(reader, realtime_now):
    q = _panel("Purchases per minute")
    with reader.cursor() as cur:
        cur.execute(expand_macros(q.target["rawSql"], realtime_now - timedelta(minutes=10), realtime_now))
        last_ten = cur.fetchall()
    assert 9 <= len(last_ten) <= 11  # one row per minute in the range, not the whole table
    assert len(run_panel(reader, q, now=realtime_now)[1]) == 30  # the panel's default hour holds all 30


@pytest.mark.integration
def test_pipeline_health_panels(reader):
    cols, rows = run_panel(reader, _panel("Streams: latest micro-batch"))
    by_stream = {r[cols.index("stream")]: r for r in rows}
    assert set(by_stream) >= set(STREAMS)
    assert by_stream["raw-landing"][cols.index("batch_id")] == 11
    # lag = high watermark - end offset over partitions (the listener computes it): 20 + 20 + 0
    assert by_stream["raw-landing"][cols.index("lag")] == 40
    assert by_stream["fast-aggregation"][cols.index("lag")] == 41
    cols, rows = run_panel(reader, _panel("Last DAG run and its data quality"))
    row = dict(zip(cols, rows[0]))
    assert row["run_id"] == "manual__b" and row["data_quality"] == "WARN" and row["critical_failed"] == 0
    cols, rows = run_panel(reader, _panel("Last micro-batch age"))
    ages = {r[cols.index("metric")]: r[cols.index("value")] for r in rows}
    assert 0 <= float(ages["raw-landing"]) < 600


def rows_read(plan: dict, relation: str) -> int:
    """Rows an EXPLAIN ANALYZE plan read from a table: kept plus filtered
    out, over every scan of it and every loop."""
    own = 0
    if plan.get("Relation Name") == relation:
        own = (plan.get("Actual Rows", 0) + plan.get("Rows Removed by Filter", 0)
               + plan.get("Rows Removed by Index Recheck", 0)) * plan.get("Actual Loops", 1)
    return own + sum(rows_read(p, relation) for p in plan.get("Plans", []))


@pytest.mark.integration
def test_stream_panels_read_their_range_not_the_whole_history(serving, reader):
    """With 200,000 micro-batches of history (days of a running stream, and a
    stream that stopped days ago), each panel on the streams' progress reads a
    few thousand rows, not the table: row counts from EXPLAIN ANALYZE, no
    timing. The history is rolled back afterwards."""
    history = 200_000
    queries = [q for q in panel_queries(DASHBOARD) if re.search(r"ops\.stream_(progress|latest)", q.target["rawSql"])]
    assert len(queries) >= 4
    conn = psycopg2.connect(serving.pg_dsn("superuser", serving.pg_database))
    try:
        with conn.cursor() as cur:
            cur.execute("INSERT INTO ops.stream_progress (query_name, batch_id, input_rows, lag, future_events, recorded_at) "
                        "SELECT 'history-live', g, 100, 0, 0, now() - interval '2 hours' - make_interval(secs => %s - g) "
                        "FROM generate_series(1, %s) g", (history, history))
            cur.execute("INSERT INTO ops.stream_progress (query_name, batch_id, input_rows, recorded_at) "
                        "VALUES ('history-stopped', 0, 1, now() - interval '5 days')")
            # what autovacuum does for the BRIN index (autosummarize) as the table grows
            cur.execute("SELECT brin_summarize_new_values('ops.stream_progress_recorded')")
            cur.execute("ANALYZE ops.stream_progress")
            for q in queries:
                cur.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + q.sql(datetime.now(timezone.utc), DASHBOARD))
                read = rows_read(cur.fetchone()[0][0]["Plan"], "stream_progress")
                assert read < history // 20, f"{q.title}: read {read} rows of ops.stream_progress"
            cur.execute("SELECT query_name FROM ops.stream_latest WHERE query_name LIKE 'history-%' ORDER BY 1")
            assert cur.fetchall() == [("history-live",), ("history-stopped",)]
    finally:
        conn.rollback()
        conn.close()


@pytest.mark.integration
def test_the_dashboard_role_cannot_write(serving):
    conn = psycopg2.connect(serving.pg_dsn("reader"))  # a plain session, as Grafana opens it
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            for stmt in (
                "INSERT INTO realtime.purchases_per_minute (window_start, purchase_count) VALUES ('2001-01-01', 1)",
                "UPDATE gold.daily_active_users SET dau_count = 0",
                "DELETE FROM ops.batch_runs",
                "CREATE TABLE ops.grafana_scratch (x int)",
            ):
                with pytest.raises(psycopg2.Error):
                    cur.execute(stmt)
    finally:
        conn.close()


@pytest.mark.integration
def test_printed_panel_sql_runs_in_psql_as_the_reader(serving, reader):
    """`python -m lakehouse.dashboard | make psql` (docs/operations.md) runs every panel."""
    import subprocess
    import sys
    import time

    time.sleep(1.1)  # the printed range ends at the current second; let the fixture's rows fall inside it
    out = subprocess.run([sys.executable, "-m", "lakehouse.dashboard", "--minutes", "60"],
                         capture_output=True, text=True, check=True).stdout
    statements = [s for s in out.split(";\n") if s.strip()]
    assert len(statements) == len(panel_queries(DASHBOARD))
    env = {"PGPASSWORD": serving.pg_reader_password.get_secret_value(), "PATH": "/usr/bin:/bin"}
    dsn = f"host={serving.pg_host} port={serving.pg_port} dbname={serving.pg_database} user={serving.pg_reader_user}"
    res = subprocess.run(["psql", "-X", "-v", "ON_ERROR_STOP=1", "-q", dsn], input=out, env=env,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "(0 rows)" not in res.stdout  # every panel has data
