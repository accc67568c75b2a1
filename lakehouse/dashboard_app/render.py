"""Grafana panel JSON + query result -> what a panel shows (pure, no web, no database).

The embedded dashboard renders the panels of `grafana/dashboards/*.json` the way
Grafana would, from the same definitions: titles, SQL, units, decimals, field
overrides (display names, units, thresholds, value mappings, right axis),
thresholds, draw style and stacking, and the layout grid (`gridPos`). Each
function here turns one panel and the rows of its query into plain data (text,
colours, a Plotly figure as a dict), so the web layer only places it and the
rules are tested without a browser.

Supported panel types: stat, timeseries, bargauge, table (and row headers);
any other type renders as a table of its query's rows, with a note.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any

#: Grafana's named colours (dark theme) used in thresholds and value mappings.
COLORS = {
    "green": "#73BF69", "red": "#F2495C", "orange": "#FF9830", "yellow": "#FADE2A",
    "blue": "#5794F2", "purple": "#B877D9", "dark-red": "#C4162A", "dark-green": "#37872D",
    "dark-orange": "#FA6400", "dark-yellow": "#E0B400", "dark-blue": "#1F60C4",
    "dark-purple": "#8F3BB8", "semi-dark-red": "#E02F44", "semi-dark-green": "#56A64B",
    "text": "#CCCCDC", "transparent": "transparent",
}
#: Grafana's classic palette, the colour of the n-th series.
PALETTE = ["#7EB26D", "#EAB839", "#6ED0E0", "#EF843C", "#E24D42", "#1F78C1", "#BA43A9", "#705DA0",
           "#508642", "#CCA300", "#447EBC", "#C15C17"]
TEXT = COLORS["text"]
NO_DATA = "No data"


def color(name: str | None) -> str:
    if not name:
        return TEXT
    return COLORS.get(name, name)


@dataclass(frozen=True)
class Result:
    """The rows of one panel query, or the error that stopped it."""

    columns: list[str] = field(default_factory=list)
    rows: list[tuple] = field(default_factory=list)
    error: str | None = None

    def column(self, name: str) -> list:
        i = self.columns.index(name)
        return [r[i] for r in self.rows]


# --- field config -----------------------------------------------------------------
def field_config(panel: dict, name: str) -> dict:
    """The panel's field defaults with the `byName` overrides of field `name`
    applied (Grafana's property ids: displayName, unit, decimals, thresholds,
    mappings, custom.*)."""
    cfg = panel.get("fieldConfig", {})
    out = {k: v for k, v in cfg.get("defaults", {}).items() if k != "custom"}
    out["custom"] = dict(cfg.get("defaults", {}).get("custom", {}))
    for o in cfg.get("overrides", []):
        m = o.get("matcher", {})
        hit = (m.get("id") == "byName" and m.get("options") == name) or (
            m.get("id") == "byRegexp" and re.fullmatch(m.get("options", "").strip("/"), name)
        )
        if not hit:
            continue
        for prop in o.get("properties", []):
            key = prop["id"]
            if key.startswith("custom."):
                out["custom"][key.removeprefix("custom.")] = prop.get("value")
            else:
                out[key] = prop.get("value")
    return out


def display_name(cfg: dict, name: str, row: dict | None = None) -> str:
    """A field's display name: its `displayName` (with `${__data.fields.x}`
    taken from the row) or the column / series name."""
    text = cfg.get("displayName")
    if not text:
        return name
    return re.sub(r"\$\{__data\.fields\.(\w+)\}", lambda m: str((row or {}).get(m.group(1), "")), text) or name


def threshold_color(value: Any, cfg: dict) -> str:
    """Colour of the last threshold step at or below `value` (base step: null)."""
    steps = (cfg.get("thresholds") or {}).get("steps") or []
    chosen = steps[0]["color"] if steps else None
    num = _number(value)
    if num is not None:
        for s in steps[1:]:
            if s.get("value") is not None and num >= s["value"]:
                chosen = s["color"]
    return color(chosen)


def mapped(value: Any, cfg: dict) -> tuple[str | None, str | None]:
    """(text, colour) of a value mapping that matches `value`, else (None, None)."""
    for m in cfg.get("mappings") or []:
        if m.get("type") == "value":
            hit = (m.get("options") or {}).get(str(value))
            if hit:
                return hit.get("text"), color(hit.get("color")) if hit.get("color") else None
    return None, None


# --- units --------------------------------------------------------------------------
def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float, Decimal)):
        f = float(value)
        return None if math.isnan(f) else f
    return None


def _fixed(x: float, decimals: int | None) -> str:
    if decimals is None:
        if float(x).is_integer():
            return str(int(x))
        mag = abs(x)
        decimals = 1 if mag >= 100 else 2 if mag >= 1 else 3
        text = f"{x:.{decimals}f}".rstrip("0").rstrip(".")
        return text
    return f"{x:.{decimals}f}"


_SHORT = [(1e12, " Tri"), (1e9, " Bil"), (1e6, " Mil"), (1e3, " K")]


def format_value(value: Any, unit: str | None = None, decimals: int | None = None) -> str:
    """A value as Grafana shows it for `unit` (short, percent, percentunit, s,
    ms, bytes, dateTimeAsIso, none) and `decimals`."""
    if value is None:
        return "-"
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(timezone.utc)
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.isoformat()
    num = _number(value)
    if num is None:
        return str(value)
    unit = unit or "none"
    if unit == "percentunit":
        return _fixed(num * 100, decimals) + "%"
    if unit == "percent":
        return _fixed(num, decimals) + "%"
    if unit == "short":
        for size, suffix in _SHORT:
            if abs(num) >= size:
                scaled = num / size
                return (_fixed(scaled, decimals) if decimals is not None else _fixed(round(scaled, 2), None)) + suffix
        return _fixed(num, decimals)
    if unit == "s":
        for size, suffix in ((86400, " day"), (3600, " hour"), (60, " min")):
            if abs(num) >= size:
                return _fixed(num / size, 1 if decimals in (None, 0) else decimals) + suffix
        return _fixed(num, decimals) + " s"
    if unit == "ms":
        if abs(num) >= 1000:
            return format_value(num / 1000, "s", 2 if decimals in (None, 0) else decimals)
        return _fixed(num, decimals) + " ms"
    if unit in ("bytes", "decbytes"):
        base = 1024 if unit == "bytes" else 1000
        for power, suffix in ((4, " TB"), (3, " GB"), (2, " MB"), (1, " kB")):
            if abs(num) >= base**power:
                return _fixed(num / base**power, 1 if decimals is None else decimals) + suffix
        return _fixed(num, decimals) + " B"
    if unit == "dateTimeAsIso":
        return datetime.fromtimestamp(num / 1000 if num > 1e11 else num, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    return _fixed(num, decimals)


def cell_text(value: Any, cfg: dict) -> str:
    text, _ = mapped(value, cfg)
    return text if text is not None else format_value(value, cfg.get("unit"), cfg.get("decimals"))


# --- stat --------------------------------------------------------------------------
@dataclass(frozen=True)
class StatValue:
    name: str
    text: str
    color: str


def _fields(panel: dict, columns: list[str], numeric_only: bool) -> list[str]:
    pattern = (panel.get("options", {}).get("reduceOptions", {}).get("fields") or "").strip()
    names = [c for c in columns if c not in ("time", "metric")]
    if pattern:
        rx = pattern[1:-1] if pattern.startswith("/") and pattern.endswith("/") else re.escape(pattern)
        return [c for c in names if re.fullmatch(rx, c)]
    return names if not numeric_only else names


def _last_not_null(values: list) -> Any:
    for v in reversed(values):
        if v is not None:
            return v
    return None


def stat_values(panel: dict, result: Result) -> list[StatValue]:
    """One value per field (table format) or per series (`metric` column):
    the last non-null value (Grafana's lastNotNull), formatted and coloured by
    its thresholds."""
    out = []
    show_name = panel.get("options", {}).get("textMode", "auto") in ("value_and_name", "name", "auto")
    if "metric" in result.columns:
        value_cols = [c for c in result.columns if c not in ("time", "metric")]
        metrics = result.column("metric")
        for metric in dict.fromkeys(metrics):
            for col in value_cols:
                vals = [r[result.columns.index(col)] for r, m in zip(result.rows, metrics) if m == metric]
                cfg = field_config(panel, metric)
                v = _last_not_null(vals)
                out.append(StatValue(display_name(cfg, str(metric)), cell_text(v, cfg), threshold_color(v, cfg)))
        return out
    fields = _fields(panel, result.columns, numeric_only=False)
    for col in fields:
        cfg = field_config(panel, col)
        v = _last_not_null(result.column(col))
        out.append(StatValue(display_name(cfg, col) if show_name or len(fields) > 1 else "",
                             cell_text(v, cfg), threshold_color(v, cfg)))
    return out


# --- time series -----------------------------------------------------------------
def _as_time(v: Any) -> datetime:
    if isinstance(v, datetime):
        return v if v.tzinfo else v.replace(tzinfo=timezone.utc)
    if isinstance(v, date):
        return datetime(v.year, v.month, v.day, tzinfo=timezone.utc)
    num = float(v)
    return datetime.fromtimestamp(num / 1000 if num > 1e11 else num, timezone.utc)


def _iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


@dataclass
class Series:
    name: str
    cfg: dict
    x: list[datetime] = field(default_factory=list)
    y: list[float | None] = field(default_factory=list)


def series(panel: dict, results: list[Result]) -> list[Series]:
    """The series of a time-series panel: long format (time, metric, value)
    gives one series per metric, wide format one per numeric column."""
    out: dict[str, Series] = {}
    for res in results:
        if res.error or not res.rows or "time" not in res.columns:
            continue
        times = [_as_time(v) for v in res.column("time")]
        values = [c for c in res.columns if c not in ("time", "metric")]
        if "metric" in res.columns:
            for t, m, row in zip(times, res.column("metric"), res.rows):
                for c in values:
                    name = str(m) if len(values) == 1 else f"{m} {c}"
                    s = out.setdefault(name, Series(name, field_config(panel, name)))
                    s.x.append(t)
                    s.y.append(_number(row[res.columns.index(c)]))
        else:
            for c in values:
                s = out.setdefault(c, Series(c, field_config(panel, c)))
                s.x += times
                s.y += [_number(v) for v in res.column(c)]
    return list(out.values())


_TICKFORMAT = {"percentunit": ".0%", "percent": ".0f"}
_TICKSUFFIX = {"percent": "%", "s": " s", "ms": " ms"}


def _axis(unit: str | None, **extra) -> dict:
    axis = {"gridcolor": "rgba(204,204,220,0.12)", "zeroline": False, "rangemode": "tozero", **extra}
    if unit in _TICKFORMAT:
        axis["tickformat"] = _TICKFORMAT[unit]
    if unit in _TICKSUFFIX:
        axis["ticksuffix"] = _TICKSUFFIX[unit]
    return axis


def _rgba(hex_color: str, opacity: float) -> str:
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{opacity:.2f})"


def timeseries_figure(panel: dict, results: list[Result], start: datetime, end: datetime) -> dict:
    """A Plotly figure (as a dict) for a time-series panel: lines or bars
    (custom.drawStyle), fill (fillOpacity), points (showPoints), stacking,
    a right axis for fields with custom.axisPlacement=right, the x axis over
    the panel's time range."""
    traces, right_unit = [], None
    left_unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit")
    stacking = panel.get("fieldConfig", {}).get("defaults", {}).get("custom", {}).get("stacking", {}).get("mode")
    for i, s in enumerate(series(panel, results)):
        custom = s.cfg.get("custom", {})
        c = PALETTE[i % len(PALETTE)]
        name = display_name(s.cfg, s.name)
        pairs = sorted(zip(s.x, s.y), key=lambda p: p[0])
        trace: dict[str, Any] = {"name": name, "x": [_iso(t) for t, _ in pairs], "y": [v for _, v in pairs]}
        if custom.get("drawStyle") == "bars":
            trace.update(type="bar", marker={"color": _rgba(c, 0.8), "line": {"color": c, "width": 1}})
        else:
            points = custom.get("showPoints", "auto")
            lone = sum(v is not None for _, v in pairs) < 2  # a single point: draw it, or the chart looks empty
            trace.update(type="scatter", mode="lines+markers" if points == "always" or lone else "lines",
                         line={"color": c, "width": custom.get("lineWidth", 1)})
            opacity = (custom.get("fillOpacity") or 0) / 100
            if opacity:
                trace.update(fill="tonexty" if stacking == "normal" and i else "tozeroy", fillcolor=_rgba(c, opacity))
            if stacking == "normal":
                trace["stackgroup"] = "A"
        if custom.get("axisPlacement") == "right":
            trace["yaxis"] = "y2"
            right_unit = s.cfg.get("unit")
        unit = s.cfg.get("unit")
        trace["hovertemplate"] = "%{y}<extra>" + name + "</extra>" if unit not in _TICKFORMAT else \
            "%{y:" + _TICKFORMAT[unit] + "}<extra>" + name + "</extra>"
        traces.append(trace)
    layout = {
        "margin": {"l": 48, "r": 48 if right_unit is not None else 12, "t": 8, "b": 28},
        "paper_bgcolor": "rgba(0,0,0,0)", "plot_bgcolor": "rgba(0,0,0,0)",
        "font": {"color": TEXT, "size": 11},
        "xaxis": {"range": [_iso(start), _iso(end)], "type": "date",
                  "gridcolor": "rgba(204,204,220,0.12)"},
        "yaxis": _axis(left_unit),
        "legend": {"orientation": "h", "y": -0.18, "x": 0},
        "showlegend": panel.get("options", {}).get("legend", {}).get("showLegend", True),
        "barmode": "stack" if stacking == "normal" else "group",
        "hovermode": "x unified",
        "uirevision": panel.get("id", panel.get("title")),
    }
    if right_unit is not None or any(t.get("yaxis") == "y2" for t in traces):
        layout["yaxis2"] = _axis(right_unit, overlaying="y", side="right", showgrid=False)
    return {"data": traces, "layout": layout}


# --- bar gauge -----------------------------------------------------------------------
@dataclass(frozen=True)
class Bar:
    name: str
    text: str
    fraction: float
    color: str


def _blpu(fraction: float) -> str:
    """Grafana's continuous-BlPu scheme: blue -> purple."""
    a, b = (0x57, 0x94, 0xF2), (0xB8, 0x77, 0xD9)
    r, g, bl = (round(x + (y - x) * fraction) for x, y in zip(a, b))
    return f"#{r:02X}{g:02X}{bl:02X}"


def bargauge_bars(panel: dict, result: Result) -> list[Bar]:
    """Bars of a bar gauge: every row's value (reduceOptions.values=true) or
    the last value of each field, scaled from 0 (or min) to the largest value
    (or max), named by displayName (`${__data.fields.x}` per row)."""
    fields = _fields(panel, result.columns, numeric_only=True)
    fields = [f for f in fields if any(_number(v) is not None for v in result.column(f))] or fields
    items: list[tuple[str, Any, dict]] = []
    if panel.get("options", {}).get("reduceOptions", {}).get("values"):
        for row in result.rows:
            named = dict(zip(result.columns, row))
            for f in fields:
                cfg = field_config(panel, f)
                items.append((display_name(cfg, f, named), named[f], cfg))
    else:
        for f in fields:
            cfg = field_config(panel, f)
            items.append((display_name(cfg, f), _last_not_null(result.column(f)), cfg))
    nums = [_number(v) or 0.0 for _, v, _ in items]
    defaults = panel.get("fieldConfig", {}).get("defaults", {})
    lo = defaults.get("min", 0)
    hi = defaults.get("max", max(nums, default=1) or 1)
    mode = (defaults.get("color") or {}).get("mode", "thresholds")
    bars = []
    for (name, v, cfg), n in zip(items, nums):
        frac = 0.0 if hi == lo else max(0.0, min(1.0, (n - lo) / (hi - lo)))
        c = _blpu(frac) if mode.startswith("continuous") else threshold_color(v, cfg)
        bars.append(Bar(name, cell_text(v, cfg), frac, c))
    return bars


# --- table ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Cell:
    text: str
    color: str | None = None


def table_cells(panel: dict, result: Result) -> tuple[list[str], list[list[Cell]]]:
    """Header (display names) and formatted cells; a column with
    custom.cellOptions type color-text gets its mapping's or threshold's colour."""
    cfgs = [field_config(panel, c) for c in result.columns]
    header = [display_name(cfg, c) for cfg, c in zip(cfgs, result.columns)]
    rows = []
    for row in result.rows:
        cells = []
        for v, cfg in zip(row, cfgs):
            text, mcolor = mapped(v, cfg)
            colored = (cfg.get("custom", {}).get("cellOptions") or {}).get("type") in ("color-text", "color-background")
            c = (mcolor or (threshold_color(v, cfg) if cfg.get("thresholds") and v is not None else None)) if colored else None
            cells.append(Cell(text if text is not None else format_value(v, cfg.get("unit"), cfg.get("decimals")), c))
        rows.append(cells)
    return header, rows


# --- layout ---------------------------------------------------------------------------
def grid_style(panel: dict) -> dict:
    """CSS grid placement from Grafana's gridPos (24 columns, rows of one unit)."""
    g = panel.get("gridPos", {})
    return {
        "gridColumn": f"{g.get('x', 0) + 1} / span {g.get('w', 12)}",
        "gridRow": f"{g.get('y', 0) + 1} / span {g.get('h', 8)}",
    }


def layout_items(dashboard: dict) -> list[dict]:
    """Rows and panels in the order Grafana lays them out (by gridPos y, x);
    the panels of a collapsed row follow it."""
    items = []
    for p in dashboard.get("panels", []):
        items.append(p)
        if p.get("type") == "row":
            items += p.get("panels", [])
    return sorted(items, key=lambda p: (p.get("gridPos", {}).get("y", 0), p.get("gridPos", {}).get("x", 0)))


def relative_label(rel: str) -> str:
    """'30d' -> 'Last 30 days', as Grafana labels a range."""
    m = re.fullmatch(r"(\d+)([smhdwy])", rel)
    if not m:
        return rel
    n, unit = int(m.group(1)), {"s": "second", "m": "minute", "h": "hour", "d": "day", "w": "week", "y": "year"}[m.group(2)]
    return f"Last {n} {unit}{'s' if n != 1 else ''}"


def time_range(now: datetime, rel: str) -> tuple[datetime, datetime]:
    from lakehouse.dashboard import parse_duration

    return now - parse_duration(rel), now


def panel_range(panel: dict, picked: str) -> str:
    """The relative range a panel queries: its own `timeFrom`, else the picker's."""
    return panel.get("timeFrom") or picked

