"""Helpers of the batch integration tests: run the real Airflow CLI against a
test stack, read gold back from PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import date, timedelta

import psycopg2

from lakehouse.batch.gold import MODELS
from lakehouse.platform import airflow
from lakehouse.settings import Settings


def airflow_env(settings: Settings) -> dict[str, str]:
    env = {**os.environ, **airflow.environment(settings)}
    if settings.lakehouse_data_dir is not None:
        env["LAKEHOUSE_DATA_DIR"] = str(settings.lakehouse_data_dir)
    return env


def dags_test(settings: Settings, event_date: date | None = None, conf: dict | None = None,
              timeout: float = 600) -> subprocess.CompletedProcess:
    """`airflow dags test lakehouse_bronze_to_gold <logical date>`; the run
    processes event_date (logical date = the day after, see docs/batch.md)."""
    cmd = [airflow.airflow_bin(), "dags", "test", "lakehouse_bronze_to_gold"]
    if event_date is not None:
        cmd.append((event_date + timedelta(days=1)).isoformat())
    if conf is not None:
        cmd += ["-c", json.dumps(conf)]
    return subprocess.run(cmd, env=airflow_env(settings), capture_output=True, text=True, timeout=timeout)


def run_state(proc: subprocess.CompletedProcess) -> str | None:
    """The final DagRun state printed by `airflow dags test`."""
    for line in reversed((proc.stdout + proc.stderr).splitlines()):
        if "DagRun Finished" in line and "state=" in line:
            return line.split("state=", 1)[1].split(",", 1)[0].strip()
    return None


def gold_rows(settings: Settings, event_date: date) -> dict[str, list[tuple]]:
    """Every gold table's rows of a date (without updated_at), read as the
    read-only role, sorted by key."""
    out = {}
    with psycopg2.connect(settings.pg_dsn("reader")) as conn, conn.cursor() as cur:
        for name, model in MODELS.items():
            cols = ", ".join(model.SCHEMA.names)
            cur.execute(f"SELECT {cols} FROM gold.{name} WHERE event_date = %s ORDER BY {', '.join(model.KEY)}",
                        (event_date,))
            out[name] = cur.fetchall()
    conn.close()
    return out


def gold_checksum(settings: Settings, dates: list[date]) -> str:
    """md5 over every gold row of the dates (updated_at excluded)."""
    with psycopg2.connect(settings.pg_dsn("reader")) as conn, conn.cursor() as cur:
        parts = []
        for name, model in MODELS.items():
            cols = ", ".join(model.SCHEMA.names)
            cur.execute(
                f"SELECT md5(coalesce(string_agg(r::text, '|' ORDER BY r::text), '')) "
                f"FROM (SELECT {cols} FROM gold.{name} WHERE event_date = ANY(%s)) r",
                (list(dates),),
            )
            parts.append(f"{name}:{cur.fetchone()[0]}")
    conn.close()
    return ";".join(parts)


def gold_duplicates(settings: Settings) -> int:
    """Keys that appear more than once in any gold table (must be 0)."""
    total = 0
    with psycopg2.connect(settings.pg_dsn("reader")) as conn, conn.cursor() as cur:
        for name, model in MODELS.items():
            keys = ", ".join(model.KEY)
            cur.execute(f"SELECT count(*) FROM (SELECT {keys} FROM gold.{name} GROUP BY {keys} HAVING count(*) > 1) d")
            total += cur.fetchone()[0]
    conn.close()
    return total


def assert_gold_matches(settings: Settings, expected) -> None:
    """PostgreSQL gold of expected.event_date equals the independently computed
    values (conversion rate to 1e-12)."""
    got = gold_rows(settings, expected.event_date)
    want = expected.gold_rows()
    for name in MODELS:
        if name == "conversion_rate_daily" and want[name]:
            (d, rate, purchases, dau), = want[name]
            assert len(got[name]) == 1, got[name]
            g = got[name][0]
            assert (g[0], g[2], g[3]) == (d, purchases, dau), (name, g, want[name])
            assert abs(g[1] - rate) < 1e-12, (name, g, want[name])
        else:
            assert got[name] == want[name], (name, got[name], want[name])
