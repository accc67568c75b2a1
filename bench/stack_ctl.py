"""The benchmark's own embedded stack: its run directory, free ports, every
group `make up` starts except the demo-rate producer (the benchmark drives
the producer itself), and stopping single programs between phases."""

from __future__ import annotations

from lakehouse.polling import wait_for  # noqa: F401  (re-exported for bench modules)

from pathlib import Path

import psycopg2

from lakehouse.platform import stack
from lakehouse.platform.isolated import isolated_settings
from lakehouse.platform.services import services
from lakehouse.settings import Settings

GROUPS = ("core", "airflow", "pipeline")
STREAM_PROGRAMS = ("raw-landing", "fast-aggregation")


def bench_settings(run_dir: Path) -> Settings:
    return isolated_settings(run_dir, producer_enabled=False, streams_enabled=True)


def programs(settings: Settings) -> list[str]:
    return [s.name for s in services(settings)]


def start(settings: Settings) -> None:
    stack.up(settings, groups=GROUPS)


def supervisord_pid(settings: Settings) -> int:
    pid = stack.supervisord_pid(settings)
    if pid is None:
        raise RuntimeError("the benchmark's stack is not running")
    return pid


def stop_programs(settings: Settings, names) -> None:
    """Stop the named programs (waits for each), leaving the rest running."""
    proxy = stack._proxy(settings)  # noqa: SLF001 - the platform's own supervisor client
    for name in names:
        try:
            proxy.supervisor.stopProcess(name, True)
        except Exception as exc:  # noqa: BLE001 - NOT_RUNNING is fine
            if "NOT_RUNNING" not in str(exc):
                raise


def program_pid(settings: Settings, name: str) -> int:
    info = stack._proxy(settings).supervisor.getProcessInfo(name)  # noqa: SLF001
    if not info.get("pid"):
        raise RuntimeError(f"{name} is not running ({info.get('statename')})")
    return int(info["pid"])


def states(settings: Settings) -> dict[str, str]:
    return stack.process_states(settings)


def query(settings: Settings, sql: str, params=()) -> list[tuple]:
    """One read on the serving database as the writer role (autocommit)."""
    conn = psycopg2.connect(settings.pg_dsn("writer"))
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall()
    finally:
        conn.close()


