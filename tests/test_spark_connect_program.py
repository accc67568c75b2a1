"""The stack's program spark-connect (lakehouse.platform.spark_connect,
spark_connect_app), run with the command `make up` runs: code Spark generated
for one client session serves the next sessions (each DAG task is one), and
the program's two processes (the Spark JVM and its PySpark driver) end
together."""

from __future__ import annotations

import os
import signal
import time

import psutil

from lakehouse.platform import spark_connect
from tests.batch_helpers import connect_session, spark_connect_server
from tests.conftest import make_settings

LOG4J = """\
rootLogger.level = warn
rootLogger.appenderRef.console.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d %p %c{1}: %m%n
appender.codegen.type = File
appender.codegen.name = codegen
appender.codegen.fileName = {log}
appender.codegen.layout.type = PatternLayout
appender.codegen.layout.pattern = %m%n
logger.codegen.name = org.apache.spark.sql.catalyst.expressions.codegen.CodeGenerator
logger.codegen.level = info
logger.codegen.additivity = false
logger.codegen.appenderRef.codegen.ref = codegen
"""


def _compiled(log) -> int:
    """Classes Spark compiled so far (CodeGenerator logs each at INFO)."""
    return log.read_text().count("Code generated in") if log.exists() else 0


def _query(spark) -> None:
    """A query of a shape nothing else runs: an aggregate and a sort, several generated classes."""
    from pyspark.sql import functions as F

    rows = (spark.range(5000).selectExpr("id * 7 + 3 AS x", "id % 11 AS k")
            .groupBy("k").agg(F.sum("x").alias("s"), F.max("x").alias("m")).orderBy("k").collect())
    assert len(rows) == 11 and rows[0]["s"] == sum(i * 7 + 3 for i in range(0, 5000, 11))


def test_a_new_client_session_reuses_the_code_earlier_sessions_compiled(tmp_path):
    log = tmp_path / "codegen.log"
    config = tmp_path / "log4j2.properties"
    config.write_text(LOG4J.replace("{log}", str(log)))
    settings = make_settings(tmp_path / "run")
    settings = settings.model_copy(update={
        "spark_java_options": f"{settings.spark_java_options} -Dlog4j2.configurationFile={config}"})
    with spark_connect_server(settings):
        url = spark_connect.url(settings)
        with connect_session(url) as spark:  # a task
            before = _compiled(log)
            _query(spark)
            first = _compiled(log) - before
        with connect_session(url) as spark:  # the next task: a new session
            before = _compiled(log)
            _query(spark)
            second = _compiled(log) - before
    assert first > 0, f"the first session compiled nothing: is {log} Spark's code generator log?"
    assert second == 0, f"a new session compiled {second} classes again (first: {first})"


def _driver(jvm: psutil.Process) -> psutil.Process:
    """The program's Python process under its JVM, once it has handed over to
    the watcher (spark_connect_app.WATCHER)."""
    def cmdline(p: psutil.Process) -> str:
        try:
            return " ".join(p.cmdline())
        except psutil.Error:  # the JVM's short-lived children (Hadoop forks chmod), zombies or gone
            return ""

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        kids = [p for p in jvm.children() if "getppid" in cmdline(p)]
        if kids:
            return kids[0]
        time.sleep(0.5)
    raise AssertionError(f"no driver watching the Spark JVM {jvm.pid}: {[cmdline(p) for p in jvm.children()]}")


def test_the_driver_ends_when_the_spark_jvm_is_killed(tmp_path):
    """The driver keeps ~10 MB once the service is up (it hands over to a bare
    watcher); kill -9 of the JVM leaves no driver behind (the process manager
    then starts both again); the driver's end ends the JVM (Spark's PythonRunner)."""
    settings = make_settings(tmp_path / "run")
    with spark_connect_server(settings) as server:
        jvm = psutil.Process(server.pid)
        driver = _driver(jvm)
        with connect_session(spark_connect.url(settings)) as spark:
            assert spark.range(3).count() == 3  # served after the hand-over
        assert driver.memory_info().rss < 40 * 2**20, driver.memory_info()
        os.kill(jvm.pid, signal.SIGKILL)
        server.wait(timeout=30)
        gone, alive = psutil.wait_procs([driver], timeout=20)
        assert driver in gone and not alive, f"the driver {driver.pid} outlived its JVM"
    with spark_connect_server(settings) as server:
        jvm = psutil.Process(server.pid)
        driver = _driver(jvm)
        driver.kill()
        assert server.wait(timeout=60) != 0  # the JVM ended with its driver, as a failure to restart
