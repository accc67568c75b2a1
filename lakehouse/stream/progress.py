"""Per-micro-batch progress of the streaming queries into ops.stream_progress.

A StreamingQueryListener receives Spark's progress report after every trigger
and upserts one row per (query, batch id): input rows, rows/s, duration, end
offsets and the lag, all from Spark's own progress of the Kafka source:

    end_offsets         the source's endOffset, {topic: {partition: offset}}
    lag                 sum over partitions of latestOffset - endOffset: the
                        records on the broker (as the source saw them when it
                        planned the batch) that no finished batch holds yet
    avg_offsets_behind  the source's avgOffsetsBehindLatest metric
    max_offsets_behind  the source's maxOffsetsBehindLatest metric
    future_events       events left out of realtime for their future skew
                        (fast aggregation's observed metric; NULL elsewhere)

Progress is monitoring, not data: if PostgreSQL is away the row is logged and
dropped, and the stream is never held up by it.

A foreachBatch sink that reads its batch twice (raw landing, when a batch it
writes in one pass turns out to hold invalid records) makes Spark count those
records twice in numInputRows: foreachBatch's DataFrame is one RDD, re-run by
every action, and the source's row metric adds up over the runs. Such a sink
reports the records it counted itself (SINK_COUNTS), and the row takes that
count and scales the rate with it.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Iterable

import psycopg2
from pyspark.sql.streaming import StreamingQueryListener

log = logging.getLogger(__name__)

UPSERT = """
INSERT INTO ops.stream_progress
    (query_name, batch_id, input_rows, rows_per_second, duration_ms, end_offsets, lag,
     avg_offsets_behind, max_offsets_behind, future_events, recorded_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, now())
ON CONFLICT (query_name, batch_id) DO UPDATE SET
    input_rows = EXCLUDED.input_rows, rows_per_second = EXCLUDED.rows_per_second,
    duration_ms = EXCLUDED.duration_ms, end_offsets = EXCLUDED.end_offsets,
    lag = EXCLUDED.lag, avg_offsets_behind = EXCLUDED.avg_offsets_behind,
    max_offsets_behind = EXCLUDED.max_offsets_behind, future_events = EXCLUDED.future_events,
    recorded_at = now()
WHERE EXCLUDED.input_rows > 0 OR ops.stream_progress.input_rows = 0
"""


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


class SinkCounts:
    """Records a sink counted itself, per (query name, batch id), until that
    batch's progress takes them (bounded: a batch whose progress never comes is
    forgotten after `keep` newer ones)."""

    def __init__(self, keep: int = 1000) -> None:
        self._counts: OrderedDict[tuple[str, int], int] = OrderedDict()
        self._lock = threading.Lock()
        self._keep = keep

    def record(self, query: str, batch_id: int, records: int) -> None:
        with self._lock:
            self._counts[(query, int(batch_id))] = int(records)
            while len(self._counts) > self._keep:
                self._counts.popitem(last=False)

    def take(self, query: str, batch_id: int) -> int | None:
        with self._lock:
            return self._counts.pop((query, int(batch_id)), None)


#: The streams application's sinks report here (one per process).
SINK_COUNTS = SinkCounts()


def progress_row(progress: dict, counted: int | None = None) -> tuple | None:
    """Spark's progress JSON (as a dict) -> a row of ops.stream_progress,
    or None for a progress without a name. `counted`: the records the sink
    counted itself, when it did (replaces numInputRows; the rate is scaled)."""
    sources = progress.get("sources") or []
    if not progress.get("name"):
        return None
    end, latest = {}, {}
    for s in sources:
        end.update(_offsets(s.get("endOffset")))
        latest.update(_offsets(s.get("latestOffset")))
    avg_behind = _metric(sources, "avgOffsetsBehindLatest", float, lambda v: sum(v) / len(v))
    max_behind = _metric(sources, "maxOffsetsBehindLatest", int, max)
    rows = int(progress.get("numInputRows") or 0)
    rate = progress.get("processedRowsPerSecond")
    rate = float(rate) if rate is not None and rate == rate else None
    if counted is not None and counted != rows:
        rate = rate * counted / rows if rate is not None and rows else rate
        rows = counted
    return (
        progress["name"],
        int(progress["batchId"]),
        rows,
        rate,
        int((progress.get("durationMs") or {}).get("triggerExecution", 0)),
        json.dumps(end),
        lag(end, latest),
        avg_behind,
        max_behind,
        future_events(progress),
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
            progress = json.loads(progress_json)
            if progress.get("name") not in self.names:
                return
            row = progress_row(progress, SINK_COUNTS.take(progress["name"], progress.get("batchId", -1)))
            if row is None:
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
