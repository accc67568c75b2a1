"""Delta table upkeep with Delta's own commands, run through Spark SQL (any
session: the Spark Connect server by default):

* `OPTIMIZE delta.`<path>` WHERE <date column> < '<closed before>'` bin-packs
  the small files of *closed* date partitions (older than
  DELTA_COMPACT_AFTER_DAYS, beyond any late event);
* `VACUUM delta.`<path>`` deletes files that no version younger than the
  retention references. The retention is DELTA_VACUUM_RETENTION_HOURS, at
  least 168 h = 7 days (the setting refuses less, and Delta's own retention
  check stays on): time travel within it, slow readers and in-flight writers
  keep working. delta-spark 4.4 ignores VACUUM's `RETAIN n HOURS`, so the
  retention is the table's `delta.deletedFileRetentionDuration`, set first
  (with the log's retention: `catalog.retention_properties`).

Every Delta table has one writing application (docs/decisions.md, "One writer
per Delta table"): the DAG's Spark (here) writes silver, so `maintain`
compacts, sets the properties of and vacuums silver; raw landing writes
bronze, so it compacts bronze itself (`lakehouse.stream.bronze.compact`) and
sets its properties when it starts, and `maintain` only VACUUMs bronze, with
Delta's vacuum logging off: no commit to bronze from this JVM. VACUUM is safe
next to raw landing's appends and compactions: it deletes only files older
than the retention that the current version does not reference.

The streams' progress history, one row per micro-batch in
`ops.stream_progress` (~200,000 rows a day while producing), is kept for
OPS_PROGRESS_RETENTION_DAYS (7); older rows are deleted, except each
stream's latest (the DAG's completeness sensor and the dashboard read it).
The realtime tables (fast aggregation's one-minute windows, ~10,000 rows a
day) keep REALTIME_RETENTION_DAYS (30) of windows; gold holds every day.
Airflow's own log files (a file per task try, DAG parsing logs) are kept
AIRFLOW_LOG_RETENTION_DAYS (30).
"""

from __future__ import annotations

import logging
import os
from contextlib import closing
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path

from lakehouse import catalog
from lakehouse.batch.delta_io import current_version
from lakehouse.batch.load import Connect
from lakehouse.settings import Settings

log = logging.getLogger(__name__)

#: The tables this module maintains (gold tables are one small file per date).
TABLES = (catalog.BRONZE_EVENTS, catalog.BRONZE_QUARANTINE, catalog.SILVER_EVENTS, catalog.SILVER_QUARANTINE)
#: ... of which another application writes (raw landing): VACUUM only, no commit.
WRITTEN_ELSEWHERE = {catalog.BRONZE_EVENTS.key, catalog.BRONZE_QUARANTINE.key}
#: Delta's setting for VACUUM's two commits (start, end) to the table's log.
VACUUM_LOGGING = "spark.databricks.delta.vacuum.logging.enabled"


def closed_before(today: date, after_days: int) -> date:
    """Partitions strictly before this date are closed."""
    return today - timedelta(days=after_days - 1)


def compact(spark, table: catalog.Table, settings: Settings, before: date) -> dict:
    """OPTIMIZE the closed partitions (< before) of one catalogue table; Delta's metrics."""
    path, partition_column = table.path(settings), table.partition_by[0]
    row = spark.sql(
        f"OPTIMIZE delta.`{path}` WHERE {partition_column} < DATE'{before.isoformat()}'"
    ).select("metrics.numFilesAdded", "metrics.numFilesRemoved").first()
    metrics = {"numFilesAdded": int(row[0] or 0), "numFilesRemoved": int(row[1] or 0)}
    log.info("compacted %s (partitions < %s): %s", path, before, metrics)
    return metrics


def vacuum(spark, path: str, retention_hours: int, *, writer: bool = True) -> None:
    """Give the table the retention's properties, then VACUUM (Delta logs how
    many files it deleted). A RETAIN clause would be ignored (delta-spark 4.4:
    only the table property counts), so there is none.

    `writer=False` for a table another application writes (bronze): no
    commit at all. The properties are left to that writer (a different
    setting is reported), and VACUUM runs with Delta's vacuum logging off,
    which would otherwise commit its start and end to the table's log."""
    if retention_hours < catalog.DELTA_DEFAULT_FILE_RETENTION_HOURS:
        raise ValueError("vacuum retention below 7 days (168 h) is refused")
    wanted = catalog.retention_properties(retention_hours)
    if writer:
        catalog.apply_properties(spark, path, wanted)
        spark.sql(f"VACUUM delta.`{path}`").collect()
    else:
        differ = catalog.properties_differ(spark, path, wanted)
        if differ:
            log.warning("%s keeps its retention %s until its writer (raw landing) restarts; wanted %s",
                        path, differ, {k: wanted[k] for k in differ})
        previous = spark.conf.get(VACUUM_LOGGING, None)
        spark.conf.set(VACUUM_LOGGING, "false")
        try:
            spark.sql(f"VACUUM delta.`{path}`").collect()
        finally:
            if previous is None:
                spark.conf.unset(VACUUM_LOGGING)
            else:
                spark.conf.set(VACUUM_LOGGING, previous)
    log.info("vacuumed %s (retention %d h)", path, retention_hours)


def maintain(spark, settings: Settings, layer: str, today: date) -> dict:
    """Compact then vacuum every table of a layer; absent tables are skipped.
    Tables written by another application (bronze) are only vacuumed."""
    before = closed_before(today, settings.delta_compact_after_days)
    out = {}
    for table in TABLES:
        if table.layer != layer:
            continue
        path = table.path(settings)
        if current_version(spark, path) is None:
            log.info("skip %s: no Delta table yet", path)
            continue
        if table.key in WRITTEN_ELSEWHERE:
            vacuum(spark, path, settings.delta_vacuum_retention_hours, writer=False)
            out[table.name] = {"vacuumed": True}
            continue
        metrics = compact(spark, table, settings, before)
        vacuum(spark, path, settings.delta_vacuum_retention_hours)
        out[table.name] = {"files_added": metrics["numFilesAdded"], "files_removed": metrics["numFilesRemoved"],
                           "vacuumed": True}
    return out


#: Older than the retention, and not its stream's latest (ops.stream_latest).
PRUNE_STREAM_PROGRESS = """
DELETE FROM ops.stream_progress p
USING ops.stream_latest l
WHERE p.query_name = l.query_name
  AND p.recorded_at < now() - make_interval(days => %s)
  AND p.recorded_at < l.recorded_at
"""


def prune_stream_progress(connect: Connect, retention_days: int) -> int:
    """Delete micro-batch progress older than the retention, each stream's
    latest row excepted; returns the number of rows deleted."""
    with closing(connect()) as conn:
        with conn, conn.cursor() as cur:
            cur.execute(PRUNE_STREAM_PROGRESS, (retention_days,))
            deleted = cur.rowcount
    log.info("deleted %d rows of ops.stream_progress older than %d days", deleted, retention_days)
    return deleted


def realtime_kept_from(today: date, retention_days: int) -> datetime:
    """The first instant whose windows the realtime tables keep: 00:00 UTC of
    the day `retention_days` before `today` (whole UTC days, like gold's)."""
    return datetime.combine(today - timedelta(days=retention_days), time(), timezone.utc)


def prune_realtime(connect: Connect, before: datetime) -> dict[str, int]:
    """Delete the realtime tables' windows that start before `before`, in one
    transaction; returns the rows deleted per table. Fast aggregation updates a
    window only within its watermark (minutes behind the newest event time),
    so pruning does not race its upserts."""
    from lakehouse.stream.realtime import UPSERTS

    with closing(connect()) as conn:
        with conn, conn.cursor() as cur:
            deleted = {}
            for table in UPSERTS:
                cur.execute(f"DELETE FROM realtime.{table} WHERE window_start < %s", (before,))
                deleted[table] = cur.rowcount
    log.info("deleted realtime windows before %s: %s", before.isoformat(), deleted)
    return deleted


#: An empty log directory is removed once nothing changed in it for this long
#: (unless this pruning emptied it): Airflow creates a task try's directory
#: just before the file in it.
EMPTY_DIR_GRACE = timedelta(hours=1)


def prune_logs(log_dir: Path, before: datetime, now: datetime | None = None) -> int:
    """Delete the `*.log` files under `log_dir` last written before `before`,
    then the directories left empty (`log_dir` itself stays), as Airflow's log
    groomer does (`clean-logs.sh` of its image and Helm chart,
    `AIRFLOW__LOG_RETENTION_DAYS`). Symbolic links (the DAG processor's
    `latest`) are neither followed nor deleted. Returns the number of files
    deleted."""
    cutoff = before.timestamp()
    grace = ((now or datetime.now(timezone.utc)) - EMPTY_DIR_GRACE).timestamp()
    deleted, emptied = 0, set()  # directories this pruning took something out of
    for root, dirs, files in os.walk(log_dir, topdown=False):
        for name in files:
            path = Path(root, name)
            try:
                if name.endswith(".log") and not path.is_symlink() and path.stat().st_mtime < cutoff:
                    path.unlink()
                    deleted += 1
                    emptied.add(root)
            except FileNotFoundError:  # gone meanwhile
                continue
        for name in dirs:
            path = Path(root, name)
            try:
                if path.is_symlink() or any(path.iterdir()):
                    continue
                if os.path.join(root, name) in emptied or path.stat().st_mtime < grace:
                    path.rmdir()
                    emptied.add(root)
            except OSError:  # not empty any more, or gone
                continue
    log.info("deleted %d Airflow log files under %s last written before %s", deleted, log_dir, before.isoformat())
    return deleted
