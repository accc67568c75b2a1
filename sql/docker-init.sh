#!/usr/bin/env bash
# First start of the compose `postgres` service (mounted into
# /docker-entrypoint-initdb.d): creates the roles and databases that
# lakehouse/platform/postgres.py:apply_schema creates under `make up`, then runs
# every sql/*.sql in order with the same psql variables (writer_role,
# reader_role, database). Safe to run again. Connection: the image's
# POSTGRES_USER over the local socket, or the usual PGHOST/PGPORT/PGPASSWORD.
set -euo pipefail

: "${POSTGRES_USER:?}"
: "${PG_DATABASE:?}" "${PG_WRITER_USER:?}" "${PG_WRITER_PASSWORD:?}"
: "${PG_READER_USER:?}" "${PG_READER_PASSWORD:?}"
: "${AIRFLOW_DB_NAME:?}" "${AIRFLOW_DB_USER:?}" "${AIRFLOW_DB_PASSWORD:?}"
SQL_DIR=${LAKEHOUSE_SQL_DIR:-$(dirname "$(readlink -f "$0")")}

psql_=(psql -v ON_ERROR_STOP=1 --no-psqlrc --quiet --username "$POSTGRES_USER")

ensure_role() {  # name password
  "${psql_[@]}" --dbname postgres -v name="$1" -v pw="$2" <<'SQL'
SELECT format('CREATE ROLE %I', :'name') WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'name')
\gexec
SELECT format('ALTER ROLE %I WITH LOGIN PASSWORD %L', :'name', :'pw')
\gexec
SQL
}

ensure_database() {  # name owner
  "${psql_[@]}" --dbname postgres -v name="$1" -v owner="$2" <<'SQL'
SELECT format('CREATE DATABASE %I OWNER %I', :'name', :'owner')
WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'name')
\gexec
SQL
}

ensure_role "$PG_WRITER_USER" "$PG_WRITER_PASSWORD"
ensure_role "$PG_READER_USER" "$PG_READER_PASSWORD"
ensure_role "$AIRFLOW_DB_USER" "$AIRFLOW_DB_PASSWORD"
ensure_database "$PG_DATABASE" "$POSTGRES_USER"
ensure_database "$AIRFLOW_DB_NAME" "$AIRFLOW_DB_USER"

shopt -s nullglob
files=("$SQL_DIR"/*.sql)
[ ${#files[@]} -gt 0 ] || { echo "docker-init: no .sql files in $SQL_DIR" >&2; exit 1; }
for f in "${files[@]}"; do
  echo "docker-init: $f"
  "${psql_[@]}" --dbname "$PG_DATABASE" --single-transaction \
    -v writer_role="$PG_WRITER_USER" -v reader_role="$PG_READER_USER" -v database="$PG_DATABASE" \
    -f "$f"
done
