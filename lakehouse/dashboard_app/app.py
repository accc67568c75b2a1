"""The overview dashboard as a web page (Dash), from the Grafana JSON.

`create_app(settings)` builds a Dash app whose page lays out every row and
panel of `DASHBOARD_JSON` on Grafana's 24-column grid, with a time-range picker
(default: the dashboard's `time.from`) and an auto-refresh picker (default: its
`refresh`, choices from `timepicker.refresh_intervals`). A refresh is one
callback: it runs every panel's SQL as the read-only role and sends back each
panel's body; the page itself never reloads. The JSON is re-read when it
changes on disk (a reload of the page shows an added panel).

Every request but the login form needs a session: the admin user and the
generated DASHBOARD_ADMIN_PASSWORD from `.env`, checked on the server; the
session cookie is signed with DASHBOARD_SECRET_KEY. Nothing secret is ever in
a page or a URL.
"""

from __future__ import annotations

import hmac
import html as html_escape
import logging
import threading
from datetime import datetime, timezone
from pathlib import Path

from dash import ALL, Dash, Input, Output, State, dcc, html
from flask import Response, redirect, request, session

from lakehouse.dashboard import load_dashboard, parse_duration
from lakehouse.dashboard_app import render
from lakehouse.dashboard_app.queries import Reader, panel_statements
from lakehouse.settings import Settings

log = logging.getLogger(__name__)

#: Grafana's quick ranges (relative, ending now).
QUICK_RANGES = ["5m", "15m", "30m", "1h", "3h", "6h", "12h", "24h", "2d", "7d", "30d"]
OFF = "off"


class DashboardFile:
    """The dashboard JSON, re-read when its modification time changes."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._mtime: float | None = None
        self._dashboard: dict = {}

    def get(self) -> dict:
        mtime = self.path.stat().st_mtime
        with self._lock:
            if mtime != self._mtime:
                self._dashboard = load_dashboard(self.path)
                self._mtime = mtime
            return self._dashboard


def panels_of(dashboard: dict) -> list[dict]:
    """The non-row panels in layout order (the callback addresses them by index)."""
    return [p for p in render.layout_items(dashboard) if p.get("type") != "row"]


def panel_key(i: int, panel: dict) -> str:
    return f"{i}:{panel.get('id', '')}"


# --- page ---------------------------------------------------------------------------
def _panel_frame(i: int, panel: dict) -> html.Div:
    badge = []
    if panel.get("timeFrom") and not panel.get("hideTimeOverride"):
        badge = [html.Span(render.relative_label(panel["timeFrom"]), className="badge")]
    info = [html.Span("i", className="info", title=panel["description"])] if panel.get("description") else []
    return html.Div(
        [
            html.Div([html.Span(panel.get("title", ""), className="panel-title"), *info, *badge], className="panel-header"),
            html.Div(html.Div("Loading...", className="nodata"), id={"type": "panel", "index": panel_key(i, panel)},
                     className="panel-body"),
        ],
        className=f"panel panel-{panel.get('type', 'unknown')}",
        style=render.grid_style(panel),
        **{"data-title": panel.get("title", "")},
    )


def page(dashboard: dict) -> html.Div:
    default_range = dashboard.get("time", {}).get("from", "now-1h").removeprefix("now-")
    ranges = QUICK_RANGES if default_range in QUICK_RANGES else [default_range, *QUICK_RANGES]
    refreshes = dashboard.get("timepicker", {}).get("refresh_intervals") or ["10s", "30s", "1m", "5m"]
    default_refresh = dashboard.get("refresh") or OFF
    if default_refresh != OFF and default_refresh not in refreshes:
        refreshes = [default_refresh, *refreshes]
    items, panel_index = [], 0
    for item in render.layout_items(dashboard):
        if item.get("type") == "row":
            items.append(html.Div(item.get("title", ""), className="row-title", style=render.grid_style(item)))
        else:
            items.append(_panel_frame(panel_index, item))
            panel_index += 1
    interval = parse_duration(default_refresh).total_seconds() * 1000 if default_refresh != OFF else 10_000
    return html.Div(
        [
            html.Div(
                [
                    html.Span(dashboard.get("title", "Dashboard"), className="dash-title"),
                    html.Span(id="updated", className="updated"),
                    dcc.Dropdown(id="range", options=[{"label": render.relative_label(r), "value": r} for r in ranges],
                                 value=default_range, clearable=False, searchable=False, className="picker"),
                    html.Button("Refresh", id="refresh-now", className="button"),
                    dcc.Dropdown(id="refresh", options=[{"label": "Off", "value": OFF}]
                                 + [{"label": r, "value": r} for r in refreshes],
                                 value=default_refresh, clearable=False, searchable=False, className="picker small"),
                    html.A("Sign out", href="/logout", className="logout"),
                ],
                className="topbar",
            ),
            html.Div(items, className="grid"),
            dcc.Interval(id="tick", interval=interval, disabled=default_refresh == OFF),
        ]
    )


# --- panel bodies -----------------------------------------------------------------------
def _error(text: str) -> html.Div:
    return html.Div([html.Span("!", className="error-icon"), html.Span(text)], className="panel-error",
                    **{"data-state": "error"})


def _no_data() -> html.Div:
    return html.Div(render.NO_DATA, className="nodata", **{"data-state": "nodata"})


def panel_body(panel: dict, results: list[render.Result], start: datetime, end: datetime):
    """The body of one panel: its error, 'No data', or the rendered values."""
    errors = [r.error for r in results if r.error]
    if errors and len(errors) == len(results):
        return _error("; ".join(dict.fromkeys(errors)))
    ok = [r for r in results if not r.error]
    rows = sum(len(r.rows) for r in ok)
    if not rows:
        return _no_data()
    kind = panel.get("type")
    first = next(r for r in ok if r.rows)
    if kind == "stat":
        values = render.stat_values(panel, first)
        body = html.Div([
            html.Div([html.Div(v.text, className="stat-value", style={"color": v.color}),
                      html.Div(v.name, className="stat-name")], className="stat-item")
            for v in values
        ], className="stat")
    elif kind == "timeseries":
        fig = render.timeseries_figure(panel, ok, start, end)
        body = dcc.Graph(figure=fig, config={"displayModeBar": False, "responsive": True},
                         className="chart", style={"height": "100%", "width": "100%"})
    elif kind == "bargauge":
        body = html.Div([
            html.Div([
                html.Div(b.name, className="bar-name"),
                html.Div(html.Div(className="bar-fill", style={
                    "width": f"{max(b.fraction, 0.005) * 100:.1f}%",
                    "background": f"linear-gradient(90deg, #5794F2, {b.color})"}), className="bar-track"),
                html.Div(b.text, className="bar-value", style={"color": b.color}),
            ], className="bar")
            for b in render.bargauge_bars(panel, first)
        ], className="bargauge")
    else:
        header, cells = render.table_cells(panel, first)
        note = [] if kind == "table" else [html.Div(f"panel type {kind!r} shown as a table", className="note")]
        body = html.Div(note + [html.Table([
            html.Thead(html.Tr([html.Th(h) for h in header])),
            html.Tbody([html.Tr([html.Td(c.text, style={"color": c.color} if c.color else None) for c in row])
                        for row in cells]),
        ])], className="table-wrap")
    extra = [_error("; ".join(errors))] if errors else []
    return html.Div(extra + [body], className="panel-content", **{"data-state": "ok", "data-rows": str(rows)})


# --- login ----------------------------------------------------------------------------
LOGIN_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Sign in - {title}</title>
<style>body{{background:#111217;color:#ccccdc;font-family:Inter,Helvetica,Arial,sans-serif;display:flex;
justify-content:center;align-items:center;height:100vh;margin:0}}form{{background:#181b1f;padding:32px;
border:1px solid #2c3235;border-radius:4px;width:320px}}h1{{font-size:18px;font-weight:500}}label{{display:block;
margin:12px 0 4px;font-size:13px}}input{{width:100%;box-sizing:border-box;padding:8px;background:#111217;
color:#ccccdc;border:1px solid #2c3235;border-radius:2px}}button{{margin-top:20px;width:100%;padding:8px;
background:#3d71d9;color:#fff;border:0;border-radius:2px;font-size:14px}}.err{{color:#F2495C;font-size:13px}}</style>
</head><body><form method="post" action="/login"><h1>{title}</h1>{error}
<label for="username">Username</label><input id="username" name="username" autocomplete="username" autofocus>
<label for="password">Password</label><input id="password" name="password" type="password"
autocomplete="current-password"><button type="submit">Sign in</button></form></body></html>"""


def _install_login(server, settings: Settings, title: str) -> None:
    """Session login in front of every route (Dash's pages, callbacks and assets)."""
    server.secret_key = settings.dashboard_secret_key.get_secret_value()
    server.config.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Strict",
                         SESSION_COOKIE_NAME="lakehouse_dashboard")
    user = settings.dashboard_admin_user
    password = settings.dashboard_admin_password.get_secret_value()

    def form(error: str = "", status: int = 200) -> Response:
        err = f'<p class="err">{html_escape.escape(error)}</p>' if error else ""
        return Response(LOGIN_PAGE.format(title=html_escape.escape(title), error=err), status=status,
                        mimetype="text/html")

    @server.before_request
    def require_login():
        if request.path == "/login" or session.get("user") == user:
            return None
        if request.method == "GET" and request.path == "/":
            return redirect("/login")
        return Response("sign in first\n", status=401, mimetype="text/plain")

    @server.route("/login", methods=["GET", "POST"])
    def login():
        if request.method == "GET":
            return form()
        ok_user = hmac.compare_digest(request.form.get("username", "").encode(), user.encode())
        ok_password = hmac.compare_digest(request.form.get("password", "").encode(), password.encode())
        if ok_user and ok_password:
            session.clear()
            session["user"] = user
            return redirect("/")
        log.warning("failed sign-in from %s", request.remote_addr)
        return form("Invalid username or password", status=401)

    @server.route("/logout")
    def logout():
        session.clear()
        return redirect("/login")


# --- the app ----------------------------------------------------------------------------
def create_app(settings: Settings, dashboard_path: Path | None = None, reader: Reader | None = None) -> Dash:
    for name in ("dashboard_admin_password", "dashboard_secret_key", "pg_reader_password"):
        if getattr(settings, name) is None:
            raise RuntimeError(f"{name.upper()} is not set; run `make up` once to generate .env")
    source = DashboardFile(dashboard_path or settings.dashboard_json)
    reader = reader or Reader(settings.pg_dsn("reader"))
    first = source.get()
    app = Dash(__name__, title=first.get("title", "Dashboard"), update_title=None, serve_locally=True,
               suppress_callback_exceptions=True)
    app.index_string = INDEX.replace("{%css_inline%}", CSS)
    app.layout = lambda: page(source.get())  # a function: every page load sees the current JSON
    _install_login(app.server, settings, first.get("title", "Dashboard"))

    @app.callback(
        Output("tick", "interval"), Output("tick", "disabled"), Input("refresh", "value"),
    )
    def set_refresh(value):
        if not value or value == OFF:
            return 10_000, True
        return int(parse_duration(value).total_seconds() * 1000), False

    @app.callback(
        Output({"type": "panel", "index": ALL}, "children"),
        Output("updated", "children"),
        Input("tick", "n_intervals"), Input("range", "value"), Input("refresh-now", "n_clicks"),
        State({"type": "panel", "index": ALL}, "id"),
    )
    def refresh(_ticks, picked, _clicks, ids):
        dashboard = source.get()
        panels = panels_of(dashboard)
        now = datetime.now(timezone.utc).replace(microsecond=0)
        picked = picked or dashboard.get("time", {}).get("from", "now-1h").removeprefix("now-")
        work, bodies, wanted = [], {}, []
        for pid in ids:
            i = int(pid["index"].split(":", 1)[0])
            panel = panels[i] if i < len(panels) else None
            if panel is None or panel_key(i, panel) != pid["index"]:
                bodies[pid["index"]] = _error("the dashboard JSON changed; reload the page")
                continue
            try:
                statements = panel_statements(panel, dashboard, picked, now)
            except ValueError as exc:  # an unsupported macro in this panel's SQL
                bodies[pid["index"]] = _error(f"query not run: {exc}")
                continue
            if not statements:
                bodies[pid["index"]] = _error("the panel has no rawSql target")
                continue
            work.append((pid["index"], statements))
            wanted.append((pid["index"], panel))
        results = reader.run_all(work)
        for key, panel in wanted:
            start, end = render.time_range(now, render.panel_range(panel, picked))
            try:
                bodies[key] = panel_body(panel, results[key], start, end)
            except Exception as exc:  # a rendering bug stays in its panel
                log.exception("panel %r failed to render", panel.get("title"))
                bodies[key] = _error(f"render failed: {type(exc).__name__}: {exc}")
        return [bodies[pid["index"]] for pid in ids], f"updated {now:%H:%M:%S} UTC"

    app.reader = reader
    return app


INDEX = """<!DOCTYPE html>
<html>
<head>
{%metas%}
<title>{%title%}</title>
{%favicon%}
{%css%}
<style>{%css_inline%}</style>
</head>
<body>
{%app_entry%}
<footer>
{%config%}
{%scripts%}
{%renderer%}
</footer>
</body>
</html>"""

CSS = """
body{background:#111217;color:#ccccdc;font-family:Inter,Helvetica,Arial,sans-serif;margin:0;font-size:13px}
.topbar{display:flex;align-items:center;gap:8px;padding:8px 16px;border-bottom:1px solid #2c3235;background:#181b1f}
.dash-title{font-size:17px;font-weight:500;flex:1}
.updated{color:#8e8e8e;font-size:12px;margin-right:8px}
.picker{width:170px;color:#111}.picker.small{width:90px}
.button{background:#22252b;color:#ccccdc;border:1px solid #2c3235;border-radius:2px;padding:6px 10px;cursor:pointer}
.logout{color:#6e9fff;margin-left:8px;text-decoration:none}
.grid{display:grid;grid-template-columns:repeat(24,minmax(0,1fr));grid-auto-rows:30px;gap:8px;padding:8px 16px}
.row-title{font-size:15px;font-weight:500;align-self:end;padding:4px 0}
.panel{background:#181b1f;border:1px solid #2c3235;border-radius:2px;display:flex;flex-direction:column;min-width:0;min-height:0}
.panel-header{display:flex;align-items:center;gap:6px;padding:6px 8px;font-weight:500;white-space:nowrap;overflow:hidden}
.panel-title{overflow:hidden;text-overflow:ellipsis}
.info{border:1px solid #8e8e8e;border-radius:50%;font-size:9px;width:12px;height:12px;line-height:12px;text-align:center;color:#8e8e8e;cursor:help}
.badge{color:#6e9fff;font-size:11px;font-weight:400;margin-left:auto}
.panel-body{flex:1;min-height:0;overflow:auto;padding:0 8px 6px}
.panel-content{height:100%;display:flex;flex-direction:column}
.panel-timeseries .panel-body{overflow:hidden}
.chart{flex:1;min-height:0}
.nodata{color:#8e8e8e;display:flex;align-items:center;justify-content:center;height:100%}
.panel-error{color:#F2495C;display:flex;gap:6px;align-items:flex-start;padding:4px;font-size:12px;word-break:break-word}
.error-icon{background:#C4162A;color:#fff;border-radius:2px;padding:0 5px;font-weight:700}
.stat{display:flex;gap:12px;align-items:center;justify-content:space-around;height:100%;flex-wrap:wrap}
.stat-item{text-align:center;min-width:0}
.stat-value{font-size:28px;font-weight:500;line-height:1.1}
.stat-name{font-size:12px;color:#ccccdc;opacity:.8}
.bargauge{display:flex;flex-direction:column;gap:4px;height:100%;justify-content:space-around}
.bar{display:grid;grid-template-columns:110px 1fr 70px;gap:8px;align-items:center}
.bar-name{overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.bar-track{background:rgba(204,204,220,.07);height:16px}.bar-fill{height:100%}
.bar-value{text-align:right;font-weight:500}
.table-wrap table{border-collapse:collapse;width:100%;font-size:12px}
.table-wrap th{text-align:left;color:#6e9fff;font-weight:500;border-bottom:1px solid #2c3235;padding:4px 6px;position:sticky;top:0;background:#181b1f}
.table-wrap td{border-bottom:1px solid #22252b;padding:3px 6px;white-space:nowrap}
.note{color:#8e8e8e;font-size:11px}
"""
