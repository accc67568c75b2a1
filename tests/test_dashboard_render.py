"""The embedded dashboard's rendering rules (quick tier: no database, no browser):
Grafana units and thresholds, stat values with their change from the day
before, time-series figures, bar gauge, tables, the layout from gridPos, panel
errors, and the login in front of every route."""

from __future__ import annotations

import copy
import json
from datetime import date, datetime, timedelta, timezone

import pytest

from lakehouse.dashboard import iter_panels, load_dashboard
from lakehouse.dashboard_app import render
from lakehouse.dashboard_app.app import create_app, page, panel_body, panels_of
from lakehouse.dashboard_app.queries import UNREACHABLE, Reader, panel_statements
from lakehouse.dashboard_app.render import Result
from tests.conftest import make_settings

DASHBOARD = load_dashboard()
PANELS = {p["title"]: p for p in iter_panels(DASHBOARD)}
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)


def test_units_as_grafana_shows_them():
    f = render.format_value
    assert f(120, "short", 0) == "120"
    assert f(1234, "short") == "1.23 K"
    assert f(2_500_000, "short", 0) == "2 Mil"
    assert f(0.1234, "percentunit", 2) == "12.34%"
    assert f(-0.015, "percentunit", 2) == "-1.50%"
    assert f(42, "s", 0) == "42 s"
    assert f(150, "s", 0) == "2.5 min"
    assert f(1800, "ms") == "1.80 s"
    assert f(250, "ms") == "250 ms"
    assert f(datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc), "dateTimeAsIso") == "2026-01-02 03:04:05"
    assert f(date(2026, 1, 2)) == "2026-01-02"
    assert f(None, "short") == "-"
    assert f("PASSED") == "PASSED"
    assert f(3.14159) == "3.14"


def test_thresholds_pick_the_last_step_at_or_below_the_value():
    cfg = render.field_config(PANELS["Last micro-batch age"], "fast-aggregation")
    assert render.threshold_color(5, cfg) == render.COLORS["green"]
    assert render.threshold_color(30, cfg) == render.COLORS["orange"]
    assert render.threshold_color(500, cfg) == render.COLORS["red"]
    # raw landing's own steps (its byName override): a batch a minute is normal
    cfg = render.field_config(PANELS["Last micro-batch age"], "raw-landing")
    assert render.threshold_color(90, cfg) == render.COLORS["green"]
    assert render.threshold_color(150, cfg) == render.COLORS["orange"]
    assert render.threshold_color(300, cfg) == render.COLORS["red"]


def test_stat_shows_the_value_and_its_change_from_the_day_before():
    values = render.stat_values(PANELS["Daily active users"], Result(["dau", "dau_change"], [(120, 20)]))
    assert [(v.name, v.text) for v in values] == [("DAU", "120"), ("vs day before", "20")]
    assert values[1].color == render.COLORS["green"]
    down = render.stat_values(PANELS["Daily active users"], Result(["dau", "dau_change"], [(90, -10)]))
    assert down[1].color == render.COLORS["red"]
    rate = render.stat_values(PANELS["Conversion rate"],
                              Result(["conversion_rate", "conversion_rate_change"], [(0.15, -0.02)]))
    assert [v.text for v in rate] == ["15.00%", "-2.00%"]
    first_day = render.stat_values(PANELS["Total events"], Result(["total_events", "total_events_change"], [(900, None)]))
    assert [v.text for v in first_day] == ["900", "-"]  # no day before: no change


def test_stat_of_a_time_series_query_shows_one_value_per_metric():
    res = Result(["time", "metric", "value"], [(NOW, "fast-aggregation", 3.2), (NOW, "raw-landing", 400.0)])
    values = render.stat_values(PANELS["Last micro-batch age"], res)
    assert [(v.name, v.text) for v in values] == [("fast-aggregation", "3 s"), ("raw-landing", "6.7 min")]
    assert values[1].color == render.COLORS["red"]


def test_timeseries_long_format_gives_one_series_per_metric_over_the_panel_range():
    panel = PANELS["Events per minute by type"]
    rows = [(NOW - timedelta(minutes=m), t, 10 * m + k) for m in (3, 2, 1) for k, t in enumerate(("click", "login"))]
    fig = render.timeseries_figure(panel, [Result(["time", "metric", "value"], rows)], NOW - timedelta(hours=1), NOW)
    assert [t["name"] for t in fig["data"]] == ["click", "login"]
    assert fig["data"][0]["y"] == [30, 20, 10] and fig["data"][0]["type"] == "scatter"
    assert fig["layout"]["xaxis"]["range"] == ["2026-11-30 11:00:00", "2026-11-30 12:00:00"]


def test_bars_stacking_and_a_right_axis_come_from_the_field_config():
    bars = render.timeseries_figure(PANELS["Events by source per day"],
                                    [Result(["time", "metric", "value"], [(NOW, "web", 5), (NOW, "mobile", 3)])],
                                    NOW - timedelta(days=30), NOW)
    assert {t["type"] for t in bars["data"]} == {"bar"} and bars["layout"]["barmode"] == "stack"
    wide = render.timeseries_figure(PANELS["DAU and conversion over days"],
                                    [Result(["time", "dau", "conversion_rate"], [(NOW, 100, 0.1), (NOW, 120, 0.12)])],
                                    NOW - timedelta(days=30), NOW)
    names = {t["name"]: t for t in wide["data"]}
    assert set(names) == {"DAU", "conversion"}
    assert names["conversion"]["yaxis"] == "y2" and wide["layout"]["yaxis2"]["tickformat"] == ".0%"
    epoch = render.series(PANELS["Stream lag (records behind)"],
                          [Result(["time", "metric", "value"], [(1_764_504_000.0, "raw-landing", 7)])])
    assert epoch[0].x == [datetime(2025, 11, 30, 12, 0, tzinfo=timezone.utc)]  # $__timeGroupAlias gives epoch seconds


def test_bar_gauge_has_a_bar_per_row_named_by_the_display_name_template():
    bars = render.bargauge_bars(PANELS["Top pages by purchases"],
                                Result(["page", "purchases"], [("/checkout", 40), ("/cart", 10)]))
    assert [(b.name, b.text, b.fraction) for b in bars] == [("/checkout", "40", 1.0), ("/cart", "10", 0.25)]


def test_table_formats_units_and_colours_mapped_values():
    panel = PANELS["Last DAG run and its data quality"]
    cols = ["run_id", "event_date", "silver_rows", "quarantined", "finished_at", "checks", "failed",
            "critical_failed", "data_quality"]
    header, rows = render.table_cells(panel, Result(cols, [("r1", date(2026, 1, 2), 10, 0, NOW, 4, 1, 0, "WARN")]))
    assert header == cols
    assert rows[0][4].text == "2026-11-30 12:00:00"
    assert rows[0][8] == render.Cell("WARN", render.COLORS["orange"])
    drift = PANELS["Speed layer vs batch truth, per day"]
    header, rows = render.table_cells(drift, Result(["event_date", "drift"], [(date(2026, 1, 2), -0.2), (date(2026, 1, 1), 0.0)]))
    assert header == ["day (UTC)", "drift"]
    assert rows[0][1] == render.Cell("-20.00%", render.COLORS["red"])
    assert rows[1][1].color == render.COLORS["green"]


def test_the_drift_panel_compares_realtime_with_gold_and_says_why():
    panel = PANELS["Speed layer vs batch truth, per day"]
    sql = panel["targets"][0]["rawSql"]
    for table in ("realtime.events_per_minute", "gold.events_per_source_daily", "ops.batch_runs", "ops.stream_progress"):
        assert table in sql
    for col in ("realtime_events", "gold_events", "difference", "duplicates", "quarantined", "future_skewed", "why"):
        assert f" {col}" in sql or f"AS {col}" in sql, col


def test_layout_follows_grid_positions():
    assert render.grid_style({"gridPos": {"x": 4, "y": 1, "w": 5, "h": 5}}) == {
        "gridColumn": "5 / span 5", "gridRow": "2 / span 5"}
    items = render.layout_items(DASHBOARD)
    ys = [(p["gridPos"]["y"], p["gridPos"]["x"]) for p in items]
    assert ys == sorted(ys)
    assert len(panels_of(DASHBOARD)) == len(list(iter_panels(DASHBOARD)))


def _walk(component):
    yield component
    children = getattr(component, "children", None)
    if isinstance(children, (list, tuple)):
        for c in children:
            yield from _walk(c)
    elif children is not None and hasattr(children, "to_plotly_json"):
        yield from _walk(children)


def test_page_has_a_frame_for_every_panel_and_grafana_s_defaults():
    tree = page(DASHBOARD)
    frames = [c for c in _walk(tree) if isinstance(getattr(c, "id", None), dict)]
    assert len(frames) == len(list(iter_panels(DASHBOARD)))
    ids = {getattr(c, "id", None): c for c in _walk(tree) if isinstance(getattr(c, "id", None), str)}
    assert ids["range"].value == "1h"  # time.from now-1h
    assert ids["refresh"].value == "10s" and ids["tick"].interval == 10_000 and not ids["tick"].disabled


def test_a_panel_whose_query_failed_shows_the_error_and_no_data_is_said():
    panel = PANELS["Purchases per minute"]
    err = panel_body(panel, [Result(error="query failed: relation does not exist")], NOW, NOW)
    assert err.to_plotly_json()["props"]["data-state"] == "error"
    empty = panel_body(panel, [Result(["time", "purchases"], [])], NOW, NOW)
    assert empty.to_plotly_json()["props"]["data-state"] == "nodata"
    ok = panel_body(panel, [Result(["time", "purchases"], [(NOW, 3)])], NOW - timedelta(hours=1), NOW)
    assert ok.to_plotly_json()["props"]["data-rows"] == "1"


def test_statements_use_the_picked_range_unless_the_panel_has_its_own():
    picked = panel_statements(PANELS["Purchases per minute"], DASHBOARD, "5m", NOW)[0]
    assert "'2026-11-30T11:55:00Z' AND '2026-11-30T12:00:00Z'" in picked
    own = panel_statements(PANELS["Top pages by purchases"], DASHBOARD, "5m", NOW)[0]
    assert "'2026-10-31T12:00:00Z'" in own


def test_an_unreachable_database_is_said_in_every_panel():
    reader = Reader("host=127.0.0.1 port=1 dbname=x user=y", connect_timeout_s=1)
    out = reader.run_all([("a", ["SELECT 1"]), ("b", ["SELECT 2", "SELECT 3"])])
    assert set(out) == {"a", "b"}
    assert all(r.error and r.error.startswith(UNREACHABLE) for rs in out.values() for r in rs)


# --- login -------------------------------------------------------------------------------
@pytest.fixture
def client(tmp_path):
    settings = make_settings(tmp_path / "run", pg_port=1)
    app = create_app(settings, reader=Reader("host=127.0.0.1 port=1 dbname=x user=y", connect_timeout_s=1))
    return settings, app.server.test_client()


def test_every_route_but_the_login_form_refuses_an_anonymous_request(client):
    settings, c = client
    assert c.get("/").status_code == 302 and c.get("/").headers["Location"].endswith("/login")
    for path in ("/_dash-layout", "/_dash-dependencies", "/_dash-update-component", "/_dash-component-suites/dash/dcc/dash_core_components.js"):
        assert c.get(path).status_code == 401, path
    assert c.post("/_dash-update-component", json={}).status_code == 401
    login = c.get("/login")
    assert login.status_code == 200 and b'type="password"' in login.data
    password = settings.dashboard_admin_password.get_secret_value()
    assert password.encode() not in login.data


def test_sign_in_with_the_generated_password(client):
    settings, c = client
    password = settings.dashboard_admin_password.get_secret_value()
    bad = c.post("/login", data={"username": settings.dashboard_admin_user, "password": password + "x"})
    assert bad.status_code == 401 and c.get("/_dash-layout").status_code == 401
    good = c.post("/login", data={"username": settings.dashboard_admin_user, "password": password})
    assert good.status_code == 302
    layout = c.get("/_dash-layout")
    assert layout.status_code == 200
    text = layout.get_data(as_text=True)
    assert "Speed layer vs batch truth" in text
    for secret in (password, settings.pg_reader_password.get_secret_value(), settings.dashboard_secret_key.get_secret_value()):
        assert secret not in text
    assert c.get("/").status_code == 200
    c.get("/logout")
    assert c.get("/_dash-layout").status_code == 401


def test_a_panel_added_to_the_json_is_in_the_next_page_load(tmp_path):
    copy_path = tmp_path / "overview.json"
    dashboard = copy.deepcopy(DASHBOARD)
    copy_path.write_text(json.dumps(dashboard))
    settings = make_settings(tmp_path / "run", dashboard_json=copy_path)
    app = create_app(settings, reader=Reader("host=127.0.0.1 port=1 dbname=x user=y", connect_timeout_s=1))
    c = app.server.test_client()
    c.post("/login", data={"username": settings.dashboard_admin_user,
                           "password": settings.dashboard_admin_password.get_secret_value()})
    assert "Added later" not in c.get("/_dash-layout").get_data(as_text=True)
    new = copy.deepcopy(PANELS["Purchases per minute"])
    new.update(id=99, title="Added later", gridPos={"x": 0, "y": 100, "w": 12, "h": 6})
    dashboard["panels"].append(new)
    copy_path.write_text(json.dumps(dashboard))
    import os
    os.utime(copy_path, (1, 2_000_000_000))  # a new mtime even within the file system's resolution
    assert "Added later" in c.get("/_dash-layout").get_data(as_text=True)
