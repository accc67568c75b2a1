"""What a chaos run checks once the faults stop and everything has drained.
Each check compares what the stack stored with what it must have stored,
recomputed here independently (plain Python over Arrow columns):

- `landing`: bronze/events + bronze/quarantine hold every record of the
  topic exactly once, by (topic, partition, offset);
- `realtime`: each minute window's counts in PostgreSQL's realtime schema
  against a recomputation from bronze under the stream's policy (future-skew
  rule, event_id de-duplication, watermark). A record the watermark may have
  dropped (its event time more than the watermark delay before its Kafka
  timestamp, i.e. it arrived late) may or may not be counted, so each window
  gets bounds: every on-time event at least, every event at most. Windows
  without late events are checked exactly (the two bounds meet);
- `gold`: each gold table in PostgreSQL for a date against the metric
  definitions applied to silver (lakehouse.testdata.ExpectedDay).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

import pyarrow as pa
import pyarrow.compute as pc


@dataclass
class Verdict:
    name: str
    checked: int = 0
    lost: int = 0
    doubled: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.doubled == 0 and self.checked > 0


# --- landing -------------------------------------------------------------------
def landing(topic_ranges: dict[tuple[str, int], tuple[int, int]], landed: pa.Table) -> Verdict:
    """`topic_ranges`: (topic, partition) -> [first, end) offsets of the topic;
    `landed`: kafka_topic, kafka_partition, kafka_offset of bronze + quarantine."""
    v = Verdict("bronze + quarantine = topic, by (topic, partition, offset)")
    seen: dict[tuple[str, int], Counter] = defaultdict(Counter)
    for t, p, o in zip(*(landed.column(c).to_pylist() for c in ("kafka_topic", "kafka_partition", "kafka_offset"))):
        seen[(t, p)][o] += 1
    for key, (first, end) in topic_ranges.items():
        counts = seen.pop(key, Counter())
        v.checked += end - first
        missing = sum(1 for o in range(first, end) if o not in counts)
        # transaction markers and compacted gaps would be missing too: the stack uses neither
        v.lost += missing
        v.doubled += sum(n - 1 for n in counts.values() if n > 1)
        stray = sum(n for o, n in counts.items() if not first <= o < end)
        if missing:
            v.notes.append(f"{key}: {missing} offsets missing")
        if stray:
            v.doubled += stray
            v.notes.append(f"{key}: {stray} rows at offsets outside [{first}, {end})")
    for key, counts in seen.items():
        v.doubled += sum(counts.values())
        v.notes.append(f"{key}: {sum(counts.values())} rows of a partition the topic does not have")
    return v


# --- realtime ------------------------------------------------------------------
def _minute(us: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=us - us % 60_000_000)


def realtime_bounds(events: pa.Table, watermark_s: float, future_skew_s: float, margin_s: float = 30.0):
    """Bronze events (event_id, event_type, source, event_ts, kafka_timestamp)
    -> {table: {key: (low, high)}} for the three realtime tables, and the end
    of the last closed window. low counts the distinct event_ids of events
    that arrived on time (event time no more than watermark - margin before
    the Kafka timestamp); high those of every event the future-skew rule lets in."""
    ets = pc.cast(events.column("event_ts"), pa.int64()).to_pylist()
    kts = pc.cast(events.column("kafka_timestamp"), pa.int64()).to_pylist()
    ids = events.column("event_id").to_pylist()
    types = events.column("event_type").to_pylist()
    sources = events.column("source").to_pylist()
    future_us, on_time_us = int(future_skew_s * 1e6), int((watermark_s - margin_s) * 1e6)
    sets: dict[str, dict[tuple, tuple[set, set]]] = {
        "events_per_minute": defaultdict(lambda: (set(), set())),
        "logins_per_source": defaultdict(lambda: (set(), set())),
        "purchases_per_minute": defaultdict(lambda: (set(), set())),
    }
    max_ts = None
    for eid, etype, src, e, k in zip(ids, types, sources, ets, kts):
        if k is not None and e > k + future_us:
            continue  # future-skew rule: kept in bronze, left out of realtime
        max_ts = e if max_ts is None or e > max_ts else max_ts
        on_time = k is None or e >= k - on_time_us
        w = _minute(e)
        keys = [("events_per_minute", (w, etype))]
        if etype == "login":
            keys.append(("logins_per_source", (w, src)))
        if etype == "purchase":
            keys.append(("purchases_per_minute", (w,)))
        for table, key in keys:
            low, high = sets[table][key]
            high.add(eid)
            if on_time:
                low.add(eid)
    closed_before = None if max_ts is None else _minute(max_ts - int(watermark_s * 1e6)) 
    bounds = {t: {k: (len(lo), len(hi)) for k, (lo, hi) in d.items()} for t, d in sets.items()}
    return bounds, closed_before


def realtime_exact(events: pa.Table, batches: list[tuple[dict[int, int], int]], first: dict[int, int],
                   future_skew_s: float):
    """The exact recomputation, when the fast aggregation's offset log is
    whole: `batches` = [(end offsets {partition: next offset}, watermark in
    ms the batch ran with)] in batch order, `first` the topic's first
    offsets. An event counts iff the future-skew rule lets it in and its
    event time is after the watermark of the batch BEFORE its own (batch 0:
    its own). Spark filters late rows with the previous batch's watermark
    and evicts state with the current one (IncrementalExecution's
    eventTimeWatermarkForLateEvents / ForEviction, since Spark 3.4, with
    spark.sql.streaming.statefulOperator.allowMultiple on, the default), in
    the de-duplication and the window aggregation alike; rows at or before
    it are dropped. A resent event_id counts once. Same shape as
    realtime_bounds (low == high), or None when an event lies outside the
    batches."""
    import bisect

    ends: dict[int, list[int]] = defaultdict(list)
    marks = []
    for end, watermark_ms in batches:
        for p, o in end.items():
            ends[p].append(o)
        marks.append(watermark_ms * 1000)
    cols = {c: events.column(c).to_pylist() for c in ("event_id", "event_type", "source", "kafka_partition",
                                                       "kafka_offset")}
    ets = pc.cast(events.column("event_ts"), pa.int64()).to_pylist()
    kts = pc.cast(events.column("kafka_timestamp"), pa.int64()).to_pylist()
    future_us = int(future_skew_s * 1e6)
    counted: dict[str, dict[tuple, set]] = {t: defaultdict(set) for t in
                                            ("events_per_minute", "logins_per_source", "purchases_per_minute")}
    max_ts = None
    for eid, etype, src, p, o, e, k in zip(*cols.values(), ets, kts):
        if o < first.get(p, 0):
            return None
        i = bisect.bisect_right(ends.get(p, []), o)
        if i >= len(marks):
            return None
        if k is not None and e > k + future_us:
            continue
        max_ts = e if max_ts is None or e > max_ts else max_ts
        if e <= marks[max(i - 1, 0)]:
            continue  # late: dropped by the previous batch's watermark
        w = _minute(e)
        counted["events_per_minute"][(w, etype)].add(eid)
        if etype == "login":
            counted["logins_per_source"][(w, src)].add(eid)
        if etype == "purchase":
            counted["purchases_per_minute"][(w,)].add(eid)
    return {t: {key: (len(ids), len(ids)) for key, ids in d.items()} for t, d in counted.items()}


def realtime(bounds: dict, closed_before: datetime | None, actual: dict[str, dict[tuple, int]]) -> Verdict:
    """`actual`: {table: {key: count}} read from PostgreSQL. Only windows that
    start before `closed_before` (closed under the watermark) are judged."""
    v = Verdict("realtime = recomputation from bronze (closed windows, watermark policy)")
    if closed_before is None:
        v.notes.append("no events")
        return v
    exact = 0
    for table, want in bounds.items():
        got = actual.get(table, {})
        for key in set(want) | set(got):
            if key[0] >= closed_before:
                continue
            low, high = want.get(key, (0, 0))
            n = got.get(key, 0)
            v.checked += 1
            exact += low == high
            if n < low:
                v.lost += low - n
                v.notes.append(f"{table} {key}: {n} < {low} on-time events")
            elif n > high:
                v.doubled += n - high
                v.notes.append(f"{table} {key}: {n} > {high} events")
    v.notes.insert(0, f"{v.checked} windows judged, {exact} of them exactly")
    return v


# --- gold ----------------------------------------------------------------------
def gold(event_date: date, silver_rows: list[dict], gold_rows: dict[str, list[tuple]]) -> Verdict:
    """Gold in PostgreSQL (rows without updated_at, sorted) against the
    metrics recomputed from silver's rows of the date."""
    from lakehouse.testdata import ExpectedDay

    expected = ExpectedDay(event_date)
    for row in silver_rows:
        expected.add(row)
    want = expected.gold_rows()
    v = Verdict(f"gold = recomputation from silver, {event_date}")
    for table, rows in want.items():
        got = gold_rows.get(table, [])
        v.checked += max(len(rows), 1)
        if table == "conversion_rate_daily" and rows and len(got) == 1:
            (d, rate, purchases, dau), g = rows[0], got[0]
            same = (g[0], g[2], g[3]) == (d, purchases, dau) and abs(g[1] - rate) < 1e-12
        else:
            same = list(got) == list(rows)
        if not same:
            v.lost += 1
            v.notes.append(f"{table}: {got[:3]} != {rows[:3]}")
    return v
