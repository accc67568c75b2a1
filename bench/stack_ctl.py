"""The benchmark's own embedded stack: its run directory, free ports, the
programs `make up` starts except the demo-rate producer (the benchmark drives
the producer itself) and Grafana (started only where a grafana-server is
installed; setup does not install one), and stopping single
programs between phases. The overview dashboard runs, idle (no browser), so
the memory figures are the whole stack's."""

from __future__ import annotations

from lakehouse.polling import wait_for  # noqa: F401  (re-exported for bench modules)

from pathlib import Path

import time

import psycopg2

from lakehouse.platform import stack
from lakehouse.platform.isolated import isolated_settings
from lakehouse.platform.services import services
from lakehouse.settings import Settings

GROUPS = ("core", "airflow", "pipeline", "dashboard")
STREAM_PROGRAMS = ("streams",)


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


def program_pids(settings: Settings) -> dict[str, int]:
    """Every running program -> its pid."""
    infos = stack._proxy(settings).supervisor.getAllProcessInfo()  # noqa: SLF001
    return {i["name"]: int(i["pid"]) for i in infos if i.get("statename") == "RUNNING" and i.get("pid")}


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




def wait_for_airflow_idle(settings: Settings, timeout_s: float = 900.0, dag_id: str = "lakehouse_bronze_to_gold") -> float:
    """Wait until the scheduler has made and finished its own DAG runs; returns
    the seconds waited. On start the scheduler runs the daily DAG for the last
    complete day (the catch-up run): measuring ingest or memory while that
    Spark job runs would measure the two together."""
    t0 = time.monotonic()

    def counts() -> tuple[int, int, int]:
        conn = psycopg2.connect(settings.pg_dsn("airflow"))
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT (SELECT count(*) FROM dag WHERE dag_id = %s),"
                            " (SELECT count(*) FROM dag_run WHERE dag_id = %s),"
                            " (SELECT count(*) FROM dag_run WHERE state IN ('queued', 'running'))", (dag_id, dag_id))
                return cur.fetchone()
        finally:
            conn.close()

    wait_for(lambda: counts()[0], timeout_s, f"the DAG {dag_id} to be parsed", every=2.0)
    parsed_at = time.monotonic()

    def idle() -> bool:
        """Nothing queued or running, once the catch-up run exists (or a minute passed without one: paused)."""
        _, runs, busy = counts()
        return busy == 0 and (runs > 0 or time.monotonic() - parsed_at > 60)

    wait_for(idle, timeout_s, "the scheduler's DAG runs to finish", every=2.0)
    return time.monotonic() - t0
