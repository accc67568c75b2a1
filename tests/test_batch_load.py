"""gold_to_postgres's per-table transaction against the real PostgreSQL: a
re-load replaces the date (vanished keys vanish), and a connection killed in
the middle of a load rolls back to the previous rows, then the retry succeeds."""

from __future__ import annotations

import threading
import time
from datetime import date

import psycopg2
import pytest

from lakehouse.batch import load

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


def connect(settings):
    return lambda: psycopg2.connect(settings.pg_dsn("writer"))


def test_reload_replaces_the_date_only(core_stack):
    other = date(2026, 9, 2)
    load.load_table(connect(core_stack), "events_per_source_daily", COLS, [(other, "web", 1)], other)
    load.load_table(connect(core_stack), "events_per_source_daily", COLS, [(D, "web", 5), (D, "mobile", 3)], D)
    load.load_table(connect(core_stack), "events_per_source_daily", COLS, [(D, "web", 6)], D)
    assert rows(core_stack) == [("web", 6)]  # mobile vanished with the new load
    assert rows(core_stack, other) == [("web", 1)]


def test_outage_mid_load_rolls_back_and_the_retry_succeeds(core_stack):
    load.load_table(connect(core_stack), "events_per_source_daily", COLS, [(D, "web", 1)], D)
    # Another transaction holds an uncommitted row with a key the load will
    # insert: the load deletes the old rows, then blocks inside its INSERT.
    holder = psycopg2.connect(core_stack.pg_dsn("writer"))
    hcur = holder.cursor()
    hcur.execute("INSERT INTO gold.events_per_source_daily (event_date, source, event_count) VALUES (%s, 'mobile', 99)",
                 (D,))
    result: dict = {}

    def run_load():
        try:
            result["rows"] = load.load_table(connect(core_stack), "events_per_source_daily", COLS,
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
