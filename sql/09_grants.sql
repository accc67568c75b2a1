-- Privileges (least privilege; tests/test_privileges.py checks each line).
-- The writer role (pipeline) reads and writes the three schemas; the reader
-- role (dashboards, analysts) may only SELECT from them. Neither may open
-- another database of the cluster (Airflow's metadata above all), create
-- temporary tables, hold more than a few connections, or run a statement
-- for ever.

-- Databases: PostgreSQL gives PUBLIC CONNECT and TEMPORARY on every new
-- database; take both back everywhere, then grant CONNECT on the serving
-- database by name. The owners (Airflow's role owns its database) and
-- superusers keep their access.
DO $$
DECLARE db text;
BEGIN
    FOR db IN SELECT datname FROM pg_database WHERE datallowconn LOOP
        EXECUTE format('REVOKE CONNECT, TEMPORARY ON DATABASE %I FROM PUBLIC', db);
    END LOOP;
END $$;
GRANT CONNECT ON DATABASE :"database" TO :"writer_role", :"reader_role";
REVOKE CREATE ON SCHEMA public FROM PUBLIC;

GRANT USAGE ON SCHEMA realtime, gold, ops TO :"writer_role";
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA realtime, gold, ops TO :"writer_role";
ALTER DEFAULT PRIVILEGES IN SCHEMA realtime, gold, ops
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO :"writer_role";

GRANT USAGE ON SCHEMA realtime, gold, ops TO :"reader_role";
GRANT SELECT ON ALL TABLES IN SCHEMA realtime, gold, ops TO :"reader_role";
ALTER DEFAULT PRIVILEGES IN SCHEMA realtime, gold, ops GRANT SELECT ON TABLES TO :"reader_role";

-- Session limits, as role defaults (a session may SET another timeout, not escape the
-- connection limit). Reader: dashboards and ad-hoc psql; a query that runs
-- 30 s is a mistake, not a report. Writer: the streams' upserts take
-- milliseconds, a DAG's gold load of a day seconds; 10 minutes only stops a
-- statement stuck behind a lock. Connection limits leave the rest of
-- max_connections (200) to Airflow and the superuser whatever a client does.
ALTER ROLE :"reader_role" SET default_transaction_read_only = on;
ALTER ROLE :"reader_role" SET statement_timeout = '30s';
ALTER ROLE :"reader_role" CONNECTION LIMIT 20;
ALTER ROLE :"writer_role" SET statement_timeout = '10min';
ALTER ROLE :"writer_role" CONNECTION LIMIT 40;
