"""Airflow 3 configuration for the embedded stack: LocalExecutor, metadata in
the project's PostgreSQL, DAGs from the repository, the simple auth manager
with one admin user whose password comes from `.env`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from lakehouse.platform import spark_connect
from lakehouse.platform.errors import PlatformError
from lakehouse.settings import REPO_ROOT, Settings

DAGS_DIR = REPO_ROOT / "dags"
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
#: Where the scheduler's /health server listens (compose.health asks it there).
SCHEDULER_HEALTH_HOST = "127.0.0.1"


def base_url(settings: Settings) -> str:
    return f"http://{settings.airflow_host}:{settings.airflow_port}"


def environment(settings: Settings) -> dict[str, str]:
    """Environment every Airflow process of ours runs with."""
    for field in ("airflow_admin_password", "airflow_secret_key", "airflow_fernet_key", "airflow_db_password"):
        if getattr(settings, field) is None:
            raise PlatformError(f"{field.upper()} is not set; run `make up` once to generate .env")
    home = settings.airflow_home
    env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_DIR),
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__PARALLELISM": str(settings.airflow_parallelism),
        "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": str(settings.airflow_scheduler_idle_sleep_seconds),
        "AIRFLOW__CORE__FERNET_KEY": settings.airflow_fernet_key.get_secret_value(),
        "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{settings.airflow_admin_user}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base_url(settings)}/execution/",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": settings.sqlalchemy_url("airflow"),
        "AIRFLOW__API__HOST": settings.airflow_host,
        "AIRFLOW__API__PORT": str(settings.airflow_port),
        "AIRFLOW__API__BASE_URL": base_url(settings),
        "AIRFLOW__API__SECRET_KEY": settings.airflow_secret_key.get_secret_value(),
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API_AUTH__JWT_SECRET": settings.airflow_secret_key.get_secret_value(),
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "True",
        # Loopback, not AIRFLOW_HOST: only the scheduler's own machine (or
        # container: compose's health check) asks it, and in compose
        # AIRFLOW_HOST is the api-server's name, an address the scheduler's
        # container does not have.
        "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_HOST": SCHEDULER_HEALTH_HOST,
        "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(settings.airflow_scheduler_health_port),
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(settings.airflow_worker_log_port),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(settings.airflow_trigger_log_port),
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        # The DAG's Spark tasks (@task.pyspark) get a Spark Connect client
        # session from this connection: the stack's long-running server, where
        # it listens (SPARK_CONNECT_HOST: 127.0.0.1, or in compose the
        # spark-connect service). Any other Spark Connect endpoint (or a
        # `spark` connection to a cluster master) works without a code change:
        # AIRFLOW_CONN_SPARK_DEFAULT in .env or the environment.
        "AIRFLOW_CONN_SPARK_DEFAULT": settings.airflow_conn_spark_default or json.dumps(
            {"conn_type": "spark_connect", "host": settings.spark_connect_host, "port": settings.spark_connect_port}
        ),
        "AIRFLOW_CONN_LAKEHOUSE_POSTGRES": json.dumps(
            {
                "conn_type": "postgres",
                "host": settings.pg_host,
                "port": settings.pg_port,
                "login": settings.pg_writer_user,
                "password": settings._role("writer")[1],
                "schema": settings.pg_database,
            }
        ),
        "LAKEHOUSE_RUN_DIR": str(settings.run_dir),
        "PYSPARK_PYTHON": sys.executable,
        "PYTHONPATH": str(REPO_ROOT),
        # spark-submit (pyspark's) and airflow come from the same virtualenv.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    return env


def write_password_file(settings: Settings) -> None:
    home = settings.airflow_home
    home.mkdir(parents=True, exist_ok=True)
    path = home / "passwords.json"
    path.write_text(json.dumps({settings.airflow_admin_user: settings.airflow_admin_password.get_secret_value()}))
    path.chmod(0o600)


def airflow_bin() -> str:
    return str(Path(sys.executable).parent / "airflow")


#: Components that would start a log server beside them. On one host the
#: api-server reads task and trigger logs from the shared log folder, so the
#: servers (~150 MB) are not started.
SKIP_SERVE_LOGS = ("scheduler", "triggerer")


#: Modules the scheduler imports before it starts: its LocalExecutor forks the
#: task processes from it, so a task finds them imported (Great Expectations
#: alone costs validate_silver 4-10 s per run when imported cold; the Spark
#: Connect client and pandas 2-3 s per Spark task). Copy-on-write pages: the
#: forks share them.
PRELOAD = (
    "pandas",
    "pyarrow",
    "great_expectations",
    "great_expectations.expectations",
    "pyspark.sql.connect.session",
    "psycopg2",
)


#: Airflow's programs whose stop can hang: the scheduler's, the dag-processor's
#: and the triggerer's SIGTERM handlers log a line, and structlog's write lock
#: is not reentrant, so a signal that lands while the program is blocked
#: writing a log line (its output pipe full) deadlocks it (Airflow 3.3.2;
#: docs/operations.md, reproduced in tests/test_platform_airflow.py). They run
#: through `run` below, which lets `lakehouse down` have their stacks written
#: to their logs (STACK_DUMP_SIGNAL) before it gives up on them.
JOB_COMPONENTS = ("scheduler", "dag-processor", "triggerer")

#: Python's faulthandler writes every thread's stack to stderr on this signal
#: (async-signal-safe: it works while the interpreter is deadlocked). Airflow
#: uses SIGUSR1 only with [scheduler] enable_tracemalloc, which we leave off.
STACK_DUMP_SIGNAL = signal.SIGUSR1


def command(component: str) -> list[str]:
    extra = ["--skip-serve-logs"] if component in SKIP_SERVE_LOGS else []
    if component in JOB_COMPONENTS:
        return [sys.executable, "-m", "lakehouse.platform.airflow", component, *extra]
    return [airflow_bin(), component, *extra]


def run(argv: list[str]) -> None:
    """Run the Airflow CLI with argv in this process, after registering the
    stack dump on STACK_DUMP_SIGNAL; the scheduler imports PRELOAD first."""
    import faulthandler
    import importlib
    import logging

    faulthandler.register(STACK_DUMP_SIGNAL, all_threads=True)
    if argv[:1] == ["scheduler"]:
        for name in PRELOAD:
            try:
                importlib.import_module(name)
            except Exception as exc:  # a missing optional module must not stop the scheduler
                logging.getLogger(__name__).warning("preload of %s failed: %s", name, exc)
    from airflow.__main__ import main as airflow_main

    sys.argv = ["airflow", *argv]
    airflow_main()


def migrate(settings: Settings) -> None:
    """Create or upgrade Airflow's metadata database (a no-op when current)."""
    write_password_file(settings)
    env = {**os.environ, **environment(settings)}
    res = subprocess.run([airflow_bin(), "db", "migrate"], env=env, capture_output=True, text=True)
    if res.returncode != 0:
        tail = "\n".join(res.stderr.strip().splitlines()[-5:])
        raise PlatformError(f"airflow db migrate failed:\n{tail}")


if __name__ == "__main__":
    run(sys.argv[1:])
