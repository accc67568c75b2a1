"""Helpers of the batch integration tests: run the real Airflow CLI against a
test stack (with a Spark Connect server of the test's own), tell the sensor
that raw landing has caught up with a private topic, read gold back from
PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from contextlib import contextmanager
from datetime import date, timedelta

import psycopg2

from lakehouse.batch.gold import MODELS
from lakehouse.platform import airflow, spark_connect, stack
from lakehouse.settings import Settings


def airflow_env(settings: Settings) -> dict[str, str]:
    env = {**os.environ, **stack.stack_env(settings), **airflow.environment(settings)}
    if settings.lakehouse_data_dir is not None:
        env["LAKEHOUSE_DATA_DIR"] = str(settings.lakehouse_data_dir)
    return env


def spark_connect_log(settings: Settings):
    """Where spark_connect_server writes its server's output."""
    return settings.log_dir / f"spark-connect-{settings.spark_connect_port}.log"


@contextmanager
def spark_connect_server(settings: Settings, timeout: float = 300, **extra_conf: str):
    """The stack's Spark Connect server program (same command as under `make
    up`) on settings.spark_connect_port, for tests that run `airflow dags test`;
    its output in spark_connect_log(settings)."""
    argv, env = spark_connect.server_command(settings, extra_conf)
    log_path = spark_connect_log(settings)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"Spark Connect server exited ({proc.returncode}): {log_path.read_text()[-3000:]}")
            with socket.socket() as s:
                if s.connect_ex((spark_connect.HOST, settings.spark_connect_port)) == 0:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"Spark Connect server not listening after {timeout}s: {log_path}")
            time.sleep(1)
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def create_topic(settings: Settings, partitions: int = 3) -> None:
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_list)
    try:
        admin.create_topics([NewTopic(settings.kafka_topic, num_partitions=partitions, replication_factor=1)])
    except TopicAlreadyExistsError:
        pass
    finally:
        admin.close()


def raw_landing_caught_up(settings: Settings, offsets: dict[int, int] | None = None) -> None:
    """Record a raw-landing progress row for settings.kafka_topic (a private,
    empty topic in these tests: end offsets 0 = caught up), dated in the
    past so it is never the latest row of the real streams."""
    import zlib

    offsets = offsets if offsets is not None else {p: 0 for p in range(settings.kafka_partitions)}
    batch_id = -1 - zlib.crc32(settings.kafka_topic.encode())  # one row per private topic
    with psycopg2.connect(settings.pg_dsn("writer")) as conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO ops.stream_progress (query_name, batch_id, input_rows, end_offsets, lag, recorded_at) "
            "VALUES ('raw-landing', %s, 0, %s, 0, '2000-01-01') ON CONFLICT (query_name, query_id, batch_id) DO UPDATE "
            "SET end_offsets = EXCLUDED.end_offsets",
            (batch_id, json.dumps({settings.kafka_topic: {str(p): o for p, o in offsets.items()}})),
        )
    conn.close()


def dags_test(settings: Settings, event_date: date | None = None, conf: dict | None = None,
              timeout: float = 600, *, dag_id: str = "lakehouse_bronze_to_gold",
              logical_date: date | None = None) -> subprocess.CompletedProcess:
    """`airflow dags test <dag_id> <logical date>`; a lakehouse_bronze_to_gold
    run processes event_date (logical date = the day after, see docs/batch.md)."""
    cmd = [airflow.airflow_bin(), "dags", "test", dag_id]
    if logical_date is None and event_date is not None:
        logical_date = event_date + timedelta(days=1)
    if logical_date is not None:
        cmd.append(logical_date.isoformat())
    if conf is not None:
        cmd += ["-c", json.dumps(conf)]
    return subprocess.run(cmd, env=airflow_env(settings), capture_output=True, text=True, timeout=timeout)


def run_state(proc: subprocess.CompletedProcess) -> str | None:
    """The final DagRun state printed by `airflow dags test`."""
    for line in reversed((proc.stdout + proc.stderr).splitlines()):
        if "DagRun Finished" in line and "state=" in line:
            return line.split("state=", 1)[1].split(",", 1)[0].strip()
    return None


def task_errors(proc: subprocess.CompletedProcess) -> str:
    """What to show when a run failed: the exception (and traceback's last
    lines) of every failed task try, else the output's last lines (the
    very end is often only py4j's noise at exit)."""
    lines = (proc.stdout + proc.stderr).splitlines()
    failures = [i for i, line in enumerate(lines) if "Task failed with exception" in line]
    if not failures:
        return "\n".join(lines[-60:])
    blocks = []
    for i in failures:
        end = next((j for j in range(i + 1, len(lines)) if lines[j][:4].isdigit() and "Z [" in lines[j][:40]),
                   len(lines))
        blocks.append("\n".join([lines[i], *lines[max(i + 1, end - 12):end]]))
    return "\n---\n".join(blocks)


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


@contextmanager
def connect_session(url: str):
    """A Spark Connect client session for a test, stopped afterwards. PySpark
    marks the whole process as Spark Connect (SPARK_CONNECT_MODE_ENABLED) when
    such a session starts; the mark is removed again, so later tests in the
    same pytest process still build classic local sessions."""
    from pyspark.sql import SparkSession

    saved = {k: os.environ.get(k) for k in ("SPARK_CONNECT_MODE_ENABLED", "SPARK_REMOTE", "SPARK_LOCAL_REMOTE")}
    spark = SparkSession.builder.remote(url).getOrCreate()
    try:
        yield spark
    finally:
        spark.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
