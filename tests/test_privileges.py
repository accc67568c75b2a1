"""Least privilege in PostgreSQL (sql/09_grants.sql), checked against the real
cluster: the reader role may only SELECT realtime, gold and ops; neither the
reader nor the writer may open another database (Airflow's metadata above
all) or create temporary tables; both have a statement timeout and a
connection limit."""

from __future__ import annotations

from contextlib import contextmanager

import psycopg2
import pytest
from psycopg2 import errors as pgerrors

pytestmark = pytest.mark.integration

SCHEMAS = ("realtime", "gold", "ops")
READER_TIMEOUT, READER_CONNECTIONS = "30s", 20
WRITER_TIMEOUT, WRITER_CONNECTIONS = "10min", 40


def _connect(settings, role: str, database: str | None = None):
    conn = psycopg2.connect(settings.pg_dsn(role, database), connect_timeout=10)
    conn.autocommit = True
    return conn


@contextmanager
def _cursor(settings, role: str):
    conn = _connect(settings, role)
    try:
        with conn.cursor() as cur:
            yield cur
    finally:
        conn.close()


def _tables(settings) -> list[str]:
    with _cursor(settings, "superuser") as cur:
        cur.execute("SELECT schemaname || '.' || tablename FROM pg_tables WHERE schemaname = ANY(%s) ORDER BY 1",
                    (list(SCHEMAS),))
        return [r[0] for r in cur.fetchall()]


def _other_databases(settings) -> list[str]:
    with _cursor(settings, "superuser") as cur:
        cur.execute("SELECT datname FROM pg_database WHERE datallowconn AND datname <> %s ORDER BY 1",
                    (settings.pg_database,))
        return [r[0] for r in cur.fetchall()]


def test_reader_selects_every_table_of_the_three_schemas(core_stack):
    tables = _tables(core_stack)
    assert len(tables) >= 7, tables
    conn = _connect(core_stack, "reader")
    try:
        with conn.cursor() as cur:
            for table in tables:
                cur.execute(f"SELECT count(*) FROM {table}")
    finally:
        conn.close()


def test_reader_cannot_write_even_after_leaving_read_only_mode(core_stack):
    """default_transaction_read_only is a default the session may turn off:
    the privileges themselves must refuse every write."""
    conn = _connect(core_stack, "reader")
    try:
        with conn.cursor() as cur:
            cur.execute("SET default_transaction_read_only = off")
            for table in _tables(core_stack):
                for stmt in (f"DELETE FROM {table}", f"UPDATE {table} SET {_first_column(cur, table)} = NULL",
                             f"TRUNCATE {table}", f"INSERT INTO {table} DEFAULT VALUES"):
                    with pytest.raises(pgerrors.InsufficientPrivilege):
                        cur.execute(stmt)
            for schema in (*SCHEMAS, "public"):
                with pytest.raises(pgerrors.InsufficientPrivilege):
                    cur.execute(f"CREATE TABLE {schema}.intruder (x int)")
            with pytest.raises(pgerrors.InsufficientPrivilege):
                cur.execute("CREATE SCHEMA intruder")
    finally:
        conn.close()


def _first_column(cur, table: str) -> str:
    schema, name = table.split(".")
    cur.execute("SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s "
                "ORDER BY ordinal_position LIMIT 1", (schema, name))
    return cur.fetchone()[0]


@pytest.mark.parametrize("role", ["reader", "writer"])
def test_no_temporary_tables(core_stack, role):
    conn = _connect(core_stack, role)
    try:
        with conn.cursor() as cur:
            cur.execute("SET default_transaction_read_only = off")
            with pytest.raises(pgerrors.InsufficientPrivilege, match="temporary"):
                cur.execute("CREATE TEMPORARY TABLE t (x int)")
    finally:
        conn.close()


@pytest.mark.parametrize("role", ["reader", "writer"])
def test_no_other_database_airflow_metadata_above_all(core_stack, role):
    others = _other_databases(core_stack)
    assert core_stack.airflow_db_name in others and "postgres" in others, others
    for database in others:
        with pytest.raises(psycopg2.OperationalError, match="permission denied for database"):
            psycopg2.connect(core_stack.pg_dsn(role, database), connect_timeout=10).close()


def test_airflow_role_keeps_its_own_database(core_stack):
    conn = _connect(core_stack, "airflow")
    conn.close()


def test_writer_cannot_become_or_read_as_airflow(core_stack):
    conn = _connect(core_stack, "writer")
    try:
        with conn.cursor() as cur:
            with pytest.raises(pgerrors.InsufficientPrivilege):
                cur.execute(f'SET ROLE "{core_stack.airflow_db_user}"')
            with pytest.raises(psycopg2.Error):  # no dblink, no foreign server: no way across databases
                cur.execute("CREATE EXTENSION dblink")
    finally:
        conn.close()


@pytest.mark.parametrize("role,timeout", [("reader", READER_TIMEOUT), ("writer", WRITER_TIMEOUT)])
def test_statement_timeout_is_the_roles_default(core_stack, role, timeout):
    conn = _connect(core_stack, role)
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW statement_timeout")
            assert cur.fetchone()[0] == timeout
    finally:
        conn.close()


def test_reader_statement_timeout_cancels_a_long_query(core_stack):
    conn = _connect(core_stack, "reader")
    try:
        with conn.cursor() as cur, pytest.raises(pgerrors.QueryCanceled, match="statement timeout"):
            cur.execute("SELECT pg_sleep(40)")
    finally:
        conn.close()


@pytest.mark.parametrize("role,limit", [("reader", READER_CONNECTIONS), ("writer", WRITER_CONNECTIONS)])
def test_connection_limit_refuses_one_more(core_stack, role, limit):
    user, _ = core_stack._role(role)
    opened = []
    try:
        with pytest.raises(psycopg2.OperationalError, match="too many connections for role"):
            for _ in range(limit + 1):
                opened.append(_connect(core_stack, role))
        with _cursor(core_stack, "superuser") as cur:
            cur.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = %s", (user,))
            assert cur.fetchone()[0] == limit
    finally:
        for conn in opened:
            conn.close()
