"""Gold Delta -> PostgreSQL `gold` schema, one transaction per table.

Each table's rows of the event date are DELETEd and the new ones INSERTed in
the same transaction: a re-run is idempotent, keys that disappeared disappear,
and an outage mid-load rolls back to the previous rows (the retry then
succeeds). `updated_at` is the load time (column default now()).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import date

import psycopg2
from psycopg2 import sql
from psycopg2.extras import execute_values
from tenacity import before_sleep_log, retry, retry_if_exception_type, stop_after_attempt, wait_exponential

log = logging.getLogger(__name__)

Connect = Callable[[], "psycopg2.extensions.connection"]

#: Retries inside one task attempt for a brief PostgreSQL outage; Airflow's
#: task retries (with backoff) cover longer ones.
_retry = retry(
    retry=retry_if_exception_type((psycopg2.OperationalError, psycopg2.InterfaceError)),
    stop=stop_after_attempt(3),
    wait=wait_exponential(multiplier=1, min=1, max=8),
    before_sleep=before_sleep_log(log, logging.WARNING),
    reraise=True,
)


def replace_date(conn, table: str, columns: list[str], rows: Iterable[tuple], event_date: date) -> int:
    """In one transaction: delete `gold.<table>`'s rows of event_date, insert `rows`."""
    rows = list(rows)
    target = sql.Identifier("gold", table)
    try:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("DELETE FROM {} WHERE event_date = %s").format(target), (event_date,))
            deleted = cur.rowcount
            if rows:
                insert = sql.SQL("INSERT INTO {} ({}) VALUES %s").format(
                    target, sql.SQL(", ").join(map(sql.Identifier, columns))
                )
                execute_values(cur, insert.as_string(cur), rows, page_size=1000)
        conn.commit()
    except BaseException:
        if not conn.closed:
            conn.rollback()
        raise
    log.info("gold.%s %s: replaced %d rows with %d", table, event_date, deleted, len(rows))
    return len(rows)


def load_table(connect: Connect, table: str, columns: list[str], rows: list[tuple], event_date: date) -> int:
    """replace_date on a fresh connection, retried on connection failures."""

    @_retry
    def attempt() -> int:
        conn = connect()
        try:
            return replace_date(conn, table, columns, rows, event_date)
        finally:
            conn.close()

    return attempt()


def record_batch_run(connect: Connect, run_id: str, event_date: date, silver_rows: int, quarantined: int) -> None:
    """Upsert the run's row in ops.batch_runs."""

    @_retry
    def attempt() -> None:
        conn = connect()
        try:
            with conn, conn.cursor() as cur:
                cur.execute(
                    """INSERT INTO ops.batch_runs (run_id, event_date, silver_rows, quarantined, finished_at)
                       VALUES (%s, %s, %s, %s, now())
                       ON CONFLICT (run_id) DO UPDATE SET event_date = EXCLUDED.event_date,
                         silver_rows = EXCLUDED.silver_rows, quarantined = EXCLUDED.quarantined,
                         finished_at = now()""",
                    (run_id, event_date, silver_rows, quarantined),
                )
        finally:
            conn.close()

    attempt()


def record_data_quality(connect: Connect, rows: list[tuple]) -> None:
    """Upsert one validation's summary rows into ops.data_quality."""
    if not rows:
        return

    @_retry
    def attempt() -> None:
        conn = connect()
        try:
            with conn, conn.cursor() as cur:
                execute_values(
                    cur,
                    """INSERT INTO ops.data_quality (run_id, event_date, expectation, column_name, severity,
                         success, element_count, unexpected_count) VALUES %s
                       ON CONFLICT (run_id, expectation, column_name) DO UPDATE SET
                         event_date = EXCLUDED.event_date, severity = EXCLUDED.severity,
                         success = EXCLUDED.success, element_count = EXCLUDED.element_count,
                         unexpected_count = EXCLUDED.unexpected_count, validated_at = now()""",
                    rows,
                )
        finally:
            conn.close()

    attempt()
