"""Delta table upkeep for bronze and silver: compaction of closed partitions
and vacuum with a retention (both via delta-rs).

Safe next to raw landing's appends: delta-rs commits optimistically, and
compaction only rewrites *closed* date partitions (older than
`delta_compact_after_days`, beyond any late event), which the streams no longer
append to, so the two never conflict; a conflicting commit would be retried or
fail cleanly, never corrupt the table. Vacuum only deletes files that no
version younger than the retention (>= 7 days) references, so readers, time
travel within the retention, and in-flight writers are unaffected.
"""

from __future__ import annotations

import logging
from datetime import date, timedelta

from deltalake import DeltaTable

from lakehouse.settings import Settings

log = logging.getLogger(__name__)

#: (layer, table, date partition column) of the tables this module maintains.
TABLES = (
    ("bronze", "events", "event_date"),
    ("bronze", "quarantine", "ingest_date"),
    ("silver", "events", "event_date"),
    ("silver", "quarantine", "event_date"),
)


def closed_before(today: date, after_days: int) -> date:
    """Partitions strictly before this date are closed."""
    return today - timedelta(days=after_days - 1)


def compact(path: str, partition_column: str, before: date) -> dict:
    """Bin-pack the small files of the closed partitions (< before) of one table."""
    table = DeltaTable(path)
    metrics = table.optimize.compact(partition_filters=[(partition_column, "<", before.isoformat())])
    log.info("compacted %s (partitions < %s): %s", path, before, metrics)
    return metrics


def vacuum(path: str, retention_hours: int) -> list[str]:
    """Delete files no longer referenced by any version within the retention."""
    removed = DeltaTable(path).vacuum(retention_hours=retention_hours, dry_run=False,
                                      enforce_retention_duration=True)
    log.info("vacuumed %s (retention %d h): %d files removed", path, retention_hours, len(removed))
    return removed


def maintain(settings: Settings, layer: str, today: date) -> dict:
    """Compact then vacuum every table of a layer; absent tables are skipped."""
    before = closed_before(today, settings.delta_compact_after_days)
    out = {}
    for lyr, name, column in TABLES:
        if lyr != layer:
            continue
        path = settings.table_path(lyr, name)
        if not DeltaTable.is_deltatable(path):
            log.info("skip %s: no Delta table yet", path)
            continue
        metrics = compact(path, column, before)
        removed = vacuum(path, settings.delta_vacuum_retention_hours)
        out[name] = {"files_added": metrics.get("numFilesAdded"), "files_removed": metrics.get("numFilesRemoved"),
                     "vacuumed": len(removed)}
    return out
