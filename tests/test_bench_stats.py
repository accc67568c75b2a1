"""The benchmark's own arithmetic, on fixed inputs (pure, fast)."""

from __future__ import annotations

import math

import pytest

from bench.stats import (
    Row,
    Target,
    percentile,
    ratio,
    rate,
    render_table,
    steady_rate,
    summarize,
    visibility_latencies,
    without_tail,
)


def test_percentile_interpolates_between_ranks():
    xs = [4, 1, 3, 2]  # unsorted on purpose
    assert percentile(xs, 0) == 1
    assert percentile(xs, 100) == 4
    assert percentile(xs, 50) == 2.5
    assert percentile(xs, 25) == pytest.approx(1.75)
    assert percentile(range(1, 101), 95) == pytest.approx(95.05)
    assert percentile(range(1, 101), 99) == pytest.approx(99.01)
    assert percentile([7.0], 99) == 7.0


def test_percentile_rejects_empty_and_out_of_range():
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1], 101)


def test_summary_is_median_min_max_of_runs():
    s = summarize([30.0, 10.0, 20.0])
    assert (s.median, s.min, s.max) == (20.0, 10.0, 30.0)
    assert s.runs == (30.0, 10.0, 20.0)
    assert summarize([1, 2, 3, 10]).median == 2.5
    with pytest.raises(ValueError):
        summarize([])


def test_ratio_and_rate_never_fake_a_number():
    assert ratio(24_000, 40_000) == 0.6
    assert math.isnan(ratio(1, 0))
    assert rate(1_000, 4) == 250
    assert math.isnan(rate(5, 0))


def test_steady_rate_skips_the_first_batch_rows():
    # commits at t=10, 12, 14 with 500, 2000, 3000 rows: (2000+3000) / (14-10)
    assert steady_rate([(12.0, 2000), (10.0, 500), (14.0, 3000)]) == 1250
    assert math.isnan(steady_rate([(1.0, 10)]))


def test_visibility_latencies_match_kth_send_to_count_reaching_k():
    sends = [0.0, 0.1, 0.2, 0.3]
    polls = [(0.05, 5), (0.5, 7), (0.9, 8), (1.5, 8)]  # baseline 5: nothing new at 0.05
    lat, missing = visibility_latencies(sends, polls, baseline=5)
    assert lat == pytest.approx([0.5, 0.4, 0.7])
    assert missing == 1
    lat, missing = visibility_latencies([1.0], [(0.5, 1)])  # clocks: never negative
    assert lat == [0.0] and missing == 0


def test_target_verdicts_and_table():
    at_most = Target("<=", 5.0, "≤ 5 s")
    at_least = Target(">=", 20_000, "≥ 20,000")
    assert at_most.met(5.0) and not at_most.met(5.1)
    assert at_least.met(20_000) and not at_least.met(19_999)
    assert at_most.met(math.nan) is None
    rows = [
        Row("Ingest", "landed rate", "events/s", summarize([21_000, 19_000, 25_000]), at_least),
        Row("Freshness", "p95", "s", summarize([6.5, 7.25, 8.0]), at_most),
        Row("Ingest", "missing", "", summarize([0, 0, 0]), Target("<=", 0, "0")),
        Row("Batch", "DAG wall time", "s", None, note="not run: DAG not landed"),
    ]
    table = render_table(rows)
    lines = table.strip().splitlines()
    assert len(lines) == 6
    assert "| Ingest: landed rate | 21,000 events/s | 19,000 – 25,000 | 3 | ≥ 20,000 | met |" in lines[2]
    assert "| Freshness: p95 | 7.25 s | 6.50 – 8 | 3 | ≤ 5 s | MISSED |" in lines[3]
    assert "| Ingest: missing | 0 | 0 – 0 | 3 | 0 | met |" in lines[4]
    assert "not run: DAG not landed" in lines[5] and "| — |" in lines[5]
    assert rows[3].to_dict()["summary"] is None


def test_the_peak_is_broken_down_by_program_in_the_peak_sample():
    from bench.memory import Sample, peak_by_program

    gb = 10**9
    samples = [
        Sample(1.0, 0, 3 * gb, 3, {"spark-connect": (0, 2 * gb), "streams": (0, 1 * gb)}),
        # the peak: the streams' own maximum is elsewhere, so it is not the sum of maxima
        Sample(2.0, 0, 4 * gb, 3, {"spark-connect": (0, 3 * gb), "streams": (0, gb // 2), "broker": (0, None)}),
        Sample(3.0, 0, 9 * gb, 3, None),  # names nothing: not a candidate
        Sample(4.0, 0, None, 3, {"spark-connect": (0, 9 * gb)}),  # unreadable sum: not a candidate
    ]
    by = peak_by_program(samples)
    assert by == {"spark-connect": 3.0, "streams": 0.5}
    assert list(by) == ["spark-connect", "streams"]  # largest first
    assert peak_by_program([Sample(1.0, 0, gb, 1, None)]) == {}


def test_the_idle_stack_is_broken_down_by_program_in_the_median_sample():
    from bench.memory import Sample, median_by_program

    gb = 10**9
    samples = [
        Sample(1.0, 0, 5 * gb, 2, {"spark-connect": (0, 4 * gb), "streams": (0, gb)}),  # before the GC
        Sample(2.0, 0, 3 * gb, 2, {"spark-connect": (0, 2 * gb), "streams": (0, gb)}),
        Sample(3.0, 0, 2 * gb, 2, {"spark-connect": (0, gb), "streams": (0, gb)}),
        Sample(4.0, 0, 9 * gb, 2, None),  # names nothing: not counted
    ]
    assert median_by_program(samples) == {"spark-connect": 2.0, "streams": 1.0}
    assert median_by_program([Sample(1.0, 0, gb, 1, None)]) == {}


def test_drain_rate_is_rows_over_batch_durations_after_each_querys_first():
    from bench.drain import span_of, steady_rate

    # raw landing: a slow first batch, two back-to-back ones, then the backlog's
    # 5-record tail that waited a minute (idle) for STREAM_MIN_RECORDS_PER_BATCH
    span = span_of([
        ("fast-aggregation", 0.0, 6.0, 100_000), ("fast-aggregation", 6.0, 10.0, 100_000),
        ("fast-aggregation", 10.0, 14.0, 100_000),
        ("raw-landing", 0.0, 20.0, 100_000), ("raw-landing", 20.0, 25.0, 100_000),
        ("raw-landing", 25.0, 30.0, 99_995), ("raw-landing", 89.0, 90.0, 5),
    ])
    assert span["raw-landing"]["rows"] == 300_000 and span["raw-landing"]["busy_after_first"] == 11.0
    assert steady_rate(span) == pytest.approx(200_000 / 11.0)  # raw landing, the slower, decides
    assert steady_rate(span_of([("raw-landing", 0.0, 20.0, 100_000)])) is None  # no batch after the first


def test_the_landed_rate_leaves_out_a_tail_that_waited_for_the_batch_delay():
    commits = [(10.0, 50_000), (15.0, 100_000), (20.0, 100_000), (80.0, 1_234)]  # the tail waited 60 s
    assert without_tail(commits, 50_000) == commits[:3]
    assert steady_rate(without_tail(commits, 50_000)) == 20_000
    assert without_tail(commits, 0) == commits  # no minimum batch: every commit counts
    assert without_tail([(10.0, 60_000), (70.0, 10)], 50_000) == [(10.0, 60_000), (70.0, 10)]
