"""What the raw-landing stream has committed to Delta (delta-spark), read with delta-rs:
row counts (from the log's add actions, cheap enough to poll), commit times
(for the landed rate), and the exactly-once check over (partition, offset)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable

from lakehouse import catalog
from lakehouse.settings import Settings

KEY_COLUMNS = ["kafka_topic", "kafka_partition", "kafka_offset"]


def _table(settings: Settings, name: str) -> DeltaTable | None:
    path = catalog.TABLES[f"bronze/{name}"].path(settings)
    return DeltaTable(path) if DeltaTable.is_deltatable(path) else None


def row_count(settings: Settings, name: str) -> int:
    """Rows in bronze/<name> per the Delta log (0 when the table is absent)."""
    table = _table(settings, name)
    if table is None:
        return 0
    actions = pa.table(table.get_add_actions(flatten=True))
    if actions.num_rows == 0:
        return 0
    return int(pc.sum(actions.column("num_records")).as_py() or 0)


def landed(settings: Settings) -> int:
    """Kafka records committed so far: bronze events plus quarantine."""
    return row_count(settings, "events") + row_count(settings, "quarantine")


def commits(settings: Settings, since: float, until: float) -> list[tuple[float, int]]:
    """(commit time s, rows added) of bronze/events appends within [since, until]."""
    table = _table(settings, "events")
    if table is None:
        return []
    out = []
    for h in table.history():
        ts = h["timestamp"] / 1000.0
        metrics = h.get("operationMetrics") or {}
        rows = int(metrics.get("numOutputRows") or metrics.get("num_added_rows") or 0)  # delta-spark (a string), delta-rs
        if since <= ts <= until and rows > 0 and h.get("operation") == "WRITE":
            out.append((ts, int(rows)))
    return sorted(out)


def _keys(settings: Settings, name: str, topic: str) -> np.ndarray:
    table = _table(settings, name)
    if table is None:
        return np.empty(0, dtype=np.int64)
    t = table.to_pyarrow_table(columns=KEY_COLUMNS)
    t = t.filter(pc.equal(t.column("kafka_topic"), topic))
    part = t.column("kafka_partition").to_numpy().astype(np.int64)
    off = t.column("kafka_offset").to_numpy().astype(np.int64)
    return (part << 40) | off


def completeness(settings: Settings, high_watermarks: dict[int, int], expect_events: int) -> dict:
    """Exactly once, compared as (partition, offset) sets: every record of the
    topic (offsets 0 .. high watermark - 1 of each partition, the topic being
    fresh) is in bronze/events or bronze/quarantine, none twice, none in both,
    nothing else; and bronze/events holds exactly the well-formed count sent."""
    events = _keys(settings, "events", settings.kafka_topic)
    quarantine = _keys(settings, "quarantine", settings.kafka_topic)
    both = np.concatenate([events, quarantine])
    unique = np.unique(both)
    expected = np.concatenate(
        [(np.int64(p) << 40) | np.arange(hw, dtype=np.int64) for p, hw in sorted(high_watermarks.items())]
        or [np.empty(0, dtype=np.int64)]
    )
    missing = int(np.setdiff1d(expected, unique, assume_unique=True).size)
    unexpected = int(np.setdiff1d(unique, expected, assume_unique=True).size)
    duplicated = int(both.size - unique.size)
    result = {
        "topic_records": int(expected.size),
        "bronze_events": int(events.size),
        "bronze_quarantine": int(quarantine.size),
        "expected_events": int(expect_events),
        "missing": missing,
        "duplicated": duplicated,
        "unexpected": unexpected,
        "events_count_off_by": int(events.size - expect_events),
    }
    result["errors"] = missing + duplicated + unexpected + abs(result["events_count_off_by"])
    result["exact"] = result["errors"] == 0
    return result
