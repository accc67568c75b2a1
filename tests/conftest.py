"""Shared fixtures. Integration fixtures start the real services through the
same code as `make up` (lakehouse.platform.stack), in a temporary run directory
on free ports, so the suite never collides with a running `make up`."""

from __future__ import annotations

import psycopg2
import pytest

from lakehouse.platform import stack
from lakehouse.platform.isolated import free_port  # noqa: F401  (re-exported for tests)
from lakehouse.platform.isolated import isolated_settings as make_settings


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
def airflow_stack(tmp_path_factory):
    """A stack of its own with Airflow's api-server, scheduler, dag-processor,
    triggerer (plus PostgreSQL and the broker). Not built on core_stack: a
    running stack's program set is fixed when it starts, so Airflow cannot be
    added to core_stack afterwards (stack.up refuses)."""
    settings = make_settings(tmp_path_factory.mktemp("airflow_run") / "run")
    try:
        stack.up(settings, groups=("core", "airflow"))
        yield settings
    finally:
        stack.clean(settings)


@pytest.fixture
def pg(core_stack):
    """A writer connection to the serving database."""
    conn = psycopg2.connect(core_stack.pg_dsn("writer"))
    yield conn
    conn.close()
