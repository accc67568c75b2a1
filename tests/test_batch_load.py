"""gold_to_postgres's one transaction against the real PostgreSQL: a re-load
replaces the date (vanished keys vanish), a connection killed in the middle
of a load rolls back to the previous rows and the retry succeeds, and a value
PostgreSQL rejects in one table leaves all four tables' previous rows in place
and fails at once, naming table, column and value."""

from __future__ import annotations

import threading
import time
from datetime import date

import psycopg2
import pytest

from lakehouse.batch import load
from lakehouse.batch.gold import MODELS

pytestmark = pytest.mark.integration

D = date(2026, 9, 1)
COLS = ["event_date", "source", "event_count"]


def rows(settings, d=D):
    with psycopg2.connect(settings.pg_dsn("reader")) as conn, conn.cursor() as cur:
        cur.execute("SELECT source, event_count FROM gold.events_per_source_daily WHERE event_date = %s "
                    "ORDER BY source", (d,))
        out = cur.fetchall()
    conn.close()
    return out


def connect(settings, counter=None):
    def _connect():
        if counter is not None:
            counter.append(1)
        return psycopg2.connect(settings.pg_dsn("writer"))
    return _connect


def load_table(connect, table, columns, rows, d):
    return load.load_date(connect, [load.GoldRows(table, columns, rows)], d)[table]


def test_reload_replaces_the_date_only(core_stack):
    other = date(2026, 9, 2)
    load_table(connect(core_stack), "events_per_source_daily", COLS, [(other, "web", 1)], other)
    load_table(connect(core_stack), "events_per_source_daily", COLS, [(D, "web", 5), (D, "mobile", 3)], D)
    load_table(connect(core_stack), "events_per_source_daily", COLS, [(D, "web", 6)], D)
    assert rows(core_stack) == [("web", 6)]  # mobile vanished with the new load
    assert rows(core_stack, other) == [("web", 1)]


def test_outage_mid_load_rolls_back_and_the_retry_succeeds(core_stack):
    load_table(connect(core_stack), "events_per_source_daily", COLS, [(D, "web", 1)], D)
    # Another transaction holds an uncommitted row with a key the load will
    # insert: the load deletes the old rows, then blocks inside its INSERT.
    holder = psycopg2.connect(core_stack.pg_dsn("writer"))
    hcur = holder.cursor()
    hcur.execute("INSERT INTO gold.events_per_source_daily (event_date, source, event_count) VALUES (%s, 'mobile', 99)",
                 (D,))
    result: dict = {}

    def run_load():
        try:
            result["rows"] = load_table(connect(core_stack), "events_per_source_daily", COLS,
                                             [(D, "web", 7), (D, "mobile", 8)], D)
        except Exception as exc:  # pragma: no cover - reported by the assertion below
            result["error"] = exc

    loader = threading.Thread(target=run_load)
    loader.start()
    admin = psycopg2.connect(core_stack.pg_dsn("superuser"))
    admin.autocommit = True
    acur = admin.cursor()
    pid = None
    for _ in range(100):  # wait until the load's INSERT is blocked mid-transaction
        acur.execute("SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                     "AND query LIKE 'INSERT INTO \"gold\".\"events_per_source_daily\"%%'")
        found = acur.fetchall()
        if found:
            pid = found[0][0]
            break
        time.sleep(0.1)
    assert pid is not None, "the load never blocked"
    acur.execute("SELECT pg_terminate_backend(%s)", (pid,))  # the outage
    time.sleep(0.5)
    assert rows(core_stack) == [("web", 1)]  # rolled back: the previous rows are intact
    holder.rollback()  # the outage ends; the load's retry can finish
    holder.close()
    loader.join(timeout=60)
    admin.close()
    assert "error" not in result, result
    assert result["rows"] == 2
    assert rows(core_stack) == [("mobile", 8), ("web", 7)]


def all_gold(settings, d):
    out = {}
    with psycopg2.connect(settings.pg_dsn("reader")) as conn, conn.cursor() as cur:
        for name, model in MODELS.items():
            cur.execute(f"SELECT {', '.join(model.SCHEMA.names)} FROM gold.{name} WHERE event_date = %s "
                        f"ORDER BY {', '.join(model.KEY)}", (d,))
            out[name] = cur.fetchall()
    conn.close()
    return out


def day(d, dau, page="/cart"):
    return [
        load.GoldRows("daily_active_users", ["event_date", "dau_count"], [(d, dau)]),
        load.GoldRows("conversion_rate_daily", ["event_date", "conversion_rate", "total_purchases", "dau_count"],
                      [(d, 0.5, 3, dau)]),
        load.GoldRows("events_per_source_daily", COLS, [(d, "web", dau * 2)]),
        load.GoldRows("purchases_per_page_daily", ["event_date", "page", "purchase_count"], [(d, page, 3)]),
    ]


def test_bad_value_in_one_table_keeps_all_four_tables_and_is_not_retried(core_stack):
    d = date(2026, 9, 3)
    run = load.BatchRun("bad-value-run-1", d, bronze_rows=10, bronze_version=3, silver_rows=9, quarantined=0,
                        stream_end_offsets={"t": {"0": 5}}, stream_recorded_at=None)
    load.load_date(connect(core_stack), day(d, 4), d, run)
    before = all_gold(core_stack, d)
    assert before["daily_active_users"] == [(d, 4)]
    calls: list = []
    with pytest.raises(load.GoldValueError) as err:
        # the last table's page holds a NUL character: PostgreSQL text refuses it
        load.load_date(connect(core_stack, calls), day(d, 7, page="/ca\x00rt"), d,
                       load.BatchRun("bad-value-run-2", d, 11, 4, 10, 0))
    msg = str(err.value)
    assert "gold.purchases_per_page_daily" in msg and "column page" in msg and "'/ca\\x00rt'" in msg, msg
    assert len(calls) == 1  # a data error is not retried
    assert all_gold(core_stack, d) == before  # the three tables loaded before it were rolled back too
    with psycopg2.connect(core_stack.pg_dsn("reader")) as conn, conn.cursor() as cur:
        cur.execute("SELECT run_id, bronze_rows, bronze_version, stream_end_offsets FROM ops.batch_runs "
                    "WHERE event_date = %s ORDER BY run_id", (d,))
        assert cur.fetchall() == [("bad-value-run-1", 10, 3, {"t": {"0": 5}})]
    conn.close()
