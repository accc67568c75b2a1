"""The overview dashboard in headless Chromium, on a stack of its own (PostgreSQL,
broker and the `dashboard` program under supervisord, as `make up` runs them).

Rows go in through the pipeline's own writers (fast aggregation's upsert, the
progress listener, the DAG's loader; see tests/test_dashboard.py); between two
refreshes the test changes realtime rows in PostgreSQL and sees the page show
the new number without reloading. Also: a panel added to a copy of the JSON is
rendered, a panel whose query fails shows its error while the others work,
PostgreSQL stopped and started again is said in every panel and then
recovered from, and the dashboard process's resident memory under the 10 s
refresh stays within 200 MB. Screenshots are kept in the test's tmp_path (and
copied to $DASHBOARD_SCREENSHOT when set, which is how docs/dashboard.png is made)."""

from __future__ import annotations

import copy
import json
import os
import shutil
import threading
import time
from datetime import timedelta

import psutil
import psycopg2
import pytest
import requests

from lakehouse.batch import load
from lakehouse.dashboard import iter_panels, load_dashboard
from lakehouse.platform import dashboard as dashboard_program
from lakehouse.platform import stack
from lakehouse.polling import wait_for
from tests.browser import launch_chromium
from tests.conftest import free_port, make_settings
from tests.test_dashboard import (
    EVENTS_PER_SOURCE,
    GOLD_DAYS,
    fill_gold_and_ops,
    fill_realtime,
    fill_stream_progress,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DASHBOARD = load_dashboard()
TITLES = [p["title"] for p in iter_panels(DASHBOARD)]
CHARTS = {p["title"] for p in iter_panels(DASHBOARD) if p["type"] == "timeseries"}
MEMORY_TARGET_MB = 200


@pytest.fixture(scope="module")
def dash_stack(tmp_path_factory):
    settings = make_settings(tmp_path_factory.mktemp("dash_run") / "run")
    try:
        stack.up(settings, groups=("core", "dashboard"))
        writer = settings.pg_dsn("writer")
        fill_stream_progress(writer)
        connect = lambda: psycopg2.connect(writer)  # noqa: E731
        fill_gold_and_ops(connect)
        # yesterday as the speed layer saw it: 12 events fewer than gold (late past the watermark),
        # and its batch run's bronze count (60 duplicates dropped)
        yesterday = GOLD_DAYS[2]
        gold_total = sum(EVENTS_PER_SOURCE[yesterday].values())
        load.record_batch_run(connect, "manual__c", yesterday, 5000, 7, bronze_rows=5067)
        with connect() as conn, conn.cursor() as cur:
            for h in range(24):
                n = gold_total // 24 + (gold_total % 24 if h == 23 else 0) - (12 if h == 0 else 0)
                cur.execute("INSERT INTO realtime.events_per_minute (window_start, event_type, event_count) "
                            "VALUES (%s::date + make_interval(hours => %s), 'click', %s)", (yesterday, h, n))
        yield settings
    finally:
        stack.clean(settings)


def sign_in(page, base: str, settings) -> None:
    page.goto(base + "/")
    assert page.url.endswith("/login")
    page.get_by_label("Username").fill(settings.dashboard_admin_user)
    page.get_by_label("Password").fill(settings.dashboard_admin_password.get_secret_value())
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: not url.endswith("/login"))


PANEL_STATES = """() => [...document.querySelectorAll('.panel')].map(p => {
    const body = p.querySelector('.panel-body > [data-state]');
    const g = p.querySelector('.js-plotly-plot');
    return {title: p.dataset.title, state: body ? body.dataset.state : 'loading',
            text: (body ? body.innerText : '').slice(0, 200),
            points: g && g.data ? g.data.reduce((n, t) => n + (t.y || []).length, 0) : null};
})"""


def panel_states(page) -> dict[str, dict]:
    return {s["title"]: s for s in page.evaluate(PANEL_STATES)}


def wait_all(page, want, timeout: float = 60) -> dict[str, dict]:
    """Wait until every panel satisfies `want(state)`; return the states."""
    def settled():
        states = panel_states(page)
        return states if states and all(want(s) for s in states.values()) else None

    try:
        return wait_for(settled, timeout, "every panel to settle", every=0.5)
    except Exception:
        raise AssertionError(f"panels: {json.dumps(panel_states(page), indent=1)}") from None


def _realtime_today(page) -> str:
    """The drift table's 'realtime events' cell of today (first row)."""
    return page.evaluate("""() => {
        const p = [...document.querySelectorAll('.panel')].find(p => p.dataset.title.startsWith('Speed layer vs batch'));
        const cells = p.querySelectorAll('tbody tr:first-child td');
        return cells.length ? cells[1].innerText : null; }""")


def _purchases_sum(page) -> float:
    return page.evaluate("""() => {
        const p = [...document.querySelectorAll('.panel')].find(p => p.dataset.title === 'Purchases per minute');
        const g = p.querySelector('.js-plotly-plot');
        return g.data.reduce((n, t) => n + t.y.reduce((a, b) => a + (b || 0), 0), 0); }""")


@pytest.fixture
def realtime_now(dash_stack):
    """The speed layer's last 30 minutes, ending at the current minute (rows
    written when the test starts, so an earlier slow test cannot age them out
    of a panel's range). Returns the minute they end at."""
    return fill_realtime(dash_stack.pg_dsn("writer"))


def test_every_panel_renders_live_and_recovers_from_a_database_outage(dash_stack, realtime_now, tmp_path):
    from playwright.sync_api import sync_playwright

    settings = dash_stack
    base = dashboard_program.base_url(settings)
    proxy = stack._proxy(settings).supervisor
    proc = psutil.Process(proxy.getProcessInfo("dashboard")["pid"])
    for path in ("/_dash-layout", "/_dash-dependencies"):  # the running service refuses anonymous requests
        assert requests.get(base + path, timeout=30).status_code == 401
    assert requests.post(base + "/_dash-update-component", json={}, timeout=30).status_code == 401
    with sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.set_default_timeout(60_000)
        sign_in(page, base, settings)
        page.evaluate("window.__not_reloaded = true")

        # every panel of the JSON, with data: none in error, no empty chart where the SQL returns rows
        try:
            states = wait_all(page, lambda s: s["state"] == "ok" and (s["title"] not in CHARTS or s["points"]))
        finally:
            page.screenshot(path=str(tmp_path / "dashboard_first_load.png"), full_page=True)
        assert sorted(states) == sorted(TITLES)
        assert page.get_by_text("Last 30 days").first.is_visible()  # the panels' own time ranges are shown

        # one refresh later, a realtime number changed (rows changed in PostgreSQL meanwhile)
        before_cell, before_sum = _realtime_today(page), _purchases_sum(page)
        updated = page.locator("#updated").inner_text()
        with psycopg2.connect(settings.pg_dsn("writer")) as conn, conn.cursor() as cur:
            minute = realtime_now - timedelta(minutes=1)
            cur.execute("UPDATE realtime.purchases_per_minute SET purchase_count = purchase_count + 500 "
                        "WHERE window_start = %s", (minute,))
            assert cur.rowcount == 1
            cur.execute("UPDATE realtime.events_per_minute SET event_count = event_count + 500 "
                        "WHERE window_start = %s AND event_type = 'purchase'", (minute,))
        wait_for(lambda: page.locator("#updated").inner_text() != updated, 30, "one auto-refresh", every=0.5)
        wait_for(lambda: _purchases_sum(page) == before_sum + 500, 30, "the purchases chart to change", every=0.5)
        wait_for(lambda: _realtime_today(page) != before_cell, 30, "today's realtime total to change", every=0.5)
        assert page.evaluate("window.__not_reloaded") is True  # no full-page reload
        shot = tmp_path / "dashboard.png"
        page.screenshot(path=str(shot), full_page=True)
        if os.environ.get("DASHBOARD_SCREENSHOT"):
            shutil.copy(shot, os.environ["DASHBOARD_SCREENSHOT"])
        print(f"screenshot: {shot}")

        # resident memory of the dashboard process over six 10 s refreshes
        samples = []
        for _ in range(7):
            samples.append(proc.memory_info().rss / 2**20)
            time.sleep(10)
        print(f"dashboard RSS under a 10 s refresh: max {max(samples):.0f} MB, samples {[round(s) for s in samples]}")
        assert max(samples) <= MEMORY_TARGET_MB

        # PostgreSQL down: every panel says so; back: the page recovers by itself
        proxy.stopProcess("postgres", True)
        try:
            wait_all(page, lambda s: s["state"] == "error" and "PostgreSQL is unreachable" in s["text"], 60)
            page.screenshot(path=str(tmp_path / "dashboard_postgres_down.png"))
        finally:
            proxy.startProcess("postgres", True)
        wait_all(page, lambda s: s["state"] == "ok", 90)
        assert page.evaluate("window.__not_reloaded") is True
        browser.close()


def test_a_panel_added_to_a_copy_of_the_json_renders_and_a_failing_one_stays_in_its_panel(dash_stack, realtime_now,
                                                                                          tmp_path):
    """The dashboard app on a copy of the JSON (in this process, same database):
    one panel added, one whose SQL fails; the added one renders with data, the
    failing one shows PostgreSQL's error, every other panel its data."""
    from playwright.sync_api import sync_playwright
    from waitress.server import create_server

    from lakehouse.dashboard_app.app import create_app

    dashboard = copy.deepcopy(DASHBOARD)
    ds = {"type": "postgres", "uid": "lakehouse-pg"}
    dashboard["panels"] += [
        {"type": "timeseries", "title": "Logins per minute, all sources (added)", "id": 101, "datasource": ds,
         "gridPos": {"x": 0, "y": 100, "w": 12, "h": 8},
         "targets": [{"refId": "A", "datasource": ds, "format": "time_series", "rawQuery": True,
                      "rawSql": "SELECT $__time(window_start), sum(login_count) AS logins FROM realtime.logins_per_source "
                                "WHERE $__timeFilter(window_start) GROUP BY 1 ORDER BY 1"}],
         "fieldConfig": {"defaults": {"custom": {"drawStyle": "bars"}, "unit": "short"}, "overrides": []}},
        {"type": "stat", "title": "Broken on purpose", "id": 102, "datasource": ds,
         "gridPos": {"x": 12, "y": 100, "w": 12, "h": 8},
         "targets": [{"refId": "A", "datasource": ds, "format": "table", "rawQuery": True,
                      "rawSql": "SELECT count(*) AS n FROM gold.no_such_table"}]},
    ]
    path = tmp_path / "overview.json"
    path.write_text(json.dumps(dashboard))
    settings = dash_stack.model_copy(update={"dashboard_json": path, "dashboard_port": free_port()})
    app = create_app(settings)
    server = create_server(app.server, host="127.0.0.1", port=settings.dashboard_port, threads=2)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        with sync_playwright() as p:
            browser = launch_chromium(p)
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.set_default_timeout(60_000)
            sign_in(page, dashboard_program.base_url(settings), settings)
            charts = CHARTS | {"Logins per minute, all sources (added)"}
            states = wait_all(page, lambda s: s["state"] != "loading" and (s["title"] not in charts or s["state"] != "ok"
                                                                           or s["points"]))
            added = states.pop("Logins per minute, all sources (added)")
            assert added["state"] == "ok" and added["points"], added
            broken = states.pop("Broken on purpose")
            assert broken["state"] == "error" and "no_such_table" in broken["text"], broken
            assert {t: s["state"] for t, s in states.items()} == {t: "ok" for t in TITLES}
            page.screenshot(path=str(tmp_path / "dashboard_added_panel.png"), full_page=True)

            # the time picker: "Last 5 minutes" narrows the realtime charts without a page reload
            page.evaluate("window.__not_reloaded = true")
            span = lambda: page.evaluate("""() => {
                const p = [...document.querySelectorAll('.panel')].find(p => p.dataset.title === 'Purchases per minute');
                const g = p.querySelector('.js-plotly-plot');  // none while the panel reloads or has no rows
                if (!g || !g.layout) return null;
                const r = g.layout.xaxis.range;
                return (new Date(r[1].replace(' ', 'T') + 'Z') - new Date(r[0].replace(' ', 'T') + 'Z')) / 1000; }""")
            assert span() == 3600
            page.locator("#range").click()
            page.get_by_text("Last 5 minutes", exact=True).click()
            wait_for(lambda: span() == 300, 30, "the charts to follow the picked range", every=0.5)
            assert page.evaluate("window.__not_reloaded") is True
            browser.close()
    finally:
        server.close()
        app.reader.close()
