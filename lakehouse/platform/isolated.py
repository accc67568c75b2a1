"""Settings for a stack that must not collide with `make up`: its own run
directory, free ports and fresh secrets. The tests' fixtures and the benchmark
both start their stacks with these."""

from __future__ import annotations

import socket
from pathlib import Path

from lakehouse.platform.secrets import generate_secrets
from lakehouse.settings import Settings


def free_port() -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def isolated_settings(run_dir: Path | str, **overrides) -> Settings:
    """Settings for an isolated stack: given run dir, free ports, fresh secrets,
    no Grafana; keyword overrides win. `.env` is not read."""
    values = {k.lower(): v for k, v in generate_secrets().items()}
    values.update(
        lakehouse_run_dir=run_dir,
        pg_port=free_port(),
        kafka_bootstrap_servers=f"127.0.0.1:{free_port()}",
        broker_controller_port=free_port(),
        airflow_port=free_port(),
        airflow_scheduler_health_port=free_port(),
        airflow_worker_log_port=free_port(),
        airflow_trigger_log_port=free_port(),
        spark_connect_port=free_port(),
        dashboard_port=free_port(),
        grafana_bin="/nonexistent/grafana",
    )
    values.update(overrides)
    return Settings(_env_file=None, **values)
