"""Shared fixtures. Integration fixtures start the real services through the
same code as `make up` (lakehouse.platform.stack), in a temporary run directory
on free ports, so the suite never collides with a running `make up`."""

from __future__ import annotations

import socket

import psycopg2
import pytest

from lakehouse.platform import stack
from lakehouse.platform.secrets import generate_secrets
from lakehouse.settings import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_settings(run_dir, **overrides) -> Settings:
    """Settings for an isolated stack: temp run dir, free ports, fresh secrets."""
    values = {k.lower(): v for k, v in generate_secrets().items()}
    values.update(
        lakehouse_run_dir=run_dir,
        pg_port=free_port(),
        kafka_bootstrap_servers=f"127.0.0.1:{free_port()}",
        airflow_port=free_port(),
        grafana_bin="/nonexistent/grafana",
    )
    values.update(overrides)
    return Settings(_env_file=None, **values)


@pytest.fixture(scope="session")
def core_stack(tmp_path_factory):
    """PostgreSQL (schema applied) and the broker (topic created), running."""
    settings = make_settings(tmp_path_factory.mktemp("run") / "run")
    try:
        stack.up(settings, groups=("core",))
        yield settings
    finally:
        stack.clean(settings)


@pytest.fixture(scope="session")
def airflow_stack(core_stack):
    """The core stack plus Airflow's api-server, scheduler, dag-processor, triggerer."""
    stack.up(core_stack, groups=("core", "airflow"))
    yield core_stack


@pytest.fixture
def pg(core_stack):
    """A writer connection to the serving database."""
    conn = psycopg2.connect(core_stack.pg_dsn("writer"))
    yield conn
    conn.close()
