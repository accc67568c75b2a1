"""`make chaos` (lakehouse.chaos): the seeded fault schedule and the checks,
on small hand-made inputs (quick), and the 5-minute chaos run against the
whole stack (slow tier) that fails on any loss or double."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pyarrow as pa
import pytest

from lakehouse.chaos import checks
from lakehouse.chaos.schedule import build_schedule

PROGRAMS = ["postgres", "broker", "airflow-api-server", "airflow-scheduler", "airflow-dag-processor",
            "airflow-triggerer", "producer", "streams", "dashboard"]


# --- schedule ---------------------------------------------------------------------------
@pytest.mark.parametrize("window", [225.0, 1125.0])
def test_schedule_strikes_every_program_and_every_outage(window):
    faults = build_schedule(11, window, PROGRAMS)
    kills = [f for f in faults if f.kind == "kill"]
    for program in PROGRAMS:
        times = sorted(f.at for f in kills if f.target == program)
        assert len(times) >= 3, program
        assert all(b - a >= 20 for a, b in zip(times, times[1:])), (program, times)
    outages = sorted((f.at, f.at + f.hold, f.target) for f in faults if f.kind in ("stop", "disk_full"))
    assert [t for *_, t in sorted(outages, key=lambda o: o[2])] == ["broker", "lake", "postgres"]
    assert all(f.hold == 30 for f in faults if f.kind in ("stop", "disk_full"))
    assert all(a[1] <= b[0] for a, b in zip(outages, outages[1:])), outages  # never two outages at once
    for start, end, target in outages:  # a program is not killed while it is stopped
        assert not [f for f in kills if f.target == target and start - 5 <= f.at <= end + 30]
    assert [f.kind for f in faults].count("dag_run") == 1
    assert all(0 <= f.at <= window for f in faults) and faults == sorted(faults)


def test_schedule_is_the_seeds():
    assert build_schedule(5, 600, PROGRAMS) == build_schedule(5, 600, PROGRAMS)
    assert build_schedule(5, 600, PROGRAMS) != build_schedule(6, 600, PROGRAMS)


def test_schedule_refuses_a_window_too_short_for_the_outages():
    with pytest.raises(ValueError):
        build_schedule(1, 60, PROGRAMS)


# --- checks -----------------------------------------------------------------------------
def _landed(rows):
    return pa.table({"kafka_topic": [r[0] for r in rows], "kafka_partition": pa.array([r[1] for r in rows], pa.int32()),
                     "kafka_offset": pa.array([r[2] for r in rows], pa.int64())})


def test_landing_counts_lost_and_doubled_offsets():
    ranges = {("t", 0): (0, 3), ("t", 1): (5, 7)}
    exact = checks.landing(ranges, _landed([("t", 0, 0), ("t", 0, 1), ("t", 0, 2), ("t", 1, 5), ("t", 1, 6)]))
    assert (exact.checked, exact.lost, exact.doubled, exact.ok) == (5, 0, 0, True)
    bad = checks.landing(ranges, _landed([("t", 0, 0), ("t", 0, 0), ("t", 0, 2), ("t", 1, 5), ("t", 1, 6), ("t", 1, 9)]))
    assert (bad.lost, bad.doubled, bad.ok) == (1, 2, False)


T0 = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)


def _events(rows):
    """rows: (event_id, event_type, source, event time, kafka timestamp)."""
    ts = pa.timestamp("us", tz="UTC")
    return pa.table({
        "event_id": [r[0] for r in rows], "event_type": [r[1] for r in rows], "source": [r[2] for r in rows],
        "event_ts": pa.array([r[3] for r in rows], ts), "kafka_timestamp": pa.array([r[4] for r in rows], ts),
    })


def test_realtime_is_exact_for_on_time_windows_and_bounded_for_late_ones():
    m = timedelta(minutes=1)
    rows = [
        ("a", "click", "web", T0 + timedelta(seconds=5), T0 + timedelta(seconds=5)),
        ("a", "click", "web", T0 + timedelta(seconds=5), T0 + timedelta(seconds=6)),  # resent: one event
        ("b", "login", "mobile", T0 + timedelta(seconds=9), T0 + timedelta(seconds=9)),
        ("c", "purchase", "web", T0 + timedelta(seconds=20), T0 + 10 * m),  # 10 minutes late
        ("d", "click", "web", T0 + 30 * m, T0 + 30 * m),
        ("e", "click", "web", T0 + 31 * m, T0 + 10 * m),  # 21 minutes ahead: left out (future skew)
    ]
    bounds, closed = checks.realtime_bounds(_events(rows), watermark_s=120, future_skew_s=300)
    assert closed == T0 + 28 * m
    w = T0
    assert bounds["events_per_minute"][(w, "click")] == (1, 1)
    assert bounds["events_per_minute"][(w, "purchase")] == (0, 1)
    assert bounds["purchases_per_minute"][(w,)] == (0, 1)
    assert bounds["logins_per_source"][(w, "mobile")] == (1, 1)
    assert (T0 + 31 * m, "click") not in bounds["events_per_minute"]
    good = {"events_per_minute": {(w, "click"): 1, (w, "login"): 1}, "logins_per_source": {(w, "mobile"): 1},
            "purchases_per_minute": {}}
    assert checks.realtime(bounds, closed, good).ok
    late_counted = {**good, "purchases_per_minute": {(w,): 1},
                    "events_per_minute": {**good["events_per_minute"], (w, "purchase"): 1}}
    assert checks.realtime(bounds, closed, late_counted).ok
    doubled = {**good, "events_per_minute": {(w, "click"): 2, (w, "login"): 1}}
    lost = {**good, "logins_per_source": {}}
    assert (checks.realtime(bounds, closed, doubled).doubled, checks.realtime(bounds, closed, lost).lost) == (1, 1)
    open_window = {**good, "events_per_minute": {**good["events_per_minute"], (T0 + 30 * m, "click"): 7}}
    assert checks.realtime(bounds, closed, open_window).ok  # not closed: not judged


def test_realtime_exact_replays_the_watermark_batch_by_batch():
    """Late rows are filtered with the previous batch's watermark (Spark's
    eventTimeWatermarkForLateEvents), not with the batch's own."""
    m = timedelta(minutes=1)
    ts = pa.timestamp("us", tz="UTC")
    rows = [  # event_id, type, event time, partition, offset
        ("a", "click", T0 + 5 * m, 0, 0), ("b", "click", T0 + 9 * m, 0, 1),  # batch 0: watermark 0
        ("c", "click", T0 + 2 * m, 0, 2),  # batch 1 runs with T0+7m, filters with batch 0's 0: counted
        ("d", "click", T0 + 8 * m, 1, 0),  # batch 1: counted
        ("b", "click", T0 + 9 * m, 1, 1),  # batch 1: b resent, counted once
        ("e", "click", T0 + 3 * m, 0, 3),  # batch 2 filters with batch 1's T0+7m: late, dropped
        ("f", "click", T0 + 7 * m, 1, 2),  # batch 2: at the watermark, dropped
    ]
    events = pa.table({
        "event_id": [r[0] for r in rows], "event_type": [r[1] for r in rows], "source": ["web"] * len(rows),
        "event_ts": pa.array([r[2] for r in rows], ts), "kafka_timestamp": pa.array([r[2] for r in rows], ts),
        "kafka_partition": pa.array([r[3] for r in rows], pa.int32()), "kafka_offset": [r[4] for r in rows],
    })
    wm1 = int((T0 + 7 * m).timestamp() * 1000)
    batches = [({0: 2, 1: 0}, 0), ({0: 3, 1: 2}, wm1), ({0: 4, 1: 3}, wm1)]
    exact = checks.realtime_exact(events, batches, {0: 0, 1: 0}, future_skew_s=300)
    assert exact["events_per_minute"] == {(T0 + 5 * m, "click"): (1, 1), (T0 + 9 * m, "click"): (1, 1),
                                          (T0 + 8 * m, "click"): (1, 1), (T0 + 2 * m, "click"): (1, 1)}
    assert checks.realtime_exact(events, batches[:1], {0: 0, 1: 0}, 300) is None  # offset log cut short


def test_gold_against_silver():
    d = date(2026, 11, 30)
    silver = [{"event_id": "1", "user_id": 1, "event_type": "purchase", "page": "/cart", "source": "web"},
              {"event_id": "2", "user_id": 2, "event_type": "click", "page": "/home", "source": "mobile"}]
    gold = {"daily_active_users": [(d, 2)], "conversion_rate_daily": [(d, 0.5, 1, 2)],
            "events_per_source_daily": [(d, "mobile", 1), (d, "web", 1)], "purchases_per_page_daily": [(d, "/cart", 1)]}
    assert checks.gold(d, silver, gold).ok
    assert not checks.gold(d, silver, {**gold, "daily_active_users": [(d, 3)]}).ok
    assert not checks.gold(d, silver, {**gold, "purchases_per_page_daily": []}).ok


# --- the run ----------------------------------------------------------------------------
@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.chaos
@pytest.mark.timeout(3600)
def test_five_minute_chaos_run_loses_and_doubles_nothing(tmp_path):
    from lakehouse.chaos.runner import Chaos, Config

    report = Chaos(Config(duration_s=300, seed=5, run_dir=tmp_path / "chaos", lake_fs_mb=2048)).run()
    print(report.markdown("pytest tests/test_chaos.py"))
    assert report.records > 100_000
    assert report.lost == 0 and report.doubled == 0, report.table()
    assert len(report.verdicts) >= 3 and all(v.ok for v in report.verdicts), [(v.name, v.notes) for v in report.verdicts]
    assert not report.not_running
    assert all(o.recovered_s is not None for o in report.outcomes), [(o.fault.label, o.note) for o in report.outcomes
                                                                     if o.recovered_s is None]
    assert report.ok
