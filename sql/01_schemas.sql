-- Schemas of the serving database. Roles and databases are created by
-- `lakehouse up` (lakehouse/platform/postgres.py) or, under docker compose,
-- by sql/docker-init.sh; both run these files in order and may run them again.
CREATE SCHEMA IF NOT EXISTS realtime;  -- speed layer: per-minute aggregates, upserted by fast aggregation
CREATE SCHEMA IF NOT EXISTS gold;      -- batch layer: daily business tables, replaced per event_date
CREATE SCHEMA IF NOT EXISTS ops;       -- pipeline health: stream progress, data-quality results
