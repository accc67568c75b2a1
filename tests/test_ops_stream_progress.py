"""ops.stream_progress (sql/04_ops.sql) as the streams' progress listener
(lakehouse.stream.progress) writes it, on the real PostgreSQL: one row per
(query name, checkpoint query id, batch id), so moving the checkpoints away
(the recovery from data loss) starts a new history beside the old one."""

from __future__ import annotations

import json
import uuid
from contextlib import closing

import psycopg2

from lakehouse.platform.postgres import SQL_DIR
from lakehouse.stream import progress


def _report(name: str, query_id: str, batch: int, rows: int, offset: int) -> str:
    """A progress report in the JSON shape of Spark's StreamingQueryProgress."""
    return json.dumps({
        "id": query_id, "runId": str(uuid.uuid4()), "name": name, "batchId": batch, "numInputRows": rows,
        "processedRowsPerSecond": 100.0, "durationMs": {"triggerExecution": 50},
        "sources": [{"endOffset": json.dumps({"t": {"0": offset}}), "latestOffset": json.dumps({"t": {"0": offset}})}],
    })


def test_a_new_checkpoint_starts_a_history_beside_the_old_one(core_stack):
    name = f"test-progress-{uuid.uuid4().hex[:8]}"
    old, new = str(uuid.uuid4()), str(uuid.uuid4())
    dsn = core_stack.pg_dsn("writer")
    recorder = progress.ProgressRecorder(dsn, [name])
    try:
        recorder.onQueryProgress(_report(name, old, 0, 10, 10))
        recorder.onQueryProgress(_report(name, old, 1, 5, 15))
        # the checkpoints moved away: the new query numbers its batches from 0 again
        recorder.onQueryProgress(_report(name, new, 0, 7, 7))
        # the same batch replayed from its checkpoint (a crash before Spark's commit)
        recorder.onQueryProgress(_report(name, new, 0, 8, 8))
    finally:
        recorder._close()
    with closing(psycopg2.connect(dsn)) as conn, conn.cursor() as cur:
        cur.execute("SELECT query_id, batch_id, input_rows, end_offsets FROM ops.stream_progress "
                    "WHERE query_name = %s ORDER BY recorded_at, query_id, batch_id", (name,))
        rows = cur.fetchall()
        cur.execute("SELECT query_id, batch_id, end_offsets FROM ops.stream_latest WHERE query_name = %s", (name,))
        latest = cur.fetchall()
    assert sorted(rows) == sorted([
        (old, 0, 10, {"t": {"0": 10}}), (old, 1, 5, {"t": {"0": 15}}), (new, 0, 8, {"t": {"0": 8}}),
    ])
    assert latest == [(new, 0, {"t": {"0": 8}})]


def _primary_key(cur) -> list[str]:
    cur.execute(
        "SELECT a.attname FROM pg_constraint c CROSS JOIN unnest(c.conkey) WITH ORDINALITY k(attnum, n) "
        "JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum "
        "WHERE c.conrelid = 'ops.stream_progress'::regclass AND c.contype = 'p' ORDER BY k.n")
    return [r[0] for r in cur.fetchall()]


def test_a_database_from_before_the_query_id_is_migrated(core_stack):
    """The table as it was (key: query name, batch id; no query id) becomes the
    current one when the schema is applied again (every `make up` does),
    keeping its rows; applying it once more changes nothing. In a transaction
    that is rolled back: the session's database is left as it was."""
    ops_sql = (SQL_DIR / "04_ops.sql").read_text()
    name = f"test-migrate-{uuid.uuid4().hex[:8]}"
    with closing(psycopg2.connect(core_stack.pg_dsn("superuser"))) as conn, conn.cursor() as cur:
        try:
            assert _primary_key(cur) == ["query_name", "query_id", "batch_id"]
            cur.execute("DELETE FROM ops.stream_progress")  # an old key holds one row per name and batch
            cur.execute("DROP VIEW ops.stream_latest")
            cur.execute("ALTER TABLE ops.stream_progress DROP CONSTRAINT stream_progress_pkey, "
                        "ADD CONSTRAINT stream_progress_pkey PRIMARY KEY (query_name, batch_id)")
            cur.execute("ALTER TABLE ops.stream_progress DROP COLUMN query_id")
            cur.execute("INSERT INTO ops.stream_progress (query_name, batch_id, input_rows) VALUES (%s, 3, 9)", (name,))
            assert _primary_key(cur) == ["query_name", "batch_id"]
            for _ in range(2):
                cur.execute(ops_sql)
                assert _primary_key(cur) == ["query_name", "query_id", "batch_id"]
            cur.execute("SELECT query_id, batch_id, input_rows FROM ops.stream_progress WHERE query_name = %s", (name,))
            assert cur.fetchall() == [("", 3, 9)]
            cur.execute("SELECT query_id, batch_id FROM ops.stream_latest WHERE query_name = %s", (name,))
            assert cur.fetchall() == [("", 3)]
        finally:
            conn.rollback()
