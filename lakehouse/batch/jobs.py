"""The bodies of the `lakehouse_bronze_to_gold` tasks: extract, call the pure
transform, load. The DAG passes the Spark session (from the provider's
@task.pyspark: a Spark Connect session by default), the settings and the
event date; every function replaces exactly that date, so each task is safe
to retry and re-run. Spark work stays on the executors (delta-spark writes
with replaceWhere); only the four tiny gold results reach a task, read with
delta-rs by gold_to_postgres, which needs no Spark session."""

from __future__ import annotations

import logging
import time
from contextlib import closing
from datetime import date, datetime, timedelta, timezone

from lakehouse import catalog, kafka_clients
from lakehouse.batch import catch_up, completeness, delta_io, load, quality, silver
from lakehouse.batch.gold import MODELS
from lakehouse.settings import Settings

log = logging.getLogger(__name__)


def cutoff(settings: Settings, event_date: date) -> datetime:
    """The date's cutoff: D+1 00:00 UTC + BATCH_ALLOWED_LATENESS_MINUTES."""
    return completeness.cutoff(event_date, timedelta(minutes=settings.batch_allowed_lateness_minutes))


def check_complete(settings: Settings, event_date: date, connect: load.Connect,
                   now: datetime | None = None) -> tuple[completeness.Verdict, dict | None]:
    """The completeness verdict for the date and raw landing's position
    ({end_offsets, recorded_at}) it is based on."""
    now = now or datetime.now(timezone.utc)
    cut = cutoff(settings, event_date)
    if now < cut:
        return completeness.judge(now, cut, None, {}), None
    with closing(connect()) as conn:
        committed, recorded_at, all_offsets = completeness.committed_offsets(conn, settings.kafka_topic)
    targets, beginnings = completeness.targets(kafka_clients.client_config(settings), settings.kafka_topic, cut)
    verdict = completeness.judge(now, cut, committed, targets, beginnings)
    position = None
    if all_offsets is not None:
        position = {"end_offsets": all_offsets, "recorded_at": recorded_at.isoformat() if recorded_at else None}
    return verdict, position


def superseded_catch_up(run_id: str, connect: load.Connect) -> date | None:
    """The event date of a catch-up run whose work another successful run has
    already done (`catch_up.already_processed`); None otherwise."""
    if not run_id.startswith(catch_up.RUN_ID_PREFIX):
        return None
    with closing(connect()) as conn:
        done = catch_up.last_successful_runs(conn)
    return catch_up.already_processed(run_id, done)


#: Above this many refused rows (with an event_id) in a day, the quarantine's
#: de-duplication joins by shuffle instead of broadcasting their ids (~50 B each).
BROADCAST_SUSPECTS_MAX = 200_000


def _observed(observation, names: tuple[str, ...], source) -> list[int]:
    """The named metrics of an Observation whose query has run. Spark reports
    none when it proved the observed plan empty and dropped it (bronze not
    committed yet, `delta_io.empty_frame`, or a date without files with the
    de-duplication's session settings): zeros then, once `source` (the
    frame the observed rows come from) is checked to be empty."""
    metrics = observation.get
    if not metrics:
        if not source.isEmpty():
            raise RuntimeError(f"Spark reported no {'/'.join(names)} metrics although the input has rows")
        return [0] * len(names)
    return [int(metrics[name]) for name in names]


def bronze_to_silver(spark, settings: Settings, event_date: date) -> dict:
    """Replace silver/events and silver/quarantine of event_date from one
    snapshot (version) of bronze; returns the counts and that version.

    Nothing is cached: the events write de-duplicates the day once, and the
    quarantine write de-duplicates only the event_ids with a refused row
    (`silver.silver_quarantine`); a day without refused rows (the usual one)
    empties the date's quarantine without reading the day again (and
    without a commit when it holds nothing of the date). The counts
    are observed during the writes (Spark's `observe`), so no query runs
    just to count."""
    from pyspark.sql import Observation
    from pyspark.sql import functions as F

    started = time.perf_counter()
    bronze_path = catalog.BRONZE_EVENTS.path(settings)
    version = delta_io.current_version(spark, bronze_path)
    no_bronze = version is None  # raw landing has not committed yet (a fresh stack): an empty day
    if no_bronze:
        log.info("no Delta table at %s yet: %s is empty", bronze_path, event_date)
        bronze = delta_io.empty_frame(spark, catalog.BRONZE_EVENTS)
    else:
        bronze = delta_io.read_date(spark, catalog.BRONZE_EVENTS, bronze_path, event_date, version)

    read, kept, refused = Observation("bronze"), Observation("silver"), Observation("quarantine")
    flagged = silver.flagged_rows(bronze, event_date).observe(
        read, F.count(F.lit(1)).alias("rows"), F.count_if(silver.refused()).alias("refused"),
        F.count_if(silver.suspect()).alias("suspects"))
    events = silver.silver_events(flagged).observe(kept, F.count(F.lit(1)).alias("rows"))
    delta_io.replace_date(events, catalog.SILVER_EVENTS, catalog.SILVER_EVENTS.path(settings), event_date)
    bronze_rows, refused_rows, suspects = _observed(read, ("rows", "refused", "suspects"), bronze)
    (silver_rows,) = _observed(kept, ("rows",), bronze)
    if bronze_rows == 0:
        log.warning("no bronze events for %s: silver (and so gold) for the date will be empty", event_date)

    quarantine_path = catalog.SILVER_QUARANTINE.path(settings)
    if refused_rows == 0:
        # No row breaks a rule (the usual day): the date's quarantine is empty,
        # and replacing it with nothing needs no second read of the day; when
        # it holds nothing of the date already, no commit either (a
        # replaceWhere costs ~1 s of Delta's own work even for no rows,
        # docs/performance.md). A missing table is created here.
        if not delta_io.holds_nothing_of(quarantine_path, event_date):
            delta_io.replace_date(delta_io.empty_frame(spark, catalog.SILVER_QUARANTINE),
                                  catalog.SILVER_QUARANTINE, quarantine_path, event_date)
        quarantined = 0
    else:
        # flagged_rows again, not `flagged`: an Observation belongs to one query.
        quarantine = silver.silver_quarantine(silver.flagged_rows(bronze, event_date),
                                              broadcast_suspects=suspects <= BROADCAST_SUSPECTS_MAX)
        quarantine = quarantine.observe(refused, F.count(F.lit(1)).alias("rows"), *[
            F.count_if(F.array_contains(F.split("reason", ","), F.lit(rule))).alias(rule) for rule in silver.RULES])
        delta_io.replace_date(quarantine, catalog.SILVER_QUARANTINE, quarantine_path, event_date)
        (quarantined,) = _observed(refused, ("rows",), bronze)
    stats = {
        "event_date": event_date.isoformat(),
        "bronze_version": version,
        "bronze_rows": bronze_rows,
        "silver_rows": silver_rows,
        "quarantined": quarantined,
        "duplicates_dropped": bronze_rows - silver_rows - quarantined,
        "seconds": round(time.perf_counter() - started, 1),
    }
    if quarantined:
        rules = {rule: int(n) for rule, n in refused.get.items() if rule in silver.RULES and n}
        log.warning("quarantined %d rows of %s, rows breaking each rule: %s", quarantined, event_date, rules)
    log.info("bronze_to_silver %s", stats)
    return stats


def validate_silver(spark, settings: Settings, event_date: date, run_id: str, connect: load.Connect) -> dict:
    """Run the Great Expectations suite on the date's silver (+ quarantined)
    rows, on Spark, record the summary in ops.data_quality, then apply the gate."""
    frame = _rows_to_validate(spark, settings, event_date)
    outcomes = quality.validate(
        frame, event_date, run_id, settings.run_dir / "data_quality", settings.batch_max_rejected_fraction
    )
    load.record_data_quality(connect, quality.summary_rows(outcomes, run_id, event_date))
    quality.gate(outcomes, event_date)
    passed = sum(o.success for o in outcomes)
    rows = next((o.element_count for o in outcomes if o.element_count is not None), None)
    log.info("quality gate passed for %s: %d/%d expectations met", event_date, passed, len(outcomes))
    return {"event_date": event_date.isoformat(), "rows": rows, "expectations_met": passed,
            "expectations": len(outcomes)}


def silver_to_gold(spark, settings: Settings, event_date: date) -> dict[str, int]:
    """Replace every gold table's event_date (gold/<name>, one model per
    table: lakehouse.batch.gold) from the date's silver; returns each table's
    row count (observed during the write). Each model reads only the silver
    columns it needs (Parquet), which measured faster than caching the day
    for the four of them. The four writes run at once, one thread each on the
    same session: each is a small job plus a Delta commit that first rebuilds
    the table's snapshot, mostly waiting on the driver, so together they took
    4.6-5.2 s instead of 6.2-6.4 s one after the other on a 1M-event day
    (docs/performance.md, session 16). Each table is still one atomic commit;
    if one fails the task fails and its retry replaces the date in all four."""
    from concurrent.futures import ThreadPoolExecutor

    from pyspark.sql import Observation
    from pyspark.sql import functions as F

    events = delta_io.read_date(spark, catalog.SILVER_EVENTS, catalog.SILVER_EVENTS.path(settings), event_date)

    def write(name: str) -> int:
        table, written = catalog.GOLD[name], Observation(name)
        delta_io.replace_date(MODELS[name].transform(events).observe(written, F.count(F.lit(1)).alias("rows")),
                              table, table.path(settings), event_date)
        (rows,) = _observed(written, ("rows",), events)
        return rows

    with ThreadPoolExecutor(max_workers=len(MODELS), thread_name_prefix="gold") as pool:
        rows = dict(zip(MODELS, pool.map(write, MODELS)))
    if not any(rows.values()):
        log.warning("no silver events for %s: gold is empty for the date", event_date)
    log.info("silver_to_gold %s: %s", event_date, rows)
    return rows


def read_gold(settings: Settings, event_date: date) -> list[load.GoldRows]:
    """Every gold table's rows of the date (a handful per table), read with
    delta-rs: no Spark session for a few rows."""
    out = []
    for name, model in MODELS.items():
        table = catalog.GOLD[name]
        rows = delta_io.read_small_date(table, table.path(settings), event_date)
        columns = [rows.column(i).to_pylist() for i in range(rows.num_columns)]
        out.append(load.GoldRows(name, list(model.SCHEMA.names), list(zip(*columns))))
    return out


def gold_to_postgres(settings: Settings, event_date: date, run_id: str, connect: load.Connect,
                     silver_stats: dict, position: dict | None) -> dict:
    """Load every gold table's rows of event_date into PostgreSQL and record
    the run in ops.batch_runs, all in one transaction."""
    tables = read_gold(settings, event_date)
    run = load.BatchRun(
        run_id=run_id, event_date=event_date,
        bronze_rows=int(silver_stats["bronze_rows"]), bronze_version=silver_stats.get("bronze_version"),
        silver_rows=int(silver_stats["silver_rows"]), quarantined=int(silver_stats["quarantined"]),
        stream_end_offsets=(position or {}).get("end_offsets"),
        stream_recorded_at=(position or {}).get("recorded_at"),
    )
    loaded = load.load_date(connect, tables, event_date, run)
    log.info("gold_to_postgres %s: %s", event_date, loaded)
    return loaded


def _rows_to_validate(spark, settings: Settings, event_date: date):
    """The date's silver + quarantine rows (the columns the suite checks), as
    one lazy Spark DataFrame with silver's types (nothing collected). A date
    whose quarantine holds nothing (the usual day; delta-rs reads the log) is
    its silver alone: the suite's queries over the union with an empty scan
    took ~1 s longer on a 1M-event day (docs/performance.md, session 33)."""
    from pyspark.sql import functions as F

    types = {f.name: f.dataType.simpleString() for f in catalog.SILVER_EVENTS.spark_schema().fields}
    tables = [catalog.SILVER_EVENTS]
    if not delta_io.holds_nothing_of(catalog.SILVER_QUARANTINE.path(settings), event_date):
        tables.append(catalog.SILVER_QUARANTINE)
    parts = [
        delta_io.read_date(spark, table, table.path(settings), event_date)
        .select(*[F.col(c).cast(types[c]).alias(c) for c in quality.COLUMNS])
        for table in tables
    ]
    return parts[0] if len(parts) == 1 else parts[0].unionByName(parts[1])
