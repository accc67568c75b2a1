"""The bodies of the `lakehouse_bronze_to_gold` tasks: extract, call the pure
transform, load. The DAG passes the Spark session (from the provider's
@task.pyspark), the settings and the event date; every function replaces
exactly that date, so each task is safe to retry and re-run."""

from __future__ import annotations

import logging
import time
from datetime import date

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable

from lakehouse.batch import delta_io, load, quality, silver
from lakehouse.batch.gold import MODELS
from lakehouse.contract import BRONZE_EVENTS_SCHEMA
from lakehouse.settings import Settings

log = logging.getLogger(__name__)


def bronze_path(settings: Settings) -> str:
    return settings.table_path("bronze", "events")


def silver_path(settings: Settings) -> str:
    return settings.table_path("silver", "events")


def quarantine_path(settings: Settings) -> str:
    return settings.table_path("silver", "quarantine")


def gold_path(settings: Settings, name: str) -> str:
    return settings.table_path("gold", name)


def bronze_to_silver(spark, settings: Settings, event_date: date) -> dict:
    """Replace silver/events and silver/quarantine of event_date from bronze."""
    started = time.perf_counter()
    bronze = delta_io.read_partition_spark(spark, bronze_path(settings), event_date, BRONZE_EVENTS_SCHEMA)
    checked = silver.checked_rows(bronze, event_date).toArrow()
    events, refused = silver.split(checked)
    computed = time.perf_counter()
    bronze_rows = _partition_rows(bronze_path(settings), event_date)
    if bronze_rows == 0:
        log.warning("no bronze events for %s: silver (and so gold) for the date will be empty", event_date)
    delta_io.replace_partition(silver_path(settings), events, event_date)
    delta_io.replace_partition(quarantine_path(settings), refused, event_date)
    log.info("bronze_to_silver timings: spark read+dedup+collect %.1f s, delta writes %.1f s",
             computed - started, time.perf_counter() - computed)
    stats = {
        "event_date": event_date.isoformat(),
        "bronze_rows": bronze_rows,
        "silver_rows": events.num_rows,
        "quarantined": refused.num_rows,
        "duplicates_dropped": bronze_rows - events.num_rows - refused.num_rows,
    }
    if refused.num_rows:
        reasons = pc.value_counts(refused.column("reason")).to_pylist()
        log.warning("quarantined %d rows of %s: %s", refused.num_rows, event_date,
                    {r["values"]: r["counts"] for r in reasons})
    log.info("bronze_to_silver %s", stats)
    return stats


def validate_silver(settings: Settings, event_date: date, run_id: str, connect: load.Connect) -> dict:
    """Run the Great Expectations suite on the date's silver (+ quarantined)
    rows, record the summary in ops.data_quality, then apply the gate."""
    frame = _rows_to_validate(settings, event_date)
    outcomes = quality.validate(
        frame, event_date, run_id, settings.run_dir / "data_quality", settings.batch_max_rejected_fraction
    )
    load.record_data_quality(connect, quality.summary_rows(outcomes, run_id, event_date))
    quality.gate(outcomes, event_date)
    passed = sum(o.success for o in outcomes)
    log.info("quality gate passed for %s: %d/%d expectations met", event_date, passed, len(outcomes))
    return {"event_date": event_date.isoformat(), "rows": len(frame), "expectations_met": passed,
            "expectations": len(outcomes)}


def silver_to_gold(spark, settings: Settings, name: str, event_date: date) -> int:
    """Replace gold/<name> of event_date from silver."""
    model = MODELS[name]
    events = delta_io.read_partition_spark(spark, silver_path(settings), event_date, silver.SILVER_EVENTS_SCHEMA)
    table = delta_io.to_arrow(model.transform(events), model.SCHEMA)
    if table.num_rows == 0:
        log.warning("no silver events for %s: gold.%s is empty for the date", event_date, name)
    return delta_io.replace_partition(gold_path(settings, name), table, event_date)


def gold_to_postgres(settings: Settings, event_date: date, run_id: str, connect: load.Connect) -> dict:
    """Load every gold table's rows of event_date into PostgreSQL (one
    transaction per table), then record the run in ops.batch_runs."""
    loaded = {}
    for name, model in MODELS.items():
        table = delta_io.read_partition_arrow(gold_path(settings, name), event_date)
        if table is None:
            raise RuntimeError(f"gold table {name} does not exist; silver_to_gold must run first")
        table = delta_io.conform(table, model.SCHEMA)
        loaded[name] = load.load_table(connect, name, model.SCHEMA.names, _tuples(table), event_date)
    silver_rows = _partition_rows(silver_path(settings), event_date)
    quarantined = _partition_rows(quarantine_path(settings), event_date)
    load.record_batch_run(connect, run_id, event_date, silver_rows, quarantined)
    log.info("gold_to_postgres %s: %s", event_date, loaded)
    return loaded


def _rows_to_validate(settings: Settings, event_date: date):
    cols = quality.COLUMNS
    parts = [
        t.select(cols)
        for t in (
            delta_io.read_partition_arrow(silver_path(settings), event_date, cols),
            delta_io.read_partition_arrow(quarantine_path(settings), event_date, cols),
        )
        if t is not None
    ]
    schema = pa.schema([silver.SILVER_EVENTS_SCHEMA.field(c).with_nullable(True) for c in cols])
    table = pa.concat_tables([delta_io.conform(t, schema) for t in parts]) if parts else schema.empty_table()
    return table.to_pandas()


def _partition_rows(path: str, event_date: date) -> int:
    """Rows of a date partition, from the Delta log's file statistics."""
    if not DeltaTable.is_deltatable(path):
        return 0
    actions = DeltaTable(path).get_add_actions(flatten=True)
    actions = pa.table(actions) if not isinstance(actions, pa.Table) else actions
    dates = actions.column("partition.event_date").to_pylist()
    counts = actions.column("num_records").to_pylist()
    return int(sum(n for d, n in zip(dates, counts) if str(d) == event_date.isoformat()))


def _tuples(table: pa.Table) -> list[tuple]:
    columns = [table.column(i).to_pylist() for i in range(table.num_columns)]
    return list(zip(*columns))
