"""Gold Delta -> PostgreSQL `gold` schema: every table of a date in ONE transaction.

For the event date, each `gold.*` table's rows are DELETEd and the new ones
INSERTed, and the run is recorded in ops.batch_runs, all in one transaction:
a reader sees the previous load or the new one, never two runs mixed, and a
re-run is idempotent (keys that disappeared disappear). `updated_at` is the
load time (column default now()).

Failures are of two kinds:
* an **outage** (connection refused or lost: psycopg2's OperationalError /
  InterfaceError) rolls back and is retried, here briefly and then by
  Airflow's task retries;
* a **data error** (a value PostgreSQL rejects) rolls back and raises
  GoldValueError at once, naming the table, the column and the value: no
  retry can fix it, the data must change.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from datetime import date

import psycopg2
from psycopg2 import sql
from psycopg2.extras import Json, execute_values
from tenacity import before_sleep_log, retry, retry_if_exception_type, stop_after_attempt, wait_exponential

log = logging.getLogger(__name__)

Connect = Callable[[], "psycopg2.extensions.connection"]

#: The Airflow connection through which the DAGs reach the serving database
#: (writer role); lakehouse.platform.airflow defines it for the embedded stack.
POSTGRES_CONN_ID = "lakehouse_postgres"


def airflow_connect(conn_id: str = POSTGRES_CONN_ID) -> Connect:
    """A connection factory for an Airflow connection (inside a running task)."""
    from airflow.sdk import Connection

    c = Connection.get(conn_id)
    return lambda: psycopg2.connect(
        host=c.host, port=c.port, user=c.login, password=c.password, dbname=c.schema, connect_timeout=10
    )


#: Retries inside one task attempt for a brief PostgreSQL outage; Airflow's
#: task retries (with backoff) cover longer ones.
OUTAGES = (psycopg2.OperationalError, psycopg2.InterfaceError)
_retry = retry(
    retry=retry_if_exception_type(OUTAGES),
    stop=stop_after_attempt(3),
    wait=wait_exponential(multiplier=1, min=1, max=8),
    before_sleep=before_sleep_log(log, logging.WARNING),
    reraise=True,
)


class GoldValueError(ValueError):
    """PostgreSQL rejected a value of a gold table: not retried."""


@dataclass(frozen=True)
class GoldRows:
    """One gold table's rows of the date, in `columns` order."""

    table: str
    columns: list[str]
    rows: list[tuple]


@dataclass(frozen=True)
class BatchRun:
    """What ops.batch_runs records of a successful run."""

    run_id: str
    event_date: date
    bronze_rows: int
    bronze_version: int | None
    silver_rows: int
    quarantined: int
    stream_end_offsets: dict | None = None
    stream_recorded_at: object = None


def _replace(cur, g: GoldRows, event_date: date) -> int:
    target = sql.Identifier("gold", g.table)
    cur.execute(sql.SQL("DELETE FROM {} WHERE event_date = %s").format(target), (event_date,))
    deleted = cur.rowcount
    if g.rows:
        insert = sql.SQL("INSERT INTO {} ({}) VALUES %s").format(
            target, sql.SQL(", ").join(map(sql.Identifier, g.columns))
        )
        execute_values(cur, insert.as_string(cur), g.rows, page_size=1000)
    log.info("gold.%s %s: replacing %d rows with %d", g.table, event_date, deleted, len(g.rows))
    return len(g.rows)


def _record(cur, run: BatchRun) -> None:
    cur.execute(
        """INSERT INTO ops.batch_runs (run_id, event_date, silver_rows, quarantined, bronze_rows,
                 bronze_version, stream_end_offsets, stream_recorded_at, finished_at)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, now())
           ON CONFLICT (run_id) DO UPDATE SET event_date = EXCLUDED.event_date,
             silver_rows = EXCLUDED.silver_rows, quarantined = EXCLUDED.quarantined,
             bronze_rows = EXCLUDED.bronze_rows, bronze_version = EXCLUDED.bronze_version,
             stream_end_offsets = EXCLUDED.stream_end_offsets,
             stream_recorded_at = EXCLUDED.stream_recorded_at, finished_at = now()""",
        (run.run_id, run.event_date, run.silver_rows, run.quarantined, run.bronze_rows, run.bronze_version,
         Json(run.stream_end_offsets) if run.stream_end_offsets is not None else None, run.stream_recorded_at),
    )


def replace_date_all(conn, tables: list[GoldRows], event_date: date, run: BatchRun | None = None) -> dict:
    """In ONE transaction: replace event_date's rows of every table, record the
    run. A rejected value raises GoldValueError (rolled back, nothing changed)."""
    loaded = {}
    current = None
    try:
        with conn.cursor() as cur:
            for g in tables:
                current = g
                loaded[g.table] = _replace(cur, g, event_date)
            current = None
            if run is not None:
                _record(cur, run)
        conn.commit()
    except OUTAGES:
        if not conn.closed:
            conn.rollback()
        raise
    except (psycopg2.DataError, psycopg2.IntegrityError, psycopg2.ProgrammingError, ValueError) as exc:
        if not conn.closed:
            conn.rollback()
        if current is None:
            raise
        raise GoldValueError(_describe(conn, current, exc)) from exc
    except BaseException:
        if not conn.closed:
            conn.rollback()
        raise
    return loaded


def _describe(conn, g: GoldRows, exc: Exception) -> str:
    """'gold.<table> column <c> value <v>: <PostgreSQL's words>' - finds the
    value by casting each one to its column's type (rolled back afterwards)."""
    pg_msg = (getattr(getattr(exc, "diag", None), "message_primary", None) or str(exc)).strip()
    column = getattr(getattr(exc, "diag", None), "column_name", None)
    value = None
    found = False
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT column_name, format_type(a.atttypid, a.atttypmod) "
                        "FROM information_schema.columns c JOIN pg_attribute a "
                        "ON a.attrelid = ('gold.' || quote_ident(c.table_name))::regclass AND a.attname = c.column_name "
                        "WHERE c.table_schema = 'gold' AND c.table_name = %s", (g.table,))
            types = dict(cur.fetchall())
            for row in g.rows:
                for col, v in zip(g.columns, row):
                    if v is None and column == col:
                        value, found = v, True
                    if found:
                        break
                    cur.execute("SAVEPOINT probe")
                    try:
                        cur.execute(sql.SQL("SELECT %s::{}").format(sql.SQL(types[col])), (v,))
                        cur.execute("RELEASE SAVEPOINT probe")
                    except (psycopg2.Error, ValueError):
                        cur.execute("ROLLBACK TO SAVEPOINT probe")
                        column, value, found = col, v, True
                if found:
                    break
        conn.rollback()
    except psycopg2.Error:
        if not conn.closed:
            conn.rollback()
    if not found:
        detail = getattr(getattr(exc, "diag", None), "message_detail", None)
        what = f"column {column}" if column else "a row"
        return f"gold.{g.table}: PostgreSQL rejected {what}: {pg_msg}" + (f" ({detail})" if detail else "")
    return f"gold.{g.table}: PostgreSQL rejected column {column} value {value!r}: {pg_msg}"


def load_date(connect: Connect, tables: list[GoldRows], event_date: date, run: BatchRun | None = None) -> dict:
    """replace_date_all on a fresh connection, retried on outages only."""

    @_retry
    def attempt() -> dict:
        with closing(connect()) as conn:
            return replace_date_all(conn, tables, event_date, run)

    return attempt()


def load_table(connect: Connect, table: str, columns: list[str], rows: list[tuple], event_date: date) -> int:
    """One table's rows of the date (load_date of a single table; fixtures use it)."""
    return load_date(connect, [GoldRows(table, columns, rows)], event_date)[table]


def record_batch_run(connect: Connect, run_id: str, event_date: date, silver_rows: int, quarantined: int,
                     bronze_rows: int | None = None) -> None:
    """Upsert a run's row in ops.batch_runs on its own (fixtures use it; the
    DAG records its run inside load_date's transaction)."""

    @_retry
    def attempt() -> None:
        with closing(connect()) as conn:
            with conn, conn.cursor() as cur:
                _record(cur, BatchRun(run_id, event_date, bronze_rows, None, silver_rows, quarantined))

    attempt()


def record_data_quality(connect: Connect, rows: list[tuple]) -> None:
    """Upsert one validation's summary rows into ops.data_quality."""
    if not rows:
        return

    @_retry
    def attempt() -> None:
        with closing(connect()) as conn:
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

    attempt()
