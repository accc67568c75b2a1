"""Shared fixtures. Integration fixtures start the real services through the
same code as `make up` (lakehouse.platform.stack), in a temporary run directory
on free ports, so the suite never collides with a running `make up`."""

from __future__ import annotations

import psycopg2
import pytest

from lakehouse.platform import stack
from lakehouse.platform.isolated import free_port  # noqa: F401  (re-exported for tests)
from lakehouse.platform.isolated import isolated_settings


def make_settings(run_dir, **overrides):
    """Settings of a test's own stack (lakehouse.platform.isolated). Raw
    landing waits at most 10 s for a batch instead of the default minute
    (STREAM_MAX_BATCH_DELAY_SECONDS, a commit rate for a long-running
    stack's Delta log), and the DAG's completeness sensor looks every 5 s
    instead of 30 (BATCH_COMPLETENESS_POKE_SECONDS): tests that wait for
    bronze or for a DAG run then wait less."""
    return isolated_settings(run_dir, **{"stream_max_batch_delay_seconds": 10.0,
                                         "batch_completeness_poke_seconds": 5, **overrides})


@pytest.fixture(scope="module")
def spark(request, tmp_path_factory):
    """A local Spark session for a test module, built as the jobs build theirs
    (lakehouse.spark.spark_session), in a run directory of its own: Spark's
    warehouse never lands in the checkout's .run, which `make up` would then
    refuse (stack.foreign_run_dir). A module that needs other settings
    defines its own `spark`."""
    from lakehouse.spark import spark_session

    session = spark_session(make_settings(tmp_path_factory.mktemp("spark") / "run"), request.module.__name__)
    yield session
    session.stop()


#: Seconds each long test file took (its tests' setup, call and teardown) in
#: `make test` on 2 cores (2 pytest-xdist workers, 2026-12-04, `--junitxml`).
#: `make test` hands whole files to its workers in collection order
#: (`--dist loadfile --no-loadscope-reorder`), and collection puts the longest
#: files first: pytest-xdist's own order (most tests first) left the
#: few-test, many-minute files for last, where one worker could run them
#: alone. A file missing here runs after these; a stale figure costs only time.
FILE_SECONDS = {
    "test_batch_stack.py": 630,
    "test_batch_dag.py": 471,
    "test_broker_durability.py": 270,
    "test_exposure.py": 205,
    "test_streams_recovery.py": 200,
    "test_streams_cluster.py": 165,
    "test_broker.py": 152,
    "test_spark_task_kill.py": 165,
    "test_kafka_secured.py": 150,
    "test_streams_data_loss.py": 200,
    "test_dashboard_browser.py": 147,
    "test_platform_airflow.py": 133,
    "test_batch_quality.py": 104,
    "test_fuzz_stream.py": 92,
    "test_streams_bad_input.py": 74,
    "test_streams_landing.py": 60,
    "test_platform.py": 60,
    "test_privileges.py": 36,
    "test_spark_memory.py": 34,
}


def pytest_collection_modifyitems(items):
    """Longest files first (FILE_SECONDS); a stable sort keeps each file's
    tests together and in order, and the other files in pytest's order."""
    items.sort(key=lambda item: -FILE_SECONDS.get(item.path.name, 0))


@pytest.fixture(scope="session")
def core_stack(tmp_path_factory):
    """PostgreSQL (schema applied) and the broker (topic created), running."""
    settings = make_settings(tmp_path_factory.mktemp("run") / "run")
    try:
        stack.up(settings, groups=("core",))
        yield settings
    finally:
        stack.clean(settings)


def settings_as_environment(settings, monkeypatch) -> None:
    """Every setting as an environment variable, as a container gets them."""
    for name, value in settings.model_dump().items():
        if value is not None:
            value = value.get_secret_value() if hasattr(value, "get_secret_value") else value
            monkeypatch.setenv(name.upper(), str(value))


@pytest.fixture
def pg(core_stack):
    """A writer connection to the serving database."""
    conn = psycopg2.connect(core_stack.pg_dsn("writer"))
    yield conn
    conn.close()
