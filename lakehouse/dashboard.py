"""The Grafana overview dashboard as data: its panels, their SQL, and the
expansion of Grafana's PostgreSQL macros for a concrete time range.

Grafana expands `$__timeFilter(col)` and friends on the server before it sends
a panel's SQL to PostgreSQL. `expand_macros` does the same so the panels' SQL
can be run (and tested) outside Grafana, e.g. from psql when a panel looks
wrong. Only the macros below are supported; any other `$__name` is an error,
so a panel cannot use one that was never run.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

import yaml

from lakehouse.settings import REPO_ROOT

DASHBOARD_PATH = REPO_ROOT / "grafana" / "dashboards" / "lakehouse_overview.json"
DATASOURCE_PATH = REPO_ROOT / "grafana" / "provisioning" / "datasources" / "lakehouse.yaml"

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_NICE_INTERVALS = [1, 2, 5, 10, 15, 20, 30, 60, 120, 300, 600, 900, 1200, 1800, 3600,
                   7200, 10800, 21600, 43200, 86400, 604800]


def parse_duration(text: str) -> timedelta:
    """Grafana duration ('10s', '5m', '1h', '30d', '1w') -> timedelta."""
    m = re.fullmatch(r"\s*'?(\d+)(ms|s|m|h|d|w|y)'?\s*", text)
    if not m:
        raise ValueError(f"not a Grafana duration: {text!r}")
    return timedelta(seconds=int(m.group(1)) * _UNITS[m.group(2)])


def format_duration(delta: timedelta) -> str:
    seconds = delta.total_seconds()
    for unit in ("w", "d", "h", "m", "s"):
        size = _UNITS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{int(round(seconds * 1000))}ms"


def interval_for(start: datetime, end: datetime, max_points: int = 1000, min_interval: str | None = None) -> timedelta:
    """Roughly Grafana's `$__interval`: the range over the data points,
    rounded up to a round step, never below the panel's min interval."""
    raw = (end - start).total_seconds() / max(max_points, 1)
    step = next((n for n in _NICE_INTERVALS if n >= raw), _NICE_INTERVALS[-1])
    if min_interval:
        step = max(step, parse_duration(min_interval).total_seconds())
    return timedelta(seconds=step)


def _rfc3339(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _split_args(text: str) -> list[str]:
    args, depth, cur = [], 0, ""
    for ch in text:
        if ch == "," and depth == 0:
            args.append(cur.strip())
            cur = ""
            continue
        depth += ch == "("
        depth -= ch == ")"
        cur += ch
    if cur.strip():
        args.append(cur.strip())
    return args


def _group_seconds(arg: str) -> int:
    return int(parse_duration(arg).total_seconds())


def _macro(name: str, args: list[str], start: datetime, end: datetime) -> str:
    frm, to = _rfc3339(start), _rfc3339(end)
    if name == "time":
        return f'{args[0]} AS "time"'
    if name == "timeEpoch":
        return f'extract(epoch from {args[0]}) AS "time"'
    if name == "timeFilter":
        return f"{args[0]} BETWEEN '{frm}' AND '{to}'"
    if name == "timeFrom":
        return f"'{frm}'"
    if name == "timeTo":
        return f"'{to}'"
    if name == "unixEpochFilter":
        return f"{args[0]} >= {int(start.timestamp())} AND {args[0]} <= {int(end.timestamp())}"
    if name in ("timeGroup", "timeGroupAlias"):
        n = _group_seconds(args[1])
        expr = f"floor(extract(epoch from {args[0]})/{n})*{n}"
        return expr + (' AS "time"' if name == "timeGroupAlias" else "")
    raise ValueError(f"unsupported Grafana macro $__{name}()")


def expand_macros(sql: str, start: datetime, end: datetime, interval: timedelta | None = None) -> str:
    """Expand Grafana's PostgreSQL macros for the range [start, end]."""
    interval = interval or interval_for(start, end)
    sql = sql.replace("$__interval_ms", str(int(interval.total_seconds() * 1000)))
    sql = sql.replace("$__interval", format_duration(interval))
    out, pos = [], 0
    for m in re.finditer(r"\$__(\w+)", sql):
        if m.start() < pos:
            continue
        out.append(sql[pos:m.start()])
        name, i = m.group(1), m.end()
        if i >= len(sql) or sql[i] != "(":
            raise ValueError(f"unsupported Grafana macro or variable $__{name}")
        depth, j = 0, i
        while j < len(sql):
            depth += sql[j] == "("
            depth -= sql[j] == ")"
            if depth == 0:
                break
            j += 1
        if depth:
            raise ValueError(f"unbalanced parentheses after $__{name}")
        out.append(_macro(name, _split_args(sql[i + 1:j]), start, end))
        pos = j + 1
    out.append(sql[pos:])
    return "".join(out)


# --- the dashboard file -----------------------------------------------------------
def load_dashboard(path: Path = DASHBOARD_PATH) -> dict:
    return json.loads(Path(path).read_text())


def datasource_uid(path: Path = DATASOURCE_PATH) -> str:
    """uid of the provisioned PostgreSQL data source (the one panels must use)."""
    sources = yaml.safe_load(Path(path).read_text())["datasources"]
    (source,) = [s for s in sources if "postgres" in s["type"]]
    return source["uid"]


def iter_panels(dashboard: dict) -> Iterator[dict]:
    """Every non-row panel, including those nested in collapsed rows."""
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


@dataclass(frozen=True)
class PanelQuery:
    panel: dict
    target: dict

    @property
    def title(self) -> str:
        return f"{self.panel['title']} [{self.target.get('refId', 'A')}]"

    def time_range(self, now: datetime, dashboard: dict) -> tuple[datetime, datetime]:
        """The range Grafana queries: the panel's relative-time override
        (`timeFrom`) or the dashboard's default `now-X`..`now`."""
        rel = self.panel.get("timeFrom")
        if not rel:
            frm = dashboard.get("time", {}).get("from", "now-1h")
            rel = frm.removeprefix("now-")
        return now - parse_duration(rel), now

    def sql(self, now: datetime, dashboard: dict) -> str:
        start, end = self.time_range(now, dashboard)
        interval = interval_for(start, end, self.panel.get("maxDataPoints", 1000), self.panel.get("interval"))
        return expand_macros(self.target["rawSql"], start, end, interval)


def panel_queries(dashboard: dict) -> list[PanelQuery]:
    return [PanelQuery(p, t) for p in iter_panels(dashboard) for t in p.get("targets", [])]


def main(
    panel: str = "",
    minutes: int = 60,
) -> None:
    """Print each panel's SQL with the macros expanded for the last MINUTES
    (panels with their own relative time keep it), ready for psql:

        .venv/bin/python -m lakehouse.dashboard --panel "Purchases per minute" | make psql
    """
    dashboard = load_dashboard()
    dashboard = {**dashboard, "time": {"from": f"now-{minutes}m", "to": "now"}}
    now = datetime.now(timezone.utc)
    found = False
    for q in panel_queries(dashboard):
        if panel and panel.lower() not in q.panel["title"].lower():
            continue
        found = True
        print(f"-- {q.title}\n{q.sql(now, dashboard)};\n")
    if not found:
        raise SystemExit(f"no panel title contains {panel!r}")


if __name__ == "__main__":
    import typer

    typer.run(main)
