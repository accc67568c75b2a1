"""The docker compose stack's own steps, run in the application image with the
settings of the container's environment (compose passes `.env` plus the
service addresses), through the same functions `lakehouse up` uses:

    python -m lakehouse.platform.compose init            # one-shot, before the app services
    python -m lakehouse.platform.compose health NAME     # a container's health check
    python -m lakehouse.platform.compose health stream --query raw-landing --query fast-aggregation
"""

from __future__ import annotations

import os
import subprocess
import time

import psycopg2
import typer

from lakehouse import kafka_clients
from lakehouse.platform import airflow, broker, postgres, stack
from lakehouse.platform.errors import PlatformError
from lakehouse.settings import get_settings

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, help=__doc__)

#: Airflow components checked through their job heartbeat in the metadata DB.
JOB_TYPES = {"airflow-dag-processor": "DagProcessorJob", "airflow-triggerer": "TriggererJob"}


@app.command()
def init() -> None:
    """Serving schema (idempotent, picks up new sql/ files), the events topic,
    Airflow's metadata database and login file, as `lakehouse up` does."""
    settings = get_settings()
    try:
        postgres.wait_ready(settings)
        postgres.apply_schema(settings)
        broker.ensure_topic(settings)
        airflow.migrate(settings)
    except PlatformError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    typer.echo("lakehouse compose init: schema, topic and Airflow metadata ready")


def stream_is_fresh(dsn: str, query_name: str, max_age_s: float) -> bool:
    """True when the stream recorded a micro-batch in ops.stream_progress within max_age_s."""
    with psycopg2.connect(dsn, connect_timeout=5) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT now() - max(recorded_at) < make_interval(secs => %s) FROM ops.stream_progress WHERE query_name = %s",
            (max_age_s, query_name),
        )
        return bool(cur.fetchone()[0])


def topic_is_fresh(client: dict, topic: str, max_age_s: float) -> bool:
    """True when a partition of the topic holds a record timestamped within
    max_age_s (the producer's send time): the producer is producing.
    `client`: kafka-python's connection settings (kafka_clients.client_config)."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.errors import KafkaError

    try:
        consumer = KafkaConsumer(**client, group_id=None, enable_auto_commit=False,
                                 request_timeout_ms=10_000, bootstrap_timeout_ms=10_000)
    except KafkaError:
        return False
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        since_ms = int((time.time() - max_age_s) * 1000)
        found = consumer.offsets_for_times({TopicPartition(topic, p): since_ms for p in partitions})
        return any(v is not None for v in found.values())
    except KafkaError:
        return False
    finally:
        consumer.close()


#: What `health` checks.
SERVICES = ("airflow-api-server", "airflow-scheduler", *JOB_TYPES, "dashboard", "spark-connect", "producer", "stream")


@app.command()
def health(
    service: str = typer.Argument(..., help=", ".join(SERVICES)),
    query: list[str] = typer.Option([], help="stream: a streaming query's name in ops.stream_progress; "
                                    "repeat it for an application that runs several (all must be fresh)"),
    max_age: float = typer.Option(300.0, help="stream: seconds since each query's last micro-batch; "
                                  "producer: since the topic's newest record"),
) -> None:
    """Exit 0 when the service is healthy, 1 otherwise (docker's healthcheck)."""
    settings = get_settings()
    if service == "airflow-api-server":
        ok = stack.http_error(airflow.base_url(settings) + "/api/v2/monitor/health") is None
    elif service == "airflow-scheduler":
        # the scheduler's own /health server (AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK)
        url = f"http://{airflow.SCHEDULER_HEALTH_HOST}:{settings.airflow_scheduler_health_port}/health"
        ok = stack.http_error(url) is None
    elif service == "dashboard":
        ok = stack.http_error(f"http://127.0.0.1:{settings.dashboard_port}/login") is None
    elif service in JOB_TYPES:
        env = {**os.environ, **airflow.environment(settings)}
        res = subprocess.run(
            [airflow.airflow_bin(), "jobs", "check", "--job-type", JOB_TYPES[service], "--local"],
            env=env, capture_output=True, text=True,
        )
        ok = res.returncode == 0
    elif service == "spark-connect":
        # where spark_default points the DAG's tasks (what `lakehouse up` waits for)
        ok = stack.port_open(settings.spark_connect_host, settings.spark_connect_port)
    elif service == "producer":
        ok = topic_is_fresh(kafka_clients.client_config(settings), settings.kafka_topic, max_age)
    elif service == "stream":
        ok = bool(query) and all(stream_is_fresh(settings.pg_dsn("reader"), q, max_age) for q in query)
    else:
        raise typer.BadParameter(f"no health check for {service!r}")
    raise typer.Exit(0 if ok else 1)


if __name__ == "__main__":
    app()
