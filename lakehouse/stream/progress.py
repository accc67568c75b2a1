"""Per-micro-batch progress of the streaming queries into ops.stream_progress.

A StreamingQueryListener receives Spark's progress report after every trigger
and upserts one row per (query name, query id, batch id): input rows, rows/s,
duration, end offsets and the lag, all from Spark's own progress of the Kafka
source. The query id is the checkpoint's (Spark's progress `id`): a query
started on moved-away checkpoints numbers its batches from 0 again under a new
id, so its rows sit beside the old query's instead of overwriting them, while
a batch replayed from the same checkpoint updates its own row.

    end_offsets         the source's endOffset, {topic: {partition: offset}}
    lag                 sum over partitions of latestOffset - endOffset: the
                        records on the broker (as the source saw them when it
                        planned the batch) that no finished batch holds yet
    avg_offsets_behind  the source's avgOffsetsBehindLatest metric
    max_offsets_behind  the source's maxOffsetsBehindLatest metric
    future_events       events left out of realtime for their future skew
                        (fast aggregation's observed metric; NULL elsewhere)
    query_id            the checkpoint's query id

Progress is monitoring, not data: if PostgreSQL is away the row is logged and
dropped, and the stream is never held up by it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from contextlib import closing
from datetime import timezone

import psycopg2
from pyspark.sql.streaming import StreamingQueryListener

log = logging.getLogger(__name__)

UPSERT = """
INSERT INTO ops.stream_progress
    (query_name, batch_id, input_rows, rows_per_second, duration_ms, end_offsets, lag,
     avg_offsets_behind, max_offsets_behind, future_events, query_id, recorded_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, now())
ON CONFLICT (query_name, query_id, batch_id) DO UPDATE SET
    input_rows = EXCLUDED.input_rows, rows_per_second = EXCLUDED.rows_per_second,
    duration_ms = EXCLUDED.duration_ms, end_offsets = EXCLUDED.end_offsets,
    lag = EXCLUDED.lag, avg_offsets_behind = EXCLUDED.avg_offsets_behind,
    max_offsets_behind = EXCLUDED.max_offsets_behind, future_events = EXCLUDED.future_events,
    recorded_at = now()
WHERE EXCLUDED.input_rows > 0 OR ops.stream_progress.input_rows = 0
"""


LATEST = """
SELECT query_name, batch_id, input_rows, recorded_at, extract(epoch FROM now() - recorded_at), end_offsets
FROM ops.stream_latest ORDER BY query_name
"""


def latest_batches(dsn: str) -> list[tuple]:
    """Each stream's latest micro-batch: (query name, batch id, records, finished
    at, seconds since, end offsets {topic: {partition: offset}})."""
    with closing(psycopg2.connect(dsn, connect_timeout=5)) as conn, conn.cursor() as cur:
        cur.execute(LATEST)
        return cur.fetchall()


def describe_latest(batches: list[tuple], topic: str, topic_ends: dict[int, int] | None) -> list[str]:
    """A line per stream for `make status`: its latest micro-batch and how many
    records of the topic it has still to read (the topic's end offsets now,
    `topic_ends`, less the batch's; "?" when the broker did not say)."""
    lines = []
    for name, batch, records, finished, age, ends in batches:
        read = {int(p): int(o) for p, o in _offsets(ends).get(topic, {}).items()}
        waiting = "?" if topic_ends is None else f"{sum(max(0, end - read.get(p, 0)) for p, end in topic_ends.items()):,}"
        finished = finished.astimezone(timezone.utc)  # the session's time zone may be another's
        lines.append(f"{name}: batch {batch} finished {finished:%Y-%m-%d %H:%M:%S} UTC ({_ago(age)} ago), "
                     f"{records:,} records; {waiting} records of {topic} not read yet")
    return lines


def _ago(seconds) -> str:
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def _offsets(value) -> dict:
    """A source offset as Spark reports it (JSON text or dict) -> {topic: {partition: offset}}."""
    if value is None:
        return {}
    return json.loads(value) if isinstance(value, str) else dict(value)


def lag(end: dict, latest: dict) -> int | None:
    """Records between the end offsets and the high watermarks, all partitions."""
    if not latest:
        return None
    total = 0
    for topic, parts in latest.items():
        done = end.get(topic, {})
        for p, high in parts.items():
            total += max(0, int(high) - int(done.get(p, 0)))
    return total


def _number(value, kind=float):
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return kind(x) if x == x else None


def _metric(sources: list, name: str, kind, combine):
    values = [_number((s.get("metrics") or {}).get(name), kind) for s in sources]
    values = [v for v in values if v is not None]
    return combine(values) if values else None


def future_events(progress: dict) -> int | None:
    """Fast aggregation's count of events left out for their future skew, if observed."""
    from lakehouse.stream.realtime import FUTURE_METRIC

    metric = (progress.get("observedMetrics") or {}).get(FUTURE_METRIC)
    if not metric:
        return None
    return _number(metric.get("future_events"), int)


def progress_row(progress: dict) -> tuple | None:
    """Spark's progress JSON (as a dict) -> a row of ops.stream_progress,
    or None for a progress without a name."""
    sources = progress.get("sources") or []
    if not progress.get("name"):
        return None
    end, latest = {}, {}
    for s in sources:
        end.update(_offsets(s.get("endOffset")))
        latest.update(_offsets(s.get("latestOffset")))
    avg_behind = _metric(sources, "avgOffsetsBehindLatest", float, lambda v: sum(v) / len(v))
    max_behind = _metric(sources, "maxOffsetsBehindLatest", int, max)
    rate = progress.get("processedRowsPerSecond")
    return (
        progress["name"],
        int(progress["batchId"]),
        int(progress.get("numInputRows") or 0),
        float(rate) if rate is not None and rate == rate else None,
        int((progress.get("durationMs") or {}).get("triggerExecution", 0)),
        json.dumps(end),
        lag(end, latest),
        avg_behind,
        max_behind,
        future_events(progress),
        str(progress.get("id") or ""),
    )


class ProgressRecorder(StreamingQueryListener):
    """Writes the progress of the named queries to ops.stream_progress.

    Spark calls it through `_JsonProgressListener` (see there), so
    `onQueryProgress` gets the progress as JSON text, not PySpark's event."""

    def __init__(self, dsn: str, query_names: Iterable[str]) -> None:
        self.dsn = dsn
        self.names = set(query_names)
        self._conn = None

    @property
    def _jlistener(self):
        if not hasattr(self, "_jlistenerobj"):
            from pyspark import SparkContext

            self._jlistenerobj = SparkContext._jvm.PythonStreamingQueryListenerWrapper(_JsonProgressListener(self))
        return self._jlistenerobj

    def onQueryStarted(self, event) -> None:
        pass

    def onQueryIdle(self, event) -> None:
        pass

    def onQueryTerminated(self, event) -> None:
        pass

    def onQueryProgress(self, progress_json: str) -> None:
        try:
            row = progress_row(json.loads(progress_json))
            if row is None or row[0] not in self.names:
                return
            self._write(row)
        except Exception as exc:  # never let monitoring break the stream
            log.warning("progress not recorded: %s", exc)
            self._close()

    def _write(self, row: tuple) -> None:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg2.connect(self.dsn, connect_timeout=3)
        with self._conn, self._conn.cursor() as cur:
            cur.execute(UPSERT, row)

    def _close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:
                pass
            self._conn = None


class _JsonProgressListener:
    """The Java listener interface, implemented over py4j, handing on each
    progress as its JSON: two py4j calls per micro-batch. PySpark's own wrapper
    converts every field of the progress through py4j instead, dozens of calls,
    some of which scan the whole classpath for a class name (measured: ~10% of
    the streams application's JVM CPU)."""

    def __init__(self, recorder: ProgressRecorder) -> None:
        self.recorder = recorder

    def onQueryStarted(self, jevent) -> None:
        pass

    def onQueryProgress(self, jevent) -> None:
        self.recorder.onQueryProgress(jevent.progress().json())

    def onQueryIdle(self, jevent) -> None:
        pass

    def onQueryTerminated(self, jevent) -> None:
        pass

    class Java:
        implements = ["org.apache.spark.sql.streaming.PythonStreamingQueryListener"]
