"""Pure arithmetic of the benchmark: percentiles, median/min/max summaries,
ratios, target checks and the markdown table. No I/O, so it is unit-tested on
fixed inputs (tests/test_bench_stats.py) and every figure in a report can be
recomputed by hand from the raw runs kept in the JSON."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


def percentile(values: Iterable[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between closest
    ranks (numpy's default "linear" method), so p50 of [1, 2, 3, 4] is 2.5."""
    xs = sorted(values)
    if not xs:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"q must be within 0..100, got {q}")
    pos = (len(xs) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def median(values: Iterable[float]) -> float:
    return percentile(values, 50)


@dataclass(frozen=True)
class Summary:
    """A figure measured over several runs: the median, and the spread."""

    median: float
    min: float
    max: float
    runs: tuple[float, ...]

    def to_dict(self) -> dict:
        return {"median": self.median, "min": self.min, "max": self.max, "runs": list(self.runs)}


def summarize(runs: Sequence[float]) -> Summary:
    if not runs:
        raise ValueError("summary of no runs")
    return Summary(median(runs), min(runs), max(runs), tuple(runs))


def ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator; NaN when the denominator is zero (never a fake 0 or inf)."""
    if denominator == 0:
        return math.nan
    return numerator / denominator


def rate(count: float, seconds: float) -> float:
    """Events per second; NaN for an empty or zero-length interval."""
    if seconds <= 0:
        return math.nan
    return count / seconds


def steady_rate(batches: Sequence[tuple[float, int]]) -> float:
    """Rows per second over consecutive micro-batches given as (commit time s,
    rows) in commit order. The first batch only marks the start (its rows were
    gathered before the interval began), so the rate is the rows of batches
    2..n over the time from the first commit to the last. NaN with < 2 batches."""
    if len(batches) < 2:
        return math.nan
    ordered = sorted(batches)
    span = ordered[-1][0] - ordered[0][0]
    return rate(sum(rows for _, rows in ordered[1:]), span)


def without_tail(batches: Sequence[tuple[float, int]], min_rows: int) -> list[tuple[float, int]]:
    """The commits (time s, rows) in commit order without a last one of fewer
    than `min_rows` rows: raw landing starts a batch once
    STREAM_MIN_RECORDS_PER_BATCH records wait or STREAM_MAX_BATCH_DELAY_SECONDS
    have passed, so what is left after the producer stops waits, idle, for the
    delay; that wait is latency, not landing. Kept when it is the second
    commit (steady_rate needs two)."""
    ordered = sorted(batches)
    if min_rows > 0 and len(ordered) > 2 and ordered[-1][1] < min_rows:
        return ordered[:-1]
    return ordered


def visibility_latencies(
    sends: Sequence[float], polls: Sequence[tuple[float, int]], baseline: int = 0
) -> tuple[list[float], int]:
    """Send-to-visible latency of each of one key's events.

    ``sends`` are the send times of the key's events in send order; ``polls``
    are (poll time, count read) in poll order; ``baseline`` is the count before
    the first send. The k-th event (1-based) is visible at the first poll whose
    count reaches baseline + k; its latency is that poll time minus its send
    time. Returns the latencies and how many events never became visible."""
    out: list[float] = []
    sends = list(sends)
    i = 0
    for t, count in polls:
        seen = count - baseline
        while i < len(sends) and i < seen:
            out.append(max(0.0, t - sends[i]))
            i += 1
    return out, len(sends) - i


@dataclass(frozen=True)
class Target:
    """A goal for one figure: ``value <= limit`` or ``value >= limit``."""

    op: str  # "<=" or ">="
    limit: float
    text: str

    def met(self, value: float) -> bool | None:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return None
        return value <= self.limit if self.op == "<=" else value >= self.limit


def fmt(value: float | None, unit: str = "") -> str:
    """Human figure: thousands separators, 3 significant digits below 100."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    a = abs(value)
    if float(value).is_integer() and a < 1000:
        return f"{int(value)} {unit}".rstrip()  # counts: 0, not 0.000
    if a >= 100:
        s = f"{value:,.0f}"
    elif a >= 10:
        s = f"{value:.1f}"
    elif a >= 1:
        s = f"{value:.2f}"
    else:
        s = f"{value:.3f}"
    return f"{s} {unit}".rstrip()


@dataclass(frozen=True)
class Row:
    """One line of the results table. ``summary`` is None when the measurement
    did not run; ``note`` then says why ("not run: ..." or "failed: ...")."""

    section: str
    name: str
    unit: str
    summary: Summary | None
    target: Target | None = None
    note: str = ""

    def verdict(self) -> str:
        if self.summary is None:
            return ""
        if self.target is None:
            return ""
        ok = self.target.met(self.summary.median)
        return {True: "met", False: "MISSED", None: "n/a"}[ok]

    def to_dict(self) -> dict:
        return {
            "section": self.section,
            "name": self.name,
            "unit": self.unit,
            "summary": self.summary.to_dict() if self.summary else None,
            "target": None if self.target is None else {"op": self.target.op, "limit": self.target.limit, "text": self.target.text},
            "verdict": self.verdict() or None,
            "note": self.note,
        }


def render_table(rows: Sequence[Row]) -> str:
    """Markdown table: figure, median, min–max, runs, target, verdict, note."""
    lines = [
        "| Measurement | Median | Min – max | Runs | Target | Verdict | Note |",
        "|---|---:|---:|---:|---|---|---|",
    ]
    for r in rows:
        label = f"{r.section}: {r.name}"
        target = r.target.text if r.target else ""
        if r.summary is None:
            lines.append(f"| {label} | — | | | {target} | | {r.note} |")
            continue
        s = r.summary
        lines.append(
            f"| {label} | {fmt(s.median, r.unit)} | {fmt(s.min)} – {fmt(s.max)} | {len(s.runs)} "
            f"| {target} | {r.verdict()} | {r.note} |"
        )
    return "\n".join(lines) + "\n"
