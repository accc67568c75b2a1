"""No missed dates, no stale dates: which event dates need a run.

A date needs a run of `lakehouse_bronze_to_gold` when bronze holds rows for
it, its cutoff (D+1 00:00 UTC + allowed lateness) has passed, and either

* **missed**: no successful run of it is recorded in ops.batch_runs (the
  stack was down at 01:00, for a day or for weeks), or
* **stale**: bronze holds a different number of rows for it now than its
  last successful run saw (late events landed after that run; bronze is
  append-only, so a changed count is a changed date).

The `lakehouse_catch_up` DAG asks this every BATCH_CATCH_UP_MINUTES and
triggers the runs oldest first, one after the other. Bronze's per-date row
counts come from the Delta log's file statistics (no data is read).
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta

from lakehouse.batch.completeness import cutoff

RUN_ID_PREFIX = "catch_up__"


def dates_to_run(bronze_rows: dict[date, int], last_success: dict[date, int | None], now: datetime,
                 lateness: timedelta) -> list[tuple[date, str]]:
    """Pure: [(date, "missed" | "stale")] in date order, for the dates whose
    cutoff has passed and that have bronze rows but no successful run, or a
    successful run that saw another bronze row count."""
    out = []
    for d in sorted(bronze_rows):
        if bronze_rows[d] <= 0 or cutoff(d, lateness) > now:
            continue
        if d not in last_success:
            out.append((d, "missed"))
        elif last_success[d] != bronze_rows[d]:
            out.append((d, "stale"))
    return out


def bronze_rows_per_date(path: str) -> dict[date, int]:
    """Rows per event_date of bronze/events, from the Delta log (delta-rs)."""
    import pyarrow as pa
    from deltalake import DeltaTable

    if not DeltaTable.is_deltatable(path):
        return {}
    actions = DeltaTable(path).get_add_actions(flatten=True)
    actions = actions if isinstance(actions, pa.Table) else pa.table(actions)
    out: dict[date, int] = {}
    for d, n in zip(actions.column("partition.event_date").to_pylist(), actions.column("num_records").to_pylist()):
        if d is None:
            continue
        d = d if isinstance(d, date) else date.fromisoformat(str(d))
        out[d] = out.get(d, 0) + int(n or 0)
    return out


def last_successful_runs(conn) -> dict[date, int | None]:
    """event_date -> bronze rows its latest successful run saw (ops.batch_runs)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT DISTINCT ON (event_date) event_date, bronze_rows FROM ops.batch_runs "
            "ORDER BY event_date, finished_at DESC"
        )
        return {d: n for d, n in cur.fetchall()}


def run_id(d: date, bronze_rows: int) -> str:
    """One run per (date, bronze row count): a run that failed for this state
    of bronze (e.g. the quality gate) is not started again and again; a new
    count (more late data) gets a new run."""
    return f"{RUN_ID_PREFIX}{d.isoformat()}__{bronze_rows}"


def already_processed(dag_run_id: str, last_success: dict[date, int | None]) -> date | None:
    """The date of a catch-up run (`dag_run_id` from `run_id`) that is no
    longer needed: a successful run of that date has since seen the bronze
    row count it was planned for (a user's run of the same date raced the
    planner). None for any other run, which always runs."""
    m = re.fullmatch(re.escape(RUN_ID_PREFIX) + r"(\d{4}-\d{2}-\d{2})__(\d+)", dag_run_id)
    if not m:
        return None
    d = date.fromisoformat(m[1])
    return d if last_success.get(d) == int(m[2]) else None
