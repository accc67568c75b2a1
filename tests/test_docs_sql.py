"""The SQL the docs give users to paste into `make psql` runs on the real
serving database as the read-only role, and answers in UTC event dates
whatever time zone a session uses.

Every ```sql block of README.md and docs/*.md is split into statements; each
runs as the reader role. A statement whose line says `-- ERROR: <message>`
must fail with that message; every other one must succeed."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone

import psycopg2
import pytest

from lakehouse.settings import REPO_ROOT
from tests.test_docs import DOCS, FENCE

pytestmark = pytest.mark.integration

EXPECTED_ERROR = re.compile(r"--\s*ERROR:\s*(.+)$", re.M)
#: a zone far from UTC: a query that turns a UTC event date into a local
#: midnight counts the wrong minutes here
SESSION_ZONE = "America/Los_Angeles"


def statements(text: str) -> list[str]:
    """The statements of a doc's ```sql blocks: each ends on a line whose code
    (before a `--` comment, kept with it) ends with `;`."""
    out = []
    for lang, body in FENCE.findall(text):
        if lang != "sql":
            continue
        lines: list[str] = []
        for line in body.splitlines():
            lines.append(line)
            if line.split("--", 1)[0].rstrip().endswith(";"):
                out.append("\n".join(lines).strip())
                lines = []
        assert not _code("\n".join(lines)), f"a statement without its ';': {lines}"
    return [s for s in out if _code(s)]


def _code(statement: str) -> str:
    return "\n".join(line.split("--", 1)[0] for line in statement.splitlines()).strip()


def _doc_statements() -> list[tuple[str, str]]:
    return [(d.relative_to(REPO_ROOT).as_posix(), s) for d in DOCS for s in statements(d.read_text())]


DOC_STATEMENTS = _doc_statements()


def test_the_docs_hold_sql_for_users():
    assert len(DOC_STATEMENTS) >= 15, DOC_STATEMENTS
    assert any(EXPECTED_ERROR.search(s) for _, s in DOC_STATEMENTS)


def test_statements_split_where_lines_end():
    text = "```sql\nSELECT 1;\n-- a note\nSELECT 2 AS x\nFROM t;   -- ERROR: boom\n```\n"
    assert statements(text) == ["SELECT 1;", "-- a note\nSELECT 2 AS x\nFROM t;   -- ERROR: boom"]
    assert EXPECTED_ERROR.search(statements(text)[1]).group(1) == "boom"


@pytest.mark.parametrize(("doc", "sql"), DOC_STATEMENTS, ids=[f"{d}:{i}" for i, (d, _) in enumerate(DOC_STATEMENTS)])
def test_doc_statement_runs_as_the_reader(core_stack, doc, sql):
    conn = psycopg2.connect(core_stack.pg_dsn("reader"), options=f"-c TimeZone={SESSION_ZONE}")
    try:
        with conn.cursor() as cur:
            expected = EXPECTED_ERROR.search(sql)
            if expected:
                with pytest.raises(psycopg2.Error, match=re.escape(expected.group(1).strip())):
                    cur.execute(sql)
            else:
                cur.execute(sql)
                assert cur.description is not None, f"{doc}: no result: {sql}"
    finally:
        conn.close()


def test_sessions_start_in_utc_whatever_the_hosts_zone(core_stack):
    """initdb writes the host's zone into the cluster's configuration; the
    server is started with UTC, so a plain `make psql` session's dates are
    the pipeline's UTC event dates."""
    conn = psycopg2.connect(core_stack.pg_dsn("reader"))
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW TimeZone")
            assert cur.fetchone()[0] == "UTC"
    finally:
        conn.close()


def _batch_vs_realtime() -> str:
    (sql,) = [s for _, s in DOC_STATEMENTS if "AS batch" in s and "realtime.purchases_per_minute" in s]
    return sql


def test_batch_vs_realtime_counts_the_utc_day_in_any_session_zone(core_stack):
    """docs/queries.md's batch-vs-realtime query sums the realtime minutes of
    the gold row's UTC day: the minutes just before its start and at its end
    belong to the neighbouring days. Written and read in one transaction of
    the writer, rolled back: nothing stays in the shared database."""
    day = date(2001, 2, 3)
    start = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
    minutes = {  # window_start -> purchases
        start - timedelta(minutes=1): 1000,  # the day before
        start: 3,
        start + timedelta(hours=12): 4,
        start + timedelta(days=1) - timedelta(minutes=1): 5,
        start + timedelta(days=1): 2000,  # the day after
    }
    conn = psycopg2.connect(core_stack.pg_dsn("writer"))
    try:
        with conn.cursor() as cur:
            cur.execute(f"SET LOCAL TimeZone = '{SESSION_ZONE}'")
            cur.execute(
                "INSERT INTO gold.conversion_rate_daily (event_date, total_purchases, dau_count, conversion_rate)"
                " VALUES (%s, 12, 1, 12.0)", (day,))
            cur.executemany("INSERT INTO realtime.purchases_per_minute (window_start, purchase_count) VALUES (%s, %s)",
                            list(minutes.items()))
            cur.execute(_batch_vs_realtime())
            rows = {r[0]: r[1:] for r in cur.fetchall()}
        assert rows[day] == (12, 12), rows[day]
    finally:
        conn.rollback()
        conn.close()
