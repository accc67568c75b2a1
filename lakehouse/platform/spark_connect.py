"""Spark Connect: the long-running Spark of the batch DAG.

Spark Connect is part of Spark (its driver plugin ships in pyspark's
`jars/spark-connect_2.13-<version>.jar`). By default a Spark application of
its own serves it (`server_command`, program spark-connect; in compose the
service spark-connect); with SPARK_CONNECT_IN_STREAMS the streams application
(`plugin_conf`: one Spark JVM for the stack). Both load the plugin
(`spark.plugins`) with the same Spark Connect settings (`connect_conf`).
Either JVM runs `local[2]` with delta-spark and the Kafka connector on its
classpath (`lakehouse.spark.jvm_conf`);
the DAG's Spark tasks get a thin gRPC client session from Airflow's
`spark_default` connection (`url`: `sc://<SPARK_CONNECT_HOST>:<SPARK_CONNECT_PORT>`),
so no task starts a JVM and the JIT-warm JVM serves every task. Pointing
`spark_default` at another Spark Connect endpoint (or a cluster) needs no code
change. gRPC listens on SPARK_CONNECT_HOST (127.0.0.1 under `make up`; in
docker-compose.yml the service name, so the other containers reach it); the
driver's own ports stay on 127.0.0.1 (HOST) with a local master, and take
the machine's address with a cluster's (`lakehouse.spark.driver_address_conf`).

    spark-submit --conf spark.plugins=org.apache.spark.sql.connect.SparkConnectPlugin ... spark_connect_app.py

is the program: a PySpark driver that only keeps its session (and so the
plugin's service) running (`lakehouse.platform.spark_connect_app`), as
Spark's `bin/spark-connect-shell` keeps a shell. Not the SparkConnectServer
class of `sbin/start-connect-server.sh`, which gives each client session a
class loader of its own and so recompiled every task's generated code
(docs/decisions.md, "Spark Connect from a plugin, not the server class").
"""

from __future__ import annotations

import sys
from pathlib import Path

from lakehouse.settings import Settings
from lakehouse.spark import LOOPBACK, driver_address_conf, driver_java_options, executor_java_options, jvm_conf

#: The program's driver (spark-submit runs it as a script).
APP = Path(__file__).with_name("spark_connect_app.py")
#: Spark Connect as a driver plugin of any Spark application (`spark.plugins`):
#: the same gRPC service, in that application's JVM (the streams' under
#: SPARK_CONNECT_IN_STREAMS).
PLUGIN_CLASS = "org.apache.spark.sql.connect.SparkConnectPlugin"
#: SPARK_CONNECT_HOST's default, and the driver's own ports (RPC, block
#: manager) with a local master (lakehouse.spark.driver_address_conf):
#: loopback. The gRPC service listens on SPARK_CONNECT_HOST.
HOST = LOOPBACK


def external(settings: Settings) -> bool:
    """True when `spark_default` names another Spark (AIRFLOW_CONN_SPARK_DEFAULT):
    the stack then serves no Spark Connect."""
    return bool(settings.airflow_conn_spark_default)


def in_streams(settings: Settings) -> bool:
    """True when the streams application serves Spark Connect (SPARK_CONNECT_IN_STREAMS,
    the stack runs the streams, and spark_default is the stack's)."""
    return settings.spark_connect_in_streams and settings.streams_enabled and not external(settings)


def program(settings: Settings) -> str | None:
    """The stack's program that serves Spark Connect to the DAG: the streams,
    the server of its own (spark-connect), or none (spark_default is another
    Spark's)."""
    if external(settings):
        return None
    return "streams" if in_streams(settings) else "spark-connect"


def binding_conf(settings: Settings) -> dict[str, str]:
    """Where the gRPC service listens: SPARK_CONNECT_HOST (127.0.0.1 by
    default; a host name binds the address it resolves to), SPARK_CONNECT_PORT."""
    return {
        "spark.connect.grpc.binding.address": settings.spark_connect_host,
        "spark.connect.grpc.binding.port": str(settings.spark_connect_port),
    }


def plugin_conf(settings: Settings) -> dict[str, str]:
    """Spark settings that make a Spark application serve Spark Connect too,
    with the server's heap (SPARK_CONNECT_MEMORY: the DAG's jobs run there)."""
    return {
        "spark.driver.memory": settings.spark_connect_memory,
        **connect_conf(settings),
    }


#: Generated classes Spark keeps compiled (`spark.sql.codegen.cache.maxEntries`,
#: a static setting; Spark's default 100). A DAG run generates ~120 distinct
#: classes (Delta's log replays, the models, Great Expectations' queries), so
#: with 100 each run compiled them all again (docs/performance.md, session 39).
CODEGEN_CACHE_ENTRIES = 1000

#: How soon the server stops an operation whose client is gone (a task's
#: process killed outright, so its on_kill never ran: lakehouse.batch.spark_task).
#: The server notices only when the operation's response stream ends
#: (`spark.connect.execute.reattachable.senderMaxStreamDuration`, Spark's
#: default 2 min; a live client then reattaches at once), and removes an
#: operation left without a stream for `spark.connect.execute.manager.detachedTimeout`
#: (default 5 min), looking every `...maintenanceInterval` (default 30 s). With
#: the defaults a killed client's job ran on for up to 7.5 minutes and committed
#: after its task had failed, beside its retry; now within ~25 s
#: (tests/test_spark_task_kill.py).
RESPONSE_STREAM_S = 10
DETACHED_TIMEOUT_S = 10
DETACHED_CHECK_S = 5


def connect_conf(settings: Settings) -> dict[str, str]:
    """What makes a Spark application serve Spark Connect to the DAG, wherever
    it runs (the program spark-connect, or the streams): Spark's plugin, where
    it listens, and generated code shared by every client session. Sessions
    keep Spark's default class loader (`spark.sql.artifact.isolation.*` off:
    our clients upload no JVM classes), so the code one task compiled serves
    the next tasks and runs too; Spark keys its code cache by class loader."""
    return {
        "spark.plugins": PLUGIN_CLASS,
        **binding_conf(settings),
        "spark.sql.artifact.isolation.enabled": "false",
        "spark.sql.artifact.isolation.alwaysApplyClassloader": "false",
        "spark.sql.codegen.cache.maxEntries": str(CODEGEN_CACHE_ENTRIES),
        "spark.connect.execute.manager.detachedTimeout": f"{DETACHED_TIMEOUT_S}s",
        "spark.connect.execute.manager.maintenanceInterval": f"{DETACHED_CHECK_S}s",
        "spark.connect.execute.reattachable.senderMaxStreamDuration": f"{RESPONSE_STREAM_S}s",
    }


def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent


def url(settings: Settings) -> str:
    """The Spark Connect URL the DAG's tasks use (spark_default): SPARK_CONNECT_HOST,
    SPARK_CONNECT_PORT."""
    return f"sc://{settings.spark_connect_host}:{settings.spark_connect_port}"


def server_conf(settings: Settings) -> dict[str, str]:
    """The server's Spark settings: gRPC on SPARK_CONNECT_HOST, the driver's
    own ports on loopback with a local master, UTC, delta-spark, quiet logs."""
    return {
        "spark.master": settings.spark_master,
        "spark.app.name": "lakehouse-spark-connect",
        "spark.driver.memory": settings.spark_connect_memory,
        **driver_address_conf(settings),
        **connect_conf(settings),
        "spark.driver.extraJavaOptions": driver_java_options(settings),
        "spark.executor.extraJavaOptions": executor_java_options(settings),
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.shuffle.partitions": "4",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.log.level": "WARN",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        # Delta: sessions may run OPTIMIZE/VACUUM; the retention check stays on.
        "spark.databricks.delta.retentionDurationCheck.enabled": "true",
        **jvm_conf(settings),
    }


def server_command(settings: Settings, extra_conf: dict[str, str] | None = None) -> tuple[list[str], dict[str, str]]:
    """(argv, environment) of the server, in the foreground; extra_conf wins
    (tests lower spark.driver.maxResultSize with it)."""
    home = spark_home()
    argv = [str(home / "bin" / "spark-submit")]
    for key, value in {**server_conf(settings), **(extra_conf or {})}.items():
        argv += ["--conf", f"{key}={value}"]
    argv.append(str(APP))
    env = {
        "SPARK_HOME": str(home),
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
    }
    local_address = driver_address_conf(settings).get("spark.driver.bindAddress")
    if local_address:  # the driver's default address too (a local master)
        env["SPARK_LOCAL_IP"] = local_address
    return argv, env
