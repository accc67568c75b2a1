-- Privileges. The writer role (pipeline) reads and writes the three schemas;
-- the reader role (dashboards, analysts) may only SELECT from them.
GRANT CONNECT ON DATABASE :"database" TO :"writer_role", :"reader_role";
REVOKE CREATE ON SCHEMA public FROM PUBLIC;

GRANT USAGE ON SCHEMA realtime, gold, ops TO :"writer_role";
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA realtime, gold, ops TO :"writer_role";
ALTER DEFAULT PRIVILEGES IN SCHEMA realtime, gold, ops
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO :"writer_role";

GRANT USAGE ON SCHEMA realtime, gold, ops TO :"reader_role";
GRANT SELECT ON ALL TABLES IN SCHEMA realtime, gold, ops TO :"reader_role";
ALTER DEFAULT PRIVILEGES IN SCHEMA realtime, gold, ops GRANT SELECT ON TABLES TO :"reader_role";
ALTER ROLE :"reader_role" SET default_transaction_read_only = on;
